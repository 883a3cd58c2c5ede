"""Which JSON schemas homellm can enforce while generating: a check that names what it cannot.

The engine turns a schema that passes into a grammar; the edges check a request's schemas
with the same rule before anything loads.
"""

from __future__ import annotations

from typing import Any

from homellm.errors import InvalidRequestError

# What llama.cpp's schema-to-grammar converter enforces; anything else would pass unchecked.
SUPPORTED_KEYWORDS = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
    "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions", "$schema", "$id",
    "description", "title", "default", "examples", "minLength", "maxLength", "pattern", "format", "strict",
})
SUPPORTED_FORMATS = frozenset({"date", "time", "date-time", "uuid"})


def check_schema(schema: Any, where: str) -> None:
    """Refuse a JSON schema with a construct the grammar cannot enforce, naming it and where it is."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise InvalidRequestError(f"{where} is not a JSON schema object", hint="give an object schema",
                                  param=where)
    for key, value in schema.items():
        if key not in SUPPORTED_KEYWORDS:
            raise InvalidRequestError(
                f"{where} uses '{key}', which homellm cannot enforce in a grammar",
                hint="use type, properties, required, enum, const, items, anyOf, $ref, "
                     "minLength/maxLength, pattern (number ranges cannot be enforced)", param=where)
        if key == "format" and value not in SUPPORTED_FORMATS:
            raise InvalidRequestError(f"{where} uses format '{value}', which homellm cannot enforce",
                                      hint=f"formats: {', '.join(sorted(SUPPORTED_FORMATS))}", param=where)
        if key == "format" and ("minLength" in schema or "maxLength" in schema):
            raise InvalidRequestError(f"{where} sets a format and a length, which the grammar cannot enforce together",
                                      hint="keep one of them", param=where)
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            for name, sub in value.items():
                check_schema(sub, f"{where}.{key}.{name}")
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems") and isinstance(value, list):
            for i, sub in enumerate(value):
                check_schema(sub, f"{where}.{key}[{i}]")
        elif key in ("items", "additionalProperties") and isinstance(value, (dict, bool)):
            check_schema(value, f"{where}.{key}")
        elif key == "items" and isinstance(value, list):
            for i, sub in enumerate(value):
                check_schema(sub, f"{where}.items[{i}]")
