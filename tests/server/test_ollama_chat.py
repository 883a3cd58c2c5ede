"""Ollama's generation routes through the official `ollama` client: /api/chat, /api/generate, /api/embed."""

from __future__ import annotations

import json
import math
import time
from datetime import datetime

import httpx
import jsonschema
import ollama
import pytest
from conftest import ServerProcess

from homellm.server.ollama import OllamaMessage, openai_history
from homellm.tools.calling import plain_history

MODEL = "smollm2:135m"
GREEDY = {"temperature": 0, "num_predict": 16}
SHORT = {"temperature": 0, "num_predict": 8}
HELLO = [{"role": "user", "content": "Say hello."}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                   "required": ["city"]}}}
# One earlier call and its result: at temperature 0 the built-in model then calls the tool for Paris.
EARLIER_CALL = [
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather",
                                                                      "arguments": {"city": "Oslo"}}}]},
    {"role": "tool", "content": "5 degrees", "tool_name": "get_weather"},
]
PARIS = {"role": "user", "content": "What is the weather in Paris?"}


@pytest.fixture(scope="module")
def ollama_client(server: ServerProcess) -> ollama.Client:
    return ollama.Client(host=server.base_url, timeout=60)


def loaded(server: ServerProcess) -> dict[str, str]:
    """The models /homellm/ps lists now, with their state."""
    return {m["name"]: m["state"] for m in httpx.get(f"{server.base_url}/homellm/ps", timeout=10).json()["models"]}


def assert_measured(final) -> None:
    """The last chunk's counts and durations are there, positive, and add up."""
    assert final.done is True and final.done_reason in ("stop", "length")
    assert final.prompt_eval_count > 0 and final.eval_count > 0
    assert final.prompt_eval_duration > 0 and final.eval_duration > 0 and final.load_duration >= 0
    assert final.total_duration >= final.prompt_eval_duration + final.eval_duration
    assert final.total_duration < 60e9  # nanoseconds, not microseconds
    assert datetime.fromisoformat(final.created_at.replace("Z", "+00:00")).utcoffset().total_seconds() == 0


def test_chat_streamed_equals_whole_with_measured_counts(ollama_client: ollama.Client) -> None:
    whole = ollama_client.chat(model=MODEL, messages=HELLO, options=GREEDY, stream=False)
    parts = list(ollama_client.chat(model=MODEL, messages=HELLO, options=GREEDY, stream=True))
    assert whole.message.role == "assistant" and whole.message.content
    assert "".join(p.message.content for p in parts) == whole.message.content
    assert all(not p.done for p in parts[:-1]) and parts[-1].done and parts[-1].message.content == ""
    text_chunks = [p for p in parts if p.message.content]
    final = parts[-1]
    assert_measured(whole)
    assert_measured(final)
    assert 1 <= len(text_chunks) <= final.eval_count <= GREEDY["num_predict"]
    assert (final.eval_count, final.prompt_eval_count, final.done_reason) == \
        (whole.eval_count, whole.prompt_eval_count, whole.done_reason)


def test_num_predict_ends_the_answer_with_length(ollama_client: ollama.Client) -> None:
    answer = ollama_client.chat(model=MODEL, messages=[{"role": "user", "content": "Tell me a long story."}],
                                options={"temperature": 0, "num_predict": 3})
    assert answer.done_reason == "length" and answer.eval_count == 3


def test_generate_raw_skips_the_template(ollama_client: ollama.Client) -> None:
    prompt = "The capital of France is"
    raw = ollama_client.generate(model=MODEL, prompt=prompt, raw=True, options=SHORT)
    templated = ollama_client.generate(model=MODEL, prompt=prompt, options=SHORT)
    assert raw.response and raw.done
    assert "Paris" in raw.response
    assert raw.prompt_eval_count < 10 < templated.prompt_eval_count  # the template adds its turns
    assert_measured(raw)
    streamed = list(ollama_client.generate(model=MODEL, prompt=prompt, raw=True, options=SHORT, stream=True))
    assert "".join(p.response for p in streamed) == raw.response


