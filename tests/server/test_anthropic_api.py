"""Anthropic's Messages API through the official `anthropic` client against a real `homellm serve`."""

from __future__ import annotations

import json
import re

import anthropic
import httpx
import jsonschema
import pytest
from conftest import ServerProcess

MODEL = "smollm2:135m"
FRANCE = [{"role": "user", "content": "Name the capital of France."}]
ADD = {"name": "add", "description": "Add two integers.",
       "input_schema": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                        "required": ["a", "b"]}}
KEY = "anthropic-key-7c1e"
# 2.x clients take no temperature argument; the body may still carry one, and the server honours it.
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def claude(server: ServerProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key="none", max_retries=0)


@pytest.fixture(scope="module")
def created(claude: anthropic.Anthropic) -> anthropic.types.Message:
    """One whole answer at temperature 0, which the streamed and stopped answers are compared with."""
    return claude.messages.create(model=MODEL, messages=FRANCE, max_tokens=16, extra_body=GREEDY)


def text_of(message: anthropic.types.Message) -> str:
    assert all(block.type == "text" for block in message.content)
    return "".join(block.text for block in message.content)


def error_type(exc: anthropic.APIStatusError) -> str:
    assert exc.body["type"] == "error" and exc.body["error"]["message"]
    return exc.body["error"]["type"]


def test_create_answers_with_a_message(created: anthropic.types.Message) -> None:
    assert created.id.startswith("msg_") and created.type == "message" and created.role == "assistant"
    assert created.model == MODEL
    assert created.content[0].type == "text" and created.content[0].text.strip()
    assert created.stop_reason in ("end_turn", "max_tokens") and created.stop_sequence is None
    assert created.usage.input_tokens > 0 and 0 < created.usage.output_tokens <= 16
    assert created.usage.cache_creation_input_tokens == 0 and created.usage.cache_read_input_tokens is not None


def test_stream_gives_the_same_message(claude: anthropic.Anthropic, created: anthropic.types.Message) -> None:
    with claude.messages.stream(model=MODEL, messages=FRANCE, max_tokens=16, extra_body=GREEDY) as stream:
        streamed_text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed_text == text_of(final) == text_of(created)
    assert final.stop_reason == created.stop_reason and final.id.startswith("msg_")
    assert final.usage.output_tokens == created.usage.output_tokens
    # The prompt was evaluated before: input and cache-read tokens add up to the same prompt.
    assert (final.usage.input_tokens + final.usage.cache_read_input_tokens
            == created.usage.input_tokens + created.usage.cache_read_input_tokens)


def test_stream_events_come_in_anthropics_order(claude: anthropic.Anthropic) -> None:
    events = list(claude.messages.create(model=MODEL, messages=FRANCE, max_tokens=4, extra_body=GREEDY, stream=True))
    names = " ".join(e.type for e in events)
    assert re.fullmatch(r"message_start (ping )?content_block_start (content_block_delta )+content_block_stop "
                        r"message_delta message_stop", names), names
    assert events[0].message.content == [] and events[0].message.usage.input_tokens > 0
    assert all(e.delta.type == "text_delta" for e in events if e.type == "content_block_delta")
    delta = events[-2]
    assert delta.delta.stop_reason == "max_tokens" and delta.usage.output_tokens == 4


def test_system_prompt_as_string_or_blocks(claude: anthropic.Anthropic) -> None:
    system = "You are a pirate. Answer like one."
    as_string = claude.messages.create(model=MODEL, system=system, messages=FRANCE, max_tokens=12, extra_body=GREEDY)
    as_blocks = claude.messages.create(model=MODEL, system=[{"type": "text", "text": system}], messages=FRANCE,
                                       max_tokens=12, extra_body=GREEDY)
    assert text_of(as_string) == text_of(as_blocks)
    brief = claude.messages.count_tokens(model=MODEL, system="Be brief.", messages=FRANCE).input_tokens
    assert as_string.usage.input_tokens + as_string.usage.cache_read_input_tokens > brief


def test_tool_choice_any_gives_a_valid_tool_use(claude: anthropic.Anthropic) -> None:
    ask = {"model": MODEL, "messages": [{"role": "user", "content": "What is 2 plus 40?"}], "tools": [ADD],
           "tool_choice": {"type": "any"}, "max_tokens": 40, "extra_body": GREEDY}
    message = claude.messages.create(**ask)
    assert message.stop_reason == "tool_use" and len(message.content) == 1
    use = message.content[0]
    assert use.type == "tool_use" and use.id.startswith("toolu_") and use.name == "add"
    jsonschema.validate(use.input, ADD["input_schema"])

    events = list(claude.messages.create(**ask, stream=True))
    partial = "".join(e.delta.partial_json for e in events
                      if e.type == "content_block_delta" and e.delta.type == "input_json_delta")
    assert json.loads(partial) == use.input
    starts = [e.content_block for e in events if e.type == "content_block_start"]
    assert [(b.type, b.name, b.input) for b in starts] == [("tool_use", "add", {})]
    assert [e.delta.stop_reason for e in events if e.type == "message_delta"] == ["tool_use"]


