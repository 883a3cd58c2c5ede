"""Each model family's tool-call syntax: told apart by its template, read back from its text."""

from dataclasses import dataclass

import pytest

from homellm.tools.call_syntax import (
    arguments_key,
    call_object_schema,
    gemma_history,
    gemma_tool_prompt,
    hf_history,
    parse_calls,
    python_calls,
    starts_a_call,
    template_knows_tools,
    usable_syntax,
)


@dataclass(frozen=True)
class FakeTool:
    name: str
    description: str
    parameters: dict


WEATHER = FakeTool("get_weather", "Weather for a city.", {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "City name."},
                   "days": {"type": "integer"}, "unit": {"enum": ["c", "f"]}},
    "required": ["city"]})


def test_only_templates_that_render_tools_get_them_through_the_template():
    assert [s for s in ("json", "hermes", "llama3", "mistral", "gemma") if template_knows_tools(s)] == \
        ["hermes", "llama3", "mistral"]
    assert arguments_key("llama3") == "parameters" and arguments_key("hermes") == "arguments"


# Reading calls

@pytest.mark.parametrize("syntax, text", [
    ("json", '{"name": "get_weather", "arguments": {"city": "Paris"}}'),
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'),
    ("llama3", '{"name": "get_weather", "parameters": {"city": "Paris"}}'),
    ("llama3", '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}'),
    ("mistral", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}]'),
    ("mistral", '[{"name": "get_weather", "arguments": {"city": "Paris"}}]'),  # the control token not shown
    ("mistral", '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}'),
    ("mistral", '[TOOL_CALLS]get_weather[CALL_ID]a1b2c3d4e[ARGS]{"city": "Paris"}'),
    ("gemma", '```tool_code\nget_weather(city="Paris")\n```'),
    ("gemma", "```tool_code\nget_weather(city='Paris')\n```"),
])
def test_one_call_in_each_syntax_is_read(syntax, text):
    assert parse_calls(syntax, text) == [("get_weather", {"city": "Paris"})]


@pytest.mark.parametrize("syntax, text", [
    ("json", '[{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}]'),
    ("hermes", '<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n'
               '<tool_call>\n{"name": "b", "arguments": {}}\n</tool_call>'),
    ("llama3", '{"name": "a", "parameters": {"x": 1}}; {"name": "b", "parameters": {}}'),
    ("llama3", '<|python_tag|>{"name": "a", "parameters": {"x": 1}};{"name": "b", "parameters": {}}'),
    ("llama3", '{"name": "a", "parameters": {"x": 1}}\n{"name": "b", "parameters": {}}'),
    ("mistral", '[TOOL_CALLS][{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}]'),
    ("mistral", '[TOOL_CALLS]a[ARGS]{"x": 1}[TOOL_CALLS]b[ARGS]{}'),
    ("gemma", "```tool_code\na(x=1)\nb()\n```"),
    ("gemma", "```tool_code\n[a(x=1), b()]\n```"),
])
def test_several_calls_are_read_in_order(syntax, text):
    assert parse_calls(syntax, text) == [("a", {"x": 1}), ("b", {})]


@pytest.mark.parametrize("syntax, text", [
    ("json", '{"name": "get_weather", "arguments": {"city": "Par'),
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par'),
    ("hermes", '<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n<tool_call>\n{"name": "b"'),
    ("llama3", '{"name": "a", "parameters": {"x": 1}}; {"name": "b", "param'),
    ("mistral", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}'),
    ("mistral", '[TOOL_CALLS]get_weather[ARGS]{"city": "Pa'),
    ("gemma", '```tool_code\nget_weather(city="Paris")\n'),
    ("gemma", '```tool_code\nget_weather(city="Par'),
])
def test_a_call_cut_off_mid_way_is_not_a_call(syntax, text):
    assert parse_calls(syntax, text) is None


@pytest.mark.parametrize("syntax", ["json", "hermes", "llama3", "mistral", "gemma"])
def test_a_plain_answer_is_not_a_call(syntax):
    assert parse_calls(syntax, "The weather in Paris is sunny.") is None
    assert parse_calls(syntax, "") is None
    assert starts_a_call(syntax, "The weather") is False