def test_generate_system_is_the_chat_system_message(ollama_client: ollama.Client) -> None:
    system, prompt = "You are a pirate.", "Who are you?"
    generated = ollama_client.generate(model=MODEL, prompt=prompt, system=system, options=SHORT)
    chatted = ollama_client.chat(model=MODEL, options=SHORT, messages=[
        {"role": "system", "content": system}, {"role": "user", "content": prompt}])
    plain = ollama_client.generate(model=MODEL, prompt=prompt, options=SHORT)
    assert generated.response == chatted.message.content
    assert generated.prompt_eval_count == chatted.prompt_eval_count != plain.prompt_eval_count


def test_format_schema_is_followed(ollama_client: ollama.Client) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome", "Berlin"]},
                                               "sunny": {"type": "boolean"}},
              "required": ["city", "sunny"]}
    answer = ollama_client.chat(model=MODEL, format=schema, options={"temperature": 0, "num_predict": 24},
                                messages=[{"role": "user", "content": "Capital of France, and is it sunny? JSON."}])
    assert answer.done_reason == "stop"
    jsonschema.validate(json.loads(answer.message.content), schema)


def test_format_json_gives_an_object(ollama_client: ollama.Client) -> None:
    answer = ollama_client.generate(model=MODEL, format="json", options={"temperature": 0, "num_predict": 16},
                                    prompt='JSON only: {"ok": true}')
    assert answer.done_reason == "stop", answer.response
    assert isinstance(json.loads(answer.response), dict)


def test_tool_call_arguments_are_an_object_that_validates(ollama_client: ollama.Client) -> None:
    options = {"temperature": 0, "num_predict": 24}
    answer = ollama_client.chat(model=MODEL, messages=[*EARLIER_CALL, PARIS], tools=[WEATHER], options=options)
    assert answer.done_reason == "stop" and answer.message.content == ""
    (call,) = answer.message.tool_calls
    assert call.function.name == "get_weather" and isinstance(call.function.arguments, dict)
    jsonschema.validate(call.function.arguments, WEATHER["function"]["parameters"])
    assert call.function.arguments["city"] == "Paris"
    parts = list(ollama_client.chat(model=MODEL, messages=[*EARLIER_CALL, PARIS], tools=[WEATHER],
                                    options=options, stream=True))
    streamed = [c for p in parts if p.message.tool_calls for c in p.message.tool_calls]
    assert [(c.function.name, c.function.arguments) for c in streamed] == [("get_weather", {"city": "Paris"})]
    assert parts[-1].done and parts[-1].eval_count == answer.eval_count


def test_auto_tools_answer_text_or_a_valid_call(ollama_client: ollama.Client) -> None:
    for question in ("What is the weather in Paris?", "Tell me a joke."):
        answer = ollama_client.chat(model=MODEL, messages=[{"role": "user", "content": question}], tools=[WEATHER],
                                    options={"temperature": 0, "num_predict": 10})
        if answer.message.tool_calls:
            for call in answer.message.tool_calls:
                jsonschema.validate(call.function.arguments, WEATHER["function"]["parameters"])
        else:
            assert answer.message.content and not answer.message.content.lstrip().startswith("{")


def test_a_tool_result_turn_is_answered_in_text(ollama_client: ollama.Client) -> None:
    messages = [PARIS,
                {"role": "assistant", "content": "",
                 "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                {"role": "tool", "content": "The weather in Paris: 21 degrees and sunny.",
                 "tool_name": "get_weather"}]
    answer = ollama_client.chat(model=MODEL, messages=messages, tools=[WEATHER],
                                options={"temperature": 0, "num_predict": 24})
    assert not answer.message.tool_calls
    assert "21" in answer.message.content  # the result reached the model


