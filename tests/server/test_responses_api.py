"""OpenAI's Responses API (/v1/responses) of a real `homellm serve`, driven by the official `openai` client."""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest
from openai.types.responses import (
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponseStreamEvent,
)
from pydantic import TypeAdapter

from homellm.errors import EngineError, ResponseNotFoundError
from homellm.server.responses import (
    ResponseMemory,
    ResponseShell,
    ResponsesRequest,
    _EventWriter,
    _failed,
)

MODEL = "smollm2:135m"
ADD = {"type": "function", "name": "add", "description": "Add two integers.", "strict": True,
       "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                      "required": ["a", "b"], "additionalProperties": False}}
SUM = "What is 2 plus 40? Use the tool."
GREEDY = {"model": MODEL, "temperature": 0}
STREAM_EVENT: TypeAdapter = TypeAdapter(ResponseStreamEvent)
CALL_TOKENS = 32  # a whole call to ADD takes 25 tokens of the built-in model


def test_create_answers_a_string_input_with_true_usage(client: openai.OpenAI) -> None:
    done = client.responses.create(**GREEDY, input="Name the capital of France.", max_output_tokens=16)
    assert done.object == "response" and done.id.startswith("resp_") and done.model == MODEL
    assert "Paris" in done.output_text
    [message] = done.output
    assert message.type == "message" and message.id.startswith("msg_") and message.role == "assistant"
    assert done.usage.input_tokens > 20  # the built-in template adds a system prompt
    assert 0 < done.usage.output_tokens <= 16
    assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens


def test_an_answer_cut_by_max_output_tokens_is_incomplete(client: openai.OpenAI) -> None:
    done = client.responses.create(**GREEDY, input="Write a long story about rivers.", max_output_tokens=3)
    assert done.status == "incomplete" and done.incomplete_details.reason == "max_output_tokens"
    assert done.usage.output_tokens == 3 and done.output[0].status == "incomplete"


def test_streamed_deltas_make_the_final_text_and_equal_the_whole_answer(client: openai.OpenAI) -> None:
    asked = {**GREEDY, "input": "Write two sentences about rivers.", "max_output_tokens": 24}
    whole = client.responses.create(**asked)
    with client.responses.stream(**asked) as stream:
        events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          f"response.{whole.status}"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 5
    final = events[-1].response
    assert "".join(deltas) == final.output_text == whole.output_text
    assert final.id == events[0].response.id and final.usage.output_tokens == whole.usage.output_tokens
    assert client.responses.retrieve(final.id).output_text == whole.output_text  # a streamed response is kept too


@pytest.mark.parametrize("asked", [
    {"input": "Say hi.", "max_output_tokens": 4},
    {"input": SUM, "tools": [ADD], "tool_choice": "required", "max_output_tokens": CALL_TOKENS},
])
def test_every_streamed_event_is_named_by_its_type_and_parses_strictly(server, asked: dict) -> None:
    body = {**asked, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{server.base_url}/v1/responses", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        blocks = [b for b in response.read().decode().split("\n\n") if b]
    for block in blocks:
        event_line, data_line = block.split("\n")
        data = json.loads(data_line.removeprefix("data: "))
        assert event_line.removeprefix("event: ") == data["type"]
        STREAM_EVENT.validate_python(data)  # the SDK's own types, validated, not merely constructed
    assert data["type"] == ("response.completed" if "tools" in asked else "response.incomplete")


def test_instructions_reach_the_model_as_a_system_message(client: openai.OpenAI) -> None:
    rule = "You are a pirate. Answer every question like a pirate would."
    told = client.responses.create(**GREEDY, instructions=rule, input="How are you?", max_output_tokens=12)
    plain = client.responses.create(**GREEDY, input="How are you?", max_output_tokens=12)
    chat = client.chat.completions.create(**GREEDY, max_tokens=12, messages=[
        {"role": "system", "content": rule}, {"role": "user", "content": "How are you?"}])
    assert told.usage.input_tokens == chat.usage.prompt_tokens != plain.usage.input_tokens
    assert told.output_text == chat.choices[0].message.content
    assert told.instructions == rule


def test_required_function_call_validates_against_its_parameters(client: openai.OpenAI) -> None:
    done = client.responses.create(**GREEDY, input=SUM, tools=[ADD], tool_choice="required", max_output_tokens=CALL_TOKENS)
    [call] = done.output
    assert call.type == "function_call" and call.name == "add" and call.call_id.startswith("call_")
    assert call.id.startswith("fc_") and call.status == "completed" and done.output_text == ""
    jsonschema.validate(json.loads(call.arguments), ADD["parameters"])


def test_streamed_call_arguments_concatenate_to_the_final_arguments(client: openai.OpenAI) -> None:
    with client.responses.stream(**GREEDY, input=SUM, tools=[ADD], tool_choice={"type": "function", "name": "add"},
                                 max_output_tokens=CALL_TOKENS) as stream:
        events = list(stream)
    added = [e.item for e in events if e.type == "response.output_item.added"]
    assert [item.type for item in added] == ["function_call"]
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    [done] = [e.arguments for e in events if e.type == "response.function_call_arguments.done"]
    [call] = events[-1].response.output
    assert events[-1].type == "response.completed" and deltas == done == call.arguments
    jsonschema.validate(json.loads(call.arguments), ADD["parameters"])


def test_a_function_call_output_turn_is_answered_in_text(client: openai.OpenAI) -> None:
    turn = [{"role": "user", "content": SUM},
            {"type": "function_call", "call_id": "call_1", "name": "add", "arguments": '{"a": 2, "b": 40}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "42"}]
    done = client.responses.create(**GREEDY, input=turn, tools=[ADD], tool_choice="none", max_output_tokens=16)
    assert done.output[0].type == "message" and done.output_text.strip()
    alone = client.responses.create(**GREEDY, input=SUM, max_output_tokens=1)
    assert done.usage.input_tokens > alone.usage.input_tokens + 10  # the call and its result were shown


def test_previous_response_id_continues_the_conversation(client: openai.OpenAI) -> None:
    first = client.responses.create(**GREEDY, input="My name is Ada.", max_output_tokens=12)
    second = client.responses.create(**GREEDY, input="What is my name?", previous_response_id=first.id,
                                     max_output_tokens=12)
    assert second.previous_response_id == first.id
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    spelled_out = client.responses.create(**GREEDY, max_output_tokens=12, input=[
        {"role": "user", "content": "My name is Ada."},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": first.output_text}]},
        {"role": "user", "content": [{"type": "input_text", "text": "What is my name?"}]}])
    assert second.usage.input_tokens == spelled_out.usage.input_tokens
    assert second.output_text == spelled_out.output_text
    assert client.responses.retrieve(first.id).output_text == first.output_text


def test_a_deleted_or_unstored_response_cannot_be_continued(client: openai.OpenAI) -> None:
    unstored = client.responses.create(**GREEDY, input="Hello.", max_output_tokens=2, store=False)
    stored = client.responses.create(**GREEDY, input="Hello.", max_output_tokens=2)
    client.responses.delete(stored.id)
    for gone in (unstored.id, stored.id):
        with pytest.raises(openai.NotFoundError) as caught:
            client.responses.create(**GREEDY, input="Again.", previous_response_id=gone, max_output_tokens=2)
        assert caught.value.body["code"] == "previous_response_not_found"
        assert caught.value.body["param"] == "previous_response_id" and gone in caught.value.message
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(gone)


def test_text_format_json_schema_output_validates(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"wet": {"type": "boolean"}}, "required": ["wet"],
              "additionalProperties": False}
    done = client.responses.create(**GREEDY, input="Is water wet? Answer as JSON.", max_output_tokens=24,
                                   text={"format": {"type": "json_schema", "name": "answer", "schema": schema,
                                                    "strict": True}})
    assert done.status == "completed" and done.text.format.type == "json_schema"
    jsonschema.validate(json.loads(done.output_text), schema)


@pytest.mark.parametrize(("asked", "error", "named"), [
    ({"tools": [ADD, {"type": "file_search"}, {"type": "local_shell"}]}, openai.BadRequestError,
     "file_search, local_shell"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png;base64,AA=="}]}]},
     openai.BadRequestError, "input_image"),
    ({"max_output_tokens": 0}, openai.BadRequestError, "max_output_tokens"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, openai.BadRequestError, "item_reference"),
    ({"tool_choice": {"type": "web_search_preview"}}, openai.BadRequestError, "web_search_preview"),
    ({"previous_response_id": "resp_nothing"}, openai.NotFoundError, "resp_nothing"),
])
def test_bad_requests_are_refused_in_openais_shape(client: openai.OpenAI, asked: dict, error: type,
                                                   named: str) -> None:
    with pytest.raises(error) as caught:
        client.responses.create(**{**GREEDY, "input": "Hi.", "max_output_tokens": 2, **asked})
    assert named in caught.value.message
    assert caught.value.body["type"] == "invalid_request_error"


def test_codexs_web_search_tool_is_left_out_not_refused(client: openai.OpenAI) -> None:
    # Codex CLI offers {"type": "web_search", "external_web_access": false} with every request by default.
    search = {"type": "web_search", "external_web_access": False}
    alone = client.responses.create(**GREEDY, input="Hi.", max_output_tokens=4, tools=[search])
    plain = client.responses.create(**GREEDY, input="Hi.", max_output_tokens=4)
    assert alone.output_text == plain.output_text and alone.usage.input_tokens == plain.usage.input_tokens
    called = client.responses.create(**GREEDY, input="What is 2 plus 40?", max_output_tokens=32,
                                     tools=[search, ADD], tool_choice="required")
    assert [item.type for item in called.output] == ["function_call"] and called.output[0].name == "add"


def test_the_server_answers_after_the_bad_requests(client: openai.OpenAI) -> None:
    assert client.responses.create(**GREEDY, input="Hi.", max_output_tokens=2).status == "incomplete"


def test_stored_responses_expire_and_the_oldest_go_beyond_the_limit() -> None:
    now = [0.0]
    memory = ResponseMemory(limit=2, seconds=60, clock=lambda: now[0])
    for rid in ("resp_a", "resp_b", "resp_c"):
        memory.put(rid, {"id": rid}, [{"role": "user", "content": rid}])
    with pytest.raises(ResponseNotFoundError):
        memory.get("resp_a")
    assert memory.conversation("resp_c") == [{"role": "user", "content": "resp_c"}]
    now[0] = 60.0
    with pytest.raises(ResponseNotFoundError) as caught:
        memory.conversation("resp_c")
    assert caught.value.code == "previous_response_not_found" and caught.value.status == 404


def test_a_stream_that_fails_ends_with_an_error_and_a_failed_response() -> None:
    shell = ResponseShell("resp_x", 0, MODEL, ResponsesRequest(input="Hi."))
    blocks = [b for b in _failed(_EventWriter(), shell, [], EngineError("decode failed")).decode().split("\n\n") if b]
    error, failed = (json.loads(b.split("\ndata: ")[1]) for b in blocks)
    assert ResponseErrorEvent.model_validate(error).message == "decode failed"
    assert error["error"]["code"] == "decode_failed"  # what makes OpenAI's SDKs raise it
    event = ResponseFailedEvent.model_validate(failed)
    assert event.response.status == "failed" and event.response.error.code == "server_error"
    assert [error["sequence_number"], failed["sequence_number"]] == [0, 1]