def test_claude_codes_value_bounds_in_tool_schemas_are_not_refused(claude: anthropic.Anthropic) -> None:
    # Claude Code's built-in tools carry `format: uri` and number bounds the grammar cannot enforce.
    fetch = {"name": "web_fetch", "description": "Fetch a URL.",
             "input_schema": {"type": "object", "required": ["url"], "additionalProperties": False,
                              "properties": {"url": {"type": "string", "format": "uri"},
                                             "timeout": {"type": "number", "minimum": 0, "maximum": 600}}}}
    message = claude.messages.create(model=MODEL, max_tokens=40, tools=[fetch], tool_choice={"type": "any"},
                                     messages=[{"role": "user", "content": "Fetch https://example.com"}],
                                     extra_body=GREEDY)
    [use] = message.content
    assert use.type == "tool_use" and isinstance(use.input["url"], str)
    assert set(use.input) <= {"url", "timeout"}


def test_a_named_tool_is_the_one_used(claude: anthropic.Anthropic) -> None:
    echo = {"name": "echo", "description": "Repeat a word.",
            "input_schema": {"type": "object", "properties": {"word": {"type": "string", "maxLength": 8}},
                             "required": ["word"]}}
    message = claude.messages.create(model=MODEL, messages=[{"role": "user", "content": "What is 2 plus 40?"}],
                                     tools=[ADD, echo], tool_choice={"type": "tool", "name": "echo"},
                                     max_tokens=40, extra_body=GREEDY)
    assert [(b.type, b.name) for b in message.content] == [("tool_use", "echo")]
    jsonschema.validate(message.content[0].input, echo["input_schema"])


def test_a_tool_result_turn_is_answered_in_text(claude: anthropic.Anthropic) -> None:
    def history(result: object) -> list[dict]:
        return [{"role": "user", "content": "What is 2 plus 40?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "add",
                                                   "input": {"a": 2, "b": 40}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": result}]}]

    message = claude.messages.create(model=MODEL, messages=history("42"), tools=[ADD],
                                     tool_choice={"type": "none"}, max_tokens=16, extra_body=GREEDY)
    assert message.content[0].type == "text" and message.content[0].text.strip()
    assert message.stop_reason in ("end_turn", "max_tokens")
    # Text blocks as a result's content are read as text: a longer result is a longer prompt.
    short = claude.messages.count_tokens(model=MODEL, messages=history([{"type": "text", "text": "42"}]))
    long = claude.messages.count_tokens(model=MODEL, messages=history([{"type": "text", "text": "42 " * 20}]))
    assert long.input_tokens > short.input_tokens


def test_count_tokens_grows_with_the_request(claude: anthropic.Anthropic) -> None:
    short = claude.messages.count_tokens(model=MODEL, messages=FRANCE).input_tokens
    longer = claude.messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": "Name the capital of France, and of Spain."}])
    with_tools = claude.messages.count_tokens(model=MODEL, messages=FRANCE, tools=[ADD])
    assert isinstance(short, int) and 0 < short < longer.input_tokens
    assert with_tools.input_tokens > short


def test_stop_sequence_ends_the_answer_and_is_named(claude: anthropic.Anthropic,
                                                     created: anthropic.types.Message) -> None:
    text = text_of(created)
    stop = text.split()[2]
    # A max_tokens far past the context is a ceiling, as Claude Code sends it (streamed), not an error.
    with claude.messages.stream(model=MODEL, messages=FRANCE, max_tokens=64000, extra_body=GREEDY,
                                stop_sequences=["no such words", stop]) as stream:
        stopped = stream.get_final_message()
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == stop
    assert text_of(stopped) == text[:text.index(stop)]


@pytest.mark.parametrize("field", ["output_config", "output_format"])
def test_output_format_schema_is_enforced(claude: anthropic.Anthropic, field: str) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
              "required": ["city"], "additionalProperties": False}
    fmt = {"type": "json_schema", "schema": schema}
    extra = {"format": fmt} if field == "output_config" else fmt
    message = claude.messages.create(model=MODEL, messages=FRANCE, max_tokens=24,
                                     extra_body={field: extra, **GREEDY})
    jsonschema.validate(json.loads(text_of(message)), schema)


def test_fields_without_meaning_here_are_accepted(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model=MODEL, max_tokens=4, metadata={"user_id": "someone"}, service_tier="auto",
        thinking={"type": "enabled", "budget_tokens": 1024},
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}]},
                  {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "x"},
                                                    {"type": "text", "text": "Hello."}]},
                  {"role": "user", "content": "Name the capital of France."}],
        extra_headers={"anthropic-beta": "context-management-2025-06-27"},
        extra_body={"container": None, "context_management": {"edits": []}, "cache_control": {"type": "ephemeral"},
                    "top_p": 0.9, "top_k": 20, **GREEDY})
    assert message.content and message.stop_reason == "max_tokens"