def test_tool_results_pair_with_their_calls_by_name_else_in_order() -> None:
    calls = [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
             {"function": {"name": "get_time", "arguments": "{\"zone\": \"CET\"}"}}]
    messages = [OllamaMessage.model_validate(m) for m in [
        {"role": "user", "content": "Weather and time in Oslo?"},
        {"role": "assistant", "tool_calls": calls},
        {"role": "tool", "content": "12:00", "tool_name": "get_time"},
        {"role": "tool", "content": "5 degrees"},
    ]]
    history = openai_history(messages)
    assert history[1]["tool_calls"][0]["function"]["arguments"] == '{"city": "Oslo"}'
    assert [m["tool_call_id"] for m in history[2:]] == ["call_1_1", "call_1_0"]
    plain = plain_history(history)
    # Results in a row are one user turn, in the order given.
    assert [m["content"] for m in plain[2:]] == ["Result of get_time:\n12:00\n\nResult of get_weather:\n5 degrees"]


def test_embed_gives_unit_vectors(ollama_client: ollama.Client, server: ServerProcess) -> None:
    answer = ollama_client.embed(model="all-minilm", input=["The cat sleeps.", "Stocks fell today."])
    assert len(answer.embeddings) == 2
    for vector in answer.embeddings:
        assert len(vector) == 384
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, abs_tol=1e-4)
    assert answer.embeddings[0] != answer.embeddings[1]
    assert answer.prompt_eval_count > 4 and answer.total_duration >= answer.load_duration
    short = ollama_client.embed(model="all-minilm", input="The cat sleeps.", dimensions=64)
    assert len(short.embeddings[0]) == 64
    assert math.isclose(math.sqrt(sum(x * x for x in short.embeddings[0])), 1.0, abs_tol=1e-4)
    assert ollama_client.embed(model="all-minilm", input=[]).embeddings == []  # loads, as Ollama's does
    old = ollama_client.embeddings(model="all-minilm", prompt="The cat sleeps.")
    assert old.embedding == pytest.approx(answer.embeddings[0], abs=1e-5)
    # The embedding model is in the store now: asked to chat, it is refused by name.
    refused = httpx.post(f"{server.base_url}/api/chat", timeout=30,
                         json={"model": "all-minilm:l6-v2", "messages": HELLO})
    assert refused.status_code == 400 and "embedding model" in refused.json()["error"]
    chat_model = httpx.post(f"{server.base_url}/api/embed", timeout=30, json={"model": MODEL, "input": "hi"})
    assert chat_model.status_code == 400 and "not an embedding model" in chat_model.json()["error"]


def test_empty_chat_loads_and_keep_alive_zero_unloads(ollama_client: ollama.Client,
                                                      server: ServerProcess) -> None:
    unloaded = ollama_client.chat(model=MODEL, messages=[], keep_alive=0)
    assert unloaded.done and unloaded.done_reason == "unload"
    deadline = time.monotonic() + 15
    while MODEL in loaded(server) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert MODEL not in loaded(server)
    load = ollama_client.chat(model=MODEL, messages=[], keep_alive="10m")
    assert load.done and load.done_reason == "load" and load.message.content == ""
    assert loaded(server).get(MODEL) == "ready"
    assert ollama_client.generate(model=MODEL, keep_alive=-1).done_reason == "load"


def test_unknown_model_is_404(ollama_client: ollama.Client) -> None:
    for call in (lambda: ollama_client.chat(model="no-such-model", messages=HELLO),
                 lambda: ollama_client.generate(model="no-such-model", prompt="hi"),
                 lambda: list(ollama_client.chat(model="no-such-model", messages=HELLO, stream=True))):
        with pytest.raises(ollama.ResponseError) as info:
            call()
        assert info.value.status_code == 404


