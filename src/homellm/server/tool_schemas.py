"""The published JSON Schema of each dialect's `tools` entries.

Requests validate tools in `homellm.tools.calling` (with messages that name the field); these schemas
only describe them in /openapi.json, where a free-form object told neither readers nor fuzzers what
a tool looks like. Parameter schemas are described as the subset the grammar enforces.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import WithJsonSchema

_NAME = {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"}
_PROPERTY = {
    "type": "object",
    "properties": {
        "type": {"enum": ["string", "integer", "number", "boolean", "array", "object", "null"]},
        "description": {"type": "string"},
        "enum": {"type": "array", "items": {"type": ["string", "integer", "number", "boolean", "null"]}},
        "items": {"type": "object"},
        "properties": {"type": "object"},
        "required": {"type": "array", "items": {"type": "string"}},
    },
}
PARAMETERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A JSON Schema for the arguments: an object of typed properties, as the grammar enforces it.",
    "properties": {
        "type": {"const": "object"},
        "properties": {"type": "object", "additionalProperties": _PROPERTY},
        "required": {"type": "array", "items": {"type": "string"}},
        "additionalProperties": {"type": "boolean"},
    },
}
_FUNCTION = {"type": "object", "required": ["name"],
             "properties": {"name": _NAME, "description": {"type": "string"}, "parameters": PARAMETERS_SCHEMA,
                            "strict": {"type": "boolean"}}}

# Chat Completions and Ollama: {"type": "function", "function": {...}}.
ChatTool = Annotated[dict[str, Any], WithJsonSchema({
    "type": "object", "required": ["type", "function"],
    "properties": {"type": {"const": "function"}, "function": _FUNCTION}})]
# Ollama's clients leave out "type" at times; it is taken as a function.
OllamaTool = Annotated[dict[str, Any], WithJsonSchema({
    "type": "object", "required": ["function"],
    "properties": {"type": {"const": "function"}, "function": _FUNCTION}})]
# Responses: the function's fields beside the type; Codex's web_search is accepted and left out.
ResponsesTool = Annotated[dict[str, Any], WithJsonSchema({"anyOf": [
    {"type": "object", "required": ["type", "name"],
     "properties": {"type": {"const": "function"}, "name": _NAME, "description": {"type": "string"},
                    "parameters": PARAMETERS_SCHEMA, "strict": {"type": "boolean"}}},
    {"type": "object", "required": ["type"], "properties": {"type": {"const": "web_search"}}},
]})]
# Anthropic: {"name", "description", "input_schema"}.
AnthropicTool = Annotated[dict[str, Any], WithJsonSchema({
    "type": "object", "required": ["name", "input_schema"],
    "properties": {"name": _NAME, "description": {"type": "string"}, "input_schema": PARAMETERS_SCHEMA}})]