def test_claude_model_names_mean_the_default_model(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model="claude-haiku-4-5-20251001", messages=FRANCE, max_tokens=2,
                                     extra_body=GREEDY)
    assert message.model == MODEL and message.usage.output_tokens == 2
    assert claude.messages.count_tokens(model="claude-sonnet-4-5", messages=FRANCE).input_tokens > 0


def test_unknown_model_is_404_in_anthropics_shape(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        claude.messages.create(model="no-such-model", messages=FRANCE, max_tokens=4)
    assert error_type(info.value) == "not_found_error"


def test_missing_max_tokens_is_refused(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        claude.post("/v1/messages", body={"model": MODEL, "messages": FRANCE}, cast_to=httpx.Response)
    assert error_type(info.value) == "invalid_request_error"
    assert "max_tokens" in info.value.body["error"]["message"]


@pytest.mark.parametrize(("ask", "named"), [
    ({"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}]},
     "image"),
    ({"messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "text", "data": "x"}}]}]},
     "document"),
    ({"messages": [{"role": "user", "content": [{"type": "hologram"}]}]}, "hologram"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]}]}]}, "image"),
    ({"messages": FRANCE, "tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "web_search_20250305"),
    ({"messages": FRANCE, "tools": [{"name": "bad name!", "input_schema": {"type": "object"}}]}, "tools[0].name"),
    ({"messages": FRANCE, "mcp_servers": [{"type": "url", "url": "https://mcp.example", "name": "wiki"}]}, "wiki"),
    ({"messages": FRANCE, "tool_choice": {"type": "any"}}, "tool_choice"),
    ({"messages": FRANCE, "tools": [ADD], "tool_choice": {"type": "tool", "name": "subtract"}}, "subtract"),
    ({"messages": FRANCE, "temperature": 1.5}, "temperature"),
    ({"messages": [{"role": "system", "content": "hi"}]}, "role"),
    ({"messages": FRANCE, "max_tokens": 0}, "max_tokens"),
])
def test_bad_requests_are_400_naming_the_problem(claude: anthropic.Anthropic, ask: dict, named: str) -> None:
    body = {"model": MODEL, "max_tokens": 4, **ask}
    with pytest.raises(anthropic.BadRequestError) as info:
        claude.post("/v1/messages", body=body, cast_to=httpx.Response)
    assert error_type(info.value) == "invalid_request_error"
    assert named in info.value.body["error"]["message"]


def test_server_keeps_answering_after_bad_requests(claude: anthropic.Anthropic, server: ServerProcess) -> None:
    response = httpx.post(f"{server.base_url}/v1/messages", content=b'{"messages": [',
                          headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"
    after = claude.messages.create(model=MODEL, messages=FRANCE, max_tokens=2, extra_body=GREEDY)
    assert after.usage.output_tokens == 2


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory):
    proc = ServerProcess(["--api-key", KEY], tmp_path_factory.mktemp("anthropic-keyed")).wait_ready()
    yield proc
    proc.stop()


def test_key_comes_as_x_api_key_or_bearer(keyed_server: ServerProcess) -> None:
    for client in (anthropic.Anthropic(base_url=keyed_server.base_url, api_key=KEY, max_retries=0),
                   anthropic.Anthropic(base_url=keyed_server.base_url, auth_token=KEY, max_retries=0)):
        assert client.messages.count_tokens(model=MODEL, messages=FRANCE).input_tokens > 0
    wrong = anthropic.Anthropic(base_url=keyed_server.base_url, api_key="wrong", max_retries=0)
    for call in (lambda: wrong.messages.count_tokens(model=MODEL, messages=FRANCE),
                 lambda: wrong.messages.create(model=MODEL, messages=FRANCE, max_tokens=2)):
        with pytest.raises(anthropic.AuthenticationError) as info:
            call()
        assert error_type(info.value) == "authentication_error"
