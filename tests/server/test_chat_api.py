"""The OpenAI-compatible routes of a real `homellm serve`, driven by the official client."""

import json

import httpx
import jsonschema
import openai

FRANCE = [{"role": "user", "content": "Name the capital of France."}]
GERMANY = [{"role": "user", "content": "What is the capital of Germany?"}]


def test_health_is_ok_once_loaded(server):
    response = httpx.get(f"{server.base_url}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_models_lists_the_builtin_model(client):
    ids = [m.id for m in client.models.list()]
    assert ids == ["smollm2:135m"]
    assert client.models.retrieve("smollm2:135m").owned_by == "homellm"


def test_chat_answers_capitals(client):
    france = client.chat.completions.create(model="smollm2:135m", messages=FRANCE, temperature=0, seed=1)
    assert "Paris" in france.choices[0].message.content
    assert france.choices[0].finish_reason == "stop"
    assert france.object == "chat.completion"
    germany = client.chat.completions.create(model="smollm2:135m", messages=GERMANY, temperature=0)
    assert "Berlin" in germany.choices[0].message.content


def test_usage_counts_are_true_tokens(client):
    done = client.chat.completions.create(model="smollm2:135m", messages=FRANCE, temperature=0, max_tokens=3)
    assert done.choices[0].finish_reason == "length"
    assert done.usage.completion_tokens == 3
    assert done.usage.prompt_tokens > 20  # the built-in template adds a system prompt
    assert done.usage.total_tokens == done.usage.prompt_tokens + 3


def test_streamed_answer_equals_whole_answer_at_temperature_zero(client):
    question = [{"role": "user", "content": "Write two sentences about rivers."}]
    whole = client.chat.completions.create(model="smollm2:135m", messages=question,
                                           temperature=0, seed=7, max_tokens=60)
    chunks = list(client.chat.completions.create(model="smollm2:135m", messages=question, temperature=0,
                                                 seed=7, max_tokens=60, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 5
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_stream_ends_with_done_marker(server):
    body = {"messages": FRANCE, "temperature": 0, "stream": True, "max_tokens": 5}
    with httpx.stream("POST", f"{server.base_url}/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)


def test_with_include_usage_chunks_before_the_last_carry_null_usage(server):
    body = {"messages": FRANCE, "temperature": 0, "stream": True, "max_tokens": 5,
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{server.base_url}/v1/chat/completions", json=body) as response:
        chunks = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["usage"]["completion_tokens"] == 5
    assert len({c["created"] for c in chunks}) == 1 and len({c["id"] for c in chunks}) == 1


def test_stream_without_include_usage_has_no_usage_chunk(client):
    chunks = list(client.chat.completions.create(model="smollm2:135m", messages=FRANCE,
                                                 temperature=0, max_tokens=4, stream=True))
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"


def test_json_schema_response_validates(client):
    schema = {
        "type": "object",
        "properties": {"country": {"type": "string"}, "capital": {"type": "string"}},
        "required": ["country", "capital"],
        "additionalProperties": False,
    }
    done = client.chat.completions.create(
        model="smollm2:135m", messages=[{"role": "user", "content": "The capital of France, as JSON."}],
        temperature=0, max_tokens=100,
        response_format={"type": "json_schema", "json_schema": {"name": "capital", "schema": schema, "strict": True}},
    )
    data = json.loads(done.choices[0].message.content)
    jsonschema.validate(data, schema)


def test_json_object_response_parses(client):
    done = client.chat.completions.create(
        model="smollm2:135m", messages=[{"role": "user", "content": "Describe a person as JSON with the keys name and age."}],
        temperature=0, max_tokens=300, response_format={"type": "json_object"},
    )
    assert done.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(done.choices[0].message.content), dict)


def test_stop_sequence_cuts_the_answer(client):
    done = client.chat.completions.create(model="smollm2:135m", messages=FRANCE, temperature=0, stop=[" is"])
    assert done.choices[0].message.content == "The capital of France"
    assert done.choices[0].finish_reason == "stop"


def test_text_content_parts_are_accepted(client):
    parts = [{"role": "user", "content": [{"type": "text", "text": "Name the capital of France."}]}]
    done = client.chat.completions.create(model="smollm2:135m", messages=parts, temperature=0)
    assert "Paris" in done.choices[0].message.content


def test_completions_continue_a_prompt(client):
    prompt = "<|im_start|>user\nWhat is the capital of Germany?<|im_end|>\n<|im_start|>assistant\n"
    done = client.completions.create(model="smollm2:135m", prompt=prompt, temperature=0, max_tokens=12)
    assert "Berlin" in done.choices[0].text
    assert done.object == "text_completion"
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="smollm2:135m", prompt=prompt, temperature=0, max_tokens=12, stream=True) if c.choices)
    assert streamed == done.choices[0].text


def test_completions_default_to_sixteen_tokens(client):
    done = client.completions.create(model="smollm2:135m", prompt="1, 2, 3, 4,", temperature=0)
    assert done.usage.completion_tokens <= 16


def test_omitted_model_uses_the_served_one(server):
    response = httpx.post(f"{server.base_url}/v1/chat/completions",
                          json={"messages": FRANCE, "temperature": 0, "max_tokens": 10})
    assert response.status_code == 200
    assert response.json()["model"] == "smollm2:135m"


def test_client_sees_openai_exception_type_for_unknown_model(client):
    try:
        client.chat.completions.create(model="gpt-4o", messages=FRANCE)
    except openai.NotFoundError as exc:
        assert exc.status_code == 404
        assert exc.body["code"] == "model_not_found"
    else:
        raise AssertionError("expected a 404")


HAIKU = [{"role": "user", "content": "Write a haiku about rain."}]
NO_PENALTY = {"repeat_penalty": 1.0}  # without it this answer is one line said over and over


def test_loop_guard_is_off_unless_a_request_asks_for_it(client):
    plain = client.chat.completions.create(model="smollm2:135m", messages=HAIKU, temperature=0, max_tokens=250,
                                           extra_body=NO_PENALTY)
    assert plain.choices[0].finish_reason == "length" and plain.usage.completion_tokens == 250
    assert "homellm" not in (plain.model_extra or {})
    guarded = client.chat.completions.create(model="smollm2:135m", messages=HAIKU, temperature=0, max_tokens=250,
                                             extra_body={**NO_PENALTY, "loop_guard": 8})
    assert guarded.choices[0].finish_reason == "length" and guarded.usage.completion_tokens < 200
    assert guarded.model_extra["homellm"] == {"loop_guard": True}
    assert plain.choices[0].message.content.startswith(guarded.choices[0].message.content)


def test_a_streamed_answer_ended_by_the_loop_guard_says_so_in_its_last_chunk(client):
    chunks = list(client.chat.completions.create(model="smollm2:135m", messages=HAIKU, temperature=0, max_tokens=250,
                                                 stream=True, extra_body={**NO_PENALTY, "loop_guard": 8}))
    last = next(c for c in reversed(chunks) if c.choices and c.choices[0].finish_reason)
    assert last.choices[0].finish_reason == "length"
    assert last.model_extra["homellm"] == {"loop_guard": True}


def test_an_answer_that_ends_by_itself_is_not_marked(client):
    done = client.chat.completions.create(model="smollm2:135m", messages=FRANCE, temperature=0, max_tokens=40,
                                          extra_body={"loop_guard": 4})
    assert done.choices[0].finish_reason == "stop" and "homellm" not in (done.model_extra or {})