CHAT = {"model": MODEL, "messages": HELLO, "stream": False}
BAD = {
    "an image in a message": ("/api/chat", {**CHAT, "messages": [{**HELLO[0], "images": ["aGk="]}]}, "images"),
    "an image to generate": ("/api/generate", {"model": MODEL, "prompt": "hi", "images": ["aGk="]}, "images"),
    "num_ctx beyond the model": ("/api/chat", {**CHAT, "options": {"num_ctx": 10**6}}, "num_ctx 1000000"),
    "num_predict 2^63": ("/api/chat", {**CHAT, "options": {"num_predict": 2**63}}, "num_predict"),
    "keep_alive garbage": ("/api/chat", {**CHAT, "keep_alive": "garbage"}, "keep_alive"),
    "a temperature that is no number": ("/api/chat", {**CHAT, "options": {"temperature": "hot"}}, "temperature"),
    "stop that is no list": ("/api/chat", {**CHAT, "options": {"stop": 3}}, "stop"),
    "no model": ("/api/chat", {"messages": HELLO}, "model is required"),
    "a suffix": ("/api/generate", {"model": MODEL, "prompt": "hi", "suffix": "end"}, "suffix"),
    "a template": ("/api/generate", {"model": MODEL, "prompt": "hi", "template": "{{ .Prompt }}"}, "template"),
    "a token context": ("/api/generate", {"model": MODEL, "prompt": "hi", "context": [1, 2, 3]}, "context"),
    "an unknown format": ("/api/generate", {"model": MODEL, "prompt": "hi", "format": "yaml"}, "format"),
    "a schema the grammar cannot enforce": (
        "/api/chat", {**CHAT, "format": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}}},
        "minimum"),
    "a role Ollama does not have": ("/api/chat", {**CHAT, "messages": [{"role": "robot", "content": "hi"}]}, "role"),
}


def test_bad_inputs_are_clear_400s_and_the_server_keeps_serving(server: ServerProcess,
                                                                ollama_client: ollama.Client) -> None:
    for name, (path, body, named) in BAD.items():
        response = httpx.post(f"{server.base_url}{path}", json=body, timeout=30)
        assert response.status_code == 400, (name, response.text)
        assert set(response.json()) == {"error"} and named in response.json()["error"], (name, response.text)
    with pytest.raises(ollama.ResponseError) as info:
        ollama_client.chat(model=MODEL, messages=HELLO, options={"num_ctx": 10**6})
    assert info.value.status_code == 400 and "8192" in info.value.error  # what the model was trained for
    answer = ollama_client.chat(model=MODEL, messages=HELLO, options=GREEDY)
    assert answer.done and answer.message.content


def test_a_curl_body_sent_as_a_form_is_read_as_json(server: ServerProcess) -> None:
    # Ollama's docs use `curl -d '{...}'`, which labels the body application/x-www-form-urlencoded.
    response = httpx.post(f"{server.base_url}/api/chat", content=json.dumps({**CHAT, "options": GREEDY}),
                          headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["done"] and response.json()["message"]["content"]


def test_accepted_fields_that_change_nothing(ollama_client: ollama.Client) -> None:
    """Options clients always send (num_gpu, mirostat...), `think`, a smaller num_ctx and -1 or 0 num_predict."""
    # Aider's ollama_chat/ sends a num_ctx past the served context: within the model's 8192, it is served.
    options = {**GREEDY, "num_ctx": 8192, "num_gpu": 99, "num_thread": 2, "mirostat": 0, "seed": 7}
    answer = ollama_client.chat(model=MODEL, messages=HELLO, options=options, think=False)
    reference = ollama_client.chat(model=MODEL, messages=HELLO, options=GREEDY)
    assert answer.message.content == reference.message.content and answer.message.thinking is None
    # A grammar ends these answers within a few tokens, however many num_predict allows.
    flag = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
            "additionalProperties": False}
    for predict in (2**62, -1, -2, 0):
        capped = ollama_client.chat(model=MODEL, messages=HELLO, format=flag,
                                    options={"temperature": 0, "num_predict": predict})
        assert capped.done_reason == "stop" and json.loads(capped.message.content) in ({"ok": True}, {"ok": False})