def test_a_call_followed_by_text_is_not_a_call():
    assert parse_calls("llama3", '{"name": "a", "parameters": {}} and then some words') is None
    assert parse_calls("hermes", '<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call> and words') is None
    assert parse_calls("gemma", "```tool_code\na()\n```\nand words") is None


def test_an_object_without_a_name_is_not_a_call():
    assert parse_calls("hermes", '<tool_call>\n{"arguments": {}}\n</tool_call>') is None
    assert parse_calls("llama3", '{"city": "Paris"}') is None


def test_arguments_written_as_json_text_or_under_the_other_key_are_read():
    assert parse_calls("hermes", '<tool_call>{"name": "a", "arguments": "{\\"x\\": 2}"}</tool_call>') == [("a", {"x": 2})]
    assert parse_calls("llama3", '{"name": "a", "arguments": {"x": 2}}') == [("a", {"x": 2})]


def test_hermes_call_missing_only_its_closing_tag_counts():
    assert parse_calls("hermes", '<tool_call>\n{"name": "a", "arguments": {"x": 1}}') == [("a", {"x": 1})]


def test_a_raw_line_break_inside_a_json_string_still_reads():
    assert parse_calls("hermes", '<tool_call>{"name": "a", "arguments": {"x": "one\ntwo"}}</tool_call>') == \
        [("a", {"x": "one\ntwo"})]


# Python calls (Gemma): literals only, never run

def test_python_calls_read_json_and_python_literals_alike():
    code = 'f(a=true, b=False, c=null, d=None, e=-2.5, g=[1, "x"], h={"k": [true]}, i=(1, 2), j="\\ud83d\\ude00")'
    assert python_calls(code) == [("f", {"a": True, "b": False, "c": None, "d": None, "e": -2.5,
                                         "g": [1, "x"], "h": {"k": [True]}, "i": [1, 2], "j": "😀"})]


@pytest.mark.parametrize("code", [
    "__import__('os').system('rm -rf /')",
    "get_weather(city=__import__('os').getcwd())",
    "get_weather(city=open('/etc/passwd').read())",
    "get_weather(city=os.environ)",
    "get_weather(city=x)",
    "get_weather(city='a' + 'b')",
    "get_weather(city=f'{x}')",
    "get_weather(city=lambda: 1)",
    "get_weather(**{'city': 'Paris'})",
    "get_weather('Paris')",
    "os.system('ls')",
    "import os",
    "x = get_weather(city='Paris')",
    "get_weather(city={1: 2})",
    "get_weather(city=b'bytes')",
    "get_weather(city=1j)",
    "get_weather(city=...)",
    "get_weather(city=[i for i in range(3)])",
])
def test_python_that_is_more_than_a_call_with_literals_is_refused(code):
    assert python_calls(code) is None
    assert parse_calls("gemma", f"```tool_code\n{code}\n```") is None


def test_deeply_nested_python_is_refused_not_a_crash():
    assert parse_calls("gemma", "```tool_code\nf(a=" + "[" * 5000 + "]" * 5000 + ")\n```") is None


# Streaming: when the first text tells a call from an answer

# Under the grammar a text answer cannot start with a call's first character, so the first one decides,
# and a call whose marker was a control token (gone from the text) still counts as one.
@pytest.mark.parametrize("syntax, prefix, decided", [
    ("json", "  ", None), ("json", "{", True), ("json", "[", True), ("json", "Hi", False),
    ("hermes", "<", True), ("hermes", "\n{", True), ("hermes", "The", False),
    ("llama3", "{", True), ("llama3", "<|python_tag|>{", True), ("llama3", "[", True), ("llama3", "It", False),
    ("mistral", "[TOOL_CALLS]", True), ("mistral", "{", True), ("mistral", "Yes", False),
    ("gemma", "`", True), ("gemma", "Sure", False),
])
def test_the_start_of_a_turn_tells_a_call_by_its_first_character(syntax, prefix, decided):
    assert starts_a_call(syntax, prefix) is decided


# Tools and history for the templates

