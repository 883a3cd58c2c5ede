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
# Keywords that only narrow the values of a type the grammar does enforce: a value can break them,
# the shape of a call cannot.
VALUE_BOUNDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
                          "uniqueItems", "minProperties", "maxProperties"})
# Where subschemas sit: what the check and the bounds' removal both walk into.
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


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
        if key in _SUBSCHEMA_MAPS and not isinstance(value, dict):
            raise InvalidRequestError(f"{where}.{key} must be an object of schemas", param=where)
        if key == "required" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise InvalidRequestError(f"{where}.required must be a list of property names", param=where)
        if key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            for name, sub in value.items():
                check_schema(sub, f"{where}.{key}.{name}")
        elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
            for i, sub in enumerate(value):
                check_schema(sub, f"{where}.{key}[{i}]")
        elif key in ("items", "additionalProperties") and isinstance(value, (dict, bool)):
            check_schema(value, f"{where}.{key}")
        elif key == "items" and isinstance(value, list):
            for i, sub in enumerate(value):
                check_schema(sub, f"{where}.items[{i}]")


def without_value_bounds(schema: Any, where: str) -> tuple[Any, list[str]]:
    """The schema without the value bounds and formats the grammar cannot enforce, and where each was.

    For tool schemas a client ships and its user cannot edit (Claude Code's `format: uri`, a number's
    `minimum`): the call still has the schema's shape and types; only those bounds go unchecked.
    """
    dropped: list[str] = []

    def walk(node: Any, at: str) -> Any:
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in VALUE_BOUNDS or (key == "format" and (value not in SUPPORTED_FORMATS or
                                                            "minLength" in node or "maxLength" in node)):
                dropped.append(f"{at}.{key}")
            elif key in _SUBSCHEMA_MAPS and isinstance(value, dict):
                out[key] = {name: walk(sub, f"{at}.{key}.{name}") for name, sub in value.items()}
            elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
                out[key] = [walk(sub, f"{at}.{key}[{i}]") for i, sub in enumerate(value)]
            elif key in ("items", "additionalProperties") and isinstance(value, dict):
                out[key] = walk(value, f"{at}.{key}")
            elif key == "items" and isinstance(value, list):
                out[key] = [walk(sub, f"{at}.items[{i}]") for i, sub in enumerate(value)]
            else:
                out[key] = value
        return out

    return walk(schema, where), dropped
