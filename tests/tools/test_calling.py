"""Reading the calls out of a turn's text."""

from __future__ import annotations

import json

import jsonschema
import pytest

from homellm.tools.calling import (
    MAX_PARALLEL_CALLS,
    ToolChoice,
    ToolSetup,
    parse_tools,
    plain_history,
)

WEATHER = parse_tools([{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}])


def parse_calls(text: str):
    """homellm's own JSON calls read back, as the built-in model's turns are."""
    return ToolSetup(WEATHER, ToolChoice("auto"), parallel=True).parse(text)


def test_a_list_of_calls_is_read_with_each_repeat_made_once() -> None:
    text = json.dumps([{"name": "get_weather", "arguments": {"city": "Paris"}},
                       {"name": "get_weather", "arguments": {"city": "Paris"}},
                       {"name": "get_weather", "arguments": {"city": "Rome"}}])
    calls = parse_calls(text)
    assert calls is not None
    assert [json.loads(c.arguments)["city"] for c in calls] == ["Paris", "Rome"]
    assert len({c.id for c in calls}) == 2


def test_text_and_cut_off_calls_are_not_calls() -> None:
    assert parse_calls("The weather is fine.") is None
    assert parse_calls('[{"name": "get_weather", "arguments": {"city": "Par') is None
    assert parse_calls('[{"arguments": {}}]') is None


def test_with_parallel_calls_a_turn_is_one_call_or_a_list_of_up_to_eight() -> None:
    tools = parse_tools([{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                              "required": ["city"], "additionalProperties": False}}}])
    one = {"name": "get_weather", "arguments": {"city": "Paris"}}
    several = ToolSetup(tools, ToolChoice("required"), parallel=True).schema()
    jsonschema.validate(one, several)
    jsonschema.validate([one, {**one, "arguments": {"city": "Rome"}}], several)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([one] * (MAX_PARALLEL_CALLS + 1), several)
    alone = ToolSetup(tools, ToolChoice("required"), parallel=False).schema()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([one], alone)
    assert "list" in ToolSetup(tools, ToolChoice("required"), parallel=True).prompt()


def test_a_result_and_the_user_turn_after_it_share_one_turn() -> None:
    history = [{"role": "user", "content": "Weather in Paris?"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
               {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
               {"role": "user", "content": "And Rome?"}]
    plain = plain_history(history)
    assert [m["role"] for m in plain] == ["user", "assistant", "user"]
    assert plain[2]["content"] == "Result of get_weather:\nsunny\n\nAnd Rome?"
    assert json.loads(plain[1]["content"]) == {"name": "get_weather", "arguments": {"city": "Paris"}}


def test_a_call_to_a_tool_not_offered_is_not_a_call() -> None:
    tools = parse_tools([{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}])
    for syntax, text in [("json", '{"name": "rm_rf", "arguments": {}}'),
                         ("mistral", '[TOOL_CALLS][{"name": "rm_rf", "arguments": {}}]'),
                         ("llama3", '[{"name": "rm_rf", "parameters": {}}]')]:
        setup = ToolSetup(tools, ToolChoice("auto"), parallel=True, syntax=syntax)
        assert setup.parse(text) is None
    ok = ToolSetup(tools, ToolChoice("auto"), parallel=True, syntax="llama3").parse(
        '{"name": "get_weather", "parameters": {"city": "Oslo"}}')
    assert ok is not None and ok[0].name == "get_weather"


def test_history_in_any_shape_a_client_sends_renders_without_error() -> None:
    odd = [{"role": "user", "content": "x"},
           {"role": "assistant", "content": None,
            "tool_calls": [5, {"id": [1], "function": {"name": "f", "arguments": {"a": 1}}}, {"function": "no"}]},
           {"role": "tool", "tool_call_id": [1], "content": "r"}]
    tools = parse_tools([{"type": "function", "function": {"name": "f"}}])
    for syntax in ("json", "hermes", "llama3", "mistral", "gemma"):
        rendered = ToolSetup(tools, ToolChoice("auto"), parallel=True, syntax=syntax).messages(odd)
        assert {"role": "user", "content": "x"} in rendered
        assert "r" in str(rendered[-1]["content"])  # the result is there, after the call
    assert plain_history(odd)[1]["content"] == '{"name": "f", "arguments": {"a": 1}}'