def test_call_object_schema_uses_the_chosen_key_and_hoists_definitions():
    tool = FakeTool("plot", "", {"type": "object", "properties": {"p": {"$ref": "#/$defs/Point"}},
                                 "$defs": {"Point": {"type": "object", "properties": {"x": {"type": "number"}}}}})
    schema = call_object_schema([tool, WEATHER], "parameters")
    assert [b["properties"]["name"]["const"] for b in schema["anyOf"]] == ["plot", "get_weather"]
    assert schema["anyOf"][0]["required"] == ["name", "parameters"]
    assert schema["anyOf"][0]["properties"]["parameters"]["properties"]["p"] == {"$ref": "#/$defs/plot__Point"}
    assert "plot__Point" in schema["$defs"]


def test_gemma_prompt_offers_python_functions_and_a_tool_code_block():
    prompt = gemma_tool_prompt([WEATHER], text_allowed=True, parallel=False)
    assert "```tool_code" in prompt and "```tool_output" in prompt and "plain text" in prompt
    assert "def get_weather(city: str, days: int = None, unit: str = None):" in prompt
    assert "  city: City name." in prompt
    assert 'One of "c", "f".' in prompt
    assert "plain text" not in gemma_tool_prompt([WEATHER], text_allowed=False, parallel=True)


def test_gemma_falls_back_to_json_for_names_python_cannot_write():
    assert usable_syntax("gemma", [WEATHER]) == "gemma"
    odd = FakeTool("lookup", "", {"type": "object", "properties": {"first-name": {"type": "string"}}})
    assert usable_syntax("gemma", [WEATHER, odd]) == "json"
    assert usable_syntax("gemma", [FakeTool("get-weather", "", {"type": "object"})]) == "json"
    assert usable_syntax("hermes", [odd]) == "hermes"


HISTORY = [
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_0123456789abcdef01234567", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_abcdefabcdefabcdefabcdef", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
    {"role": "tool", "tool_call_id": "call_0123456789abcdef01234567", "content": "sunny"},
    {"role": "tool", "tool_call_id": "call_abcdefabcdefabcdefabcdef", "content": "rain"},
    {"role": "user", "content": "Thanks. And Oslo?"},
]


def test_hf_history_gives_arguments_as_dicts_and_names_the_results():
    out = hf_history(HISTORY)
    calls = out[1]["tool_calls"]
    assert calls[0]["function"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert calls[0]["id"] == "call_0123456789abcdef01234567" and out[1]["content"] == ""
    assert out[2]["name"] == "get_weather" and out[2]["tool_call_id"] == calls[0]["id"]
    assert HISTORY[1]["tool_calls"][0]["function"]["arguments"] == '{"city": "Paris"}'  # input left alone


def test_hf_history_for_mistral_shortens_ids_to_nine_characters_consistently():
    out = hf_history(HISTORY, "mistral")
    ids = [c["id"] for c in out[1]["tool_calls"]]
    assert all(len(i) == 9 and i.isalnum() for i in ids) and ids[0] != ids[1]
    assert [out[2]["tool_call_id"], out[3]["tool_call_id"]] == ids


def test_gemma_history_writes_calls_and_results_as_alternating_turns():
    out = gemma_history(HISTORY)
    assert [m["role"] for m in out] == ["user", "assistant", "user"]
    assert out[1]["content"] == '```tool_code\nget_weather(city="Paris")\nget_weather(city="Rome")\n```'
    assert out[2]["content"].startswith("```tool_output\nsunny\n```\n\n```tool_output\nrain\n```")
    assert out[2]["content"].endswith("And Oslo?")
    assert parse_calls("gemma", out[1]["content"]) == [("get_weather", {"city": "Paris"}),
                                                       ("get_weather", {"city": "Rome"})]


def test_hf_history_for_llama3_gives_each_parallel_call_its_own_message():
    out = hf_history(HISTORY, "llama3")
    assert [m["role"] for m in out] == ["user", "assistant", "assistant", "tool", "tool", "user"]
    assert [m["tool_calls"][0]["function"]["arguments"] for m in out[1:3]] == [{"city": "Paris"}, {"city": "Rome"}]
    assert [m["name"] for m in out[3:5]] == ["get_weather", "get_weather"]


def test_hermes_calls_whose_markers_were_control_tokens_are_read_from_the_bare_json():
    text = '\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n'
    assert parse_calls("hermes", text) == [("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Rome"})]
    assert parse_calls("hermes", '{"name": "get_weather"') is None
