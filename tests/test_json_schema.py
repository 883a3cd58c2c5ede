"""Which JSON schemas the grammar enforces, and the bounds left unchecked for agents' built-in tools."""

from __future__ import annotations

import pytest

from homellm.errors import InvalidRequestError
from homellm.json_schema import check_schema, without_value_bounds
from homellm.tools.calling import parse_tools

FETCH = {"type": "object", "additionalProperties": False, "required": ["url"],
         "properties": {"url": {"type": "string", "format": "uri"},
                        "timeout": {"type": "number", "minimum": 0, "maximum": 600},
                        "tags": {"type": "array", "uniqueItems": True, "items": {"type": "string", "format": "date"}},
                        "when": {"anyOf": [{"type": "integer", "exclusiveMinimum": 0}, {"type": "null"}]}}}


def test_value_bounds_are_dropped_and_named_with_where_they_were():
    relaxed, dropped = without_value_bounds(FETCH, "tools[0]")
    assert sorted(dropped) == sorted([
        "tools[0].properties.url.format", "tools[0].properties.timeout.minimum",
        "tools[0].properties.timeout.maximum", "tools[0].properties.tags.uniqueItems",
        "tools[0].properties.when.anyOf[0].exclusiveMinimum"])
    check_schema(relaxed, "tools[0]")  # what is left, the grammar enforces
    assert relaxed["properties"]["tags"]["items"] == {"type": "string", "format": "date"}  # an enforced format stays
    assert relaxed["required"] == ["url"] and relaxed["additionalProperties"] is False
    assert FETCH["properties"]["url"]["format"] == "uri"  # the caller's schema is not changed


def test_constructs_that_change_the_shape_are_still_refused():
    schema = {"type": "object", "properties": {"a": {"not": {"type": "string"}, "minimum": 1}}}
    relaxed, dropped = without_value_bounds(schema, "p")
    assert dropped == ["p.properties.a.minimum"]
    with pytest.raises(InvalidRequestError, match="'not'"):
        check_schema(relaxed, "p")


def test_parse_tools_refuses_bounds_unless_asked_to_drop_them():
    tools = [{"type": "function", "function": {"name": "fetch", "parameters": FETCH}}]
    with pytest.raises(InvalidRequestError, match="format 'uri'"):
        parse_tools(tools)
    [tool] = parse_tools(tools, drop_value_bounds=True)
    assert "format" not in tool.parameters["properties"]["url"]
