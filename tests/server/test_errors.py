"""Every bad request gets OpenAI's error shape, the right status and the matching client exception."""

import httpx
import openai
import pytest

FRANCE = [{"role": "user", "content": "Name the capital of France."}]


def post(server, path: str, **kwargs) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", timeout=30, **kwargs)


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return error


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=FRANCE)
    assert info.value.body["code"] == "model_not_found"
    assert info.value.body["param"] == "model"


def test_prompt_plus_max_tokens_beyond_context_is_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="smollm2:135m", messages=FRANCE, max_tokens=5000)
    assert info.value.body["code"] == "context_length_exceeded"


def test_prompt_longer_than_context_is_refused_not_truncated(client):
    long_text = "word " * 5000
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="smollm2:135m", messages=[{"role": "user", "content": long_text}])
    assert info.value.body["code"] == "context_length_exceeded"
    assert info.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="smollm2:135m", prompt=long_text)
    assert info.value.body["code"] == "context_length_exceeded"
    assert info.value.body["param"] == "prompt"


def test_streamed_request_beyond_context_fails_before_streaming(server):
    body = {"messages": FRANCE, "max_tokens": 5000, "stream": True}
    error = assert_openai_error(post(server, "/v1/chat/completions", json=body), 400, "context_length_exceeded")
    assert error["param"] == "max_tokens"


def test_malformed_json_is_400(server):
    response = post(server, "/v1/chat/completions", content=b'{"messages": [', headers={"content-type": "application/json"})
    error = assert_openai_error(response, 400, "invalid_request")
    assert "JSON" in error["message"]


@pytest.mark.parametrize("body, param", [
    ({"model": "smollm2:135m"}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": "hello"}, "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
    ({"messages": [{"content": "hi"}]}, "messages.0.role"),
    ({"messages": FRANCE, "max_tokens": -5}, "max_tokens"),
    ({"messages": FRANCE, "max_tokens": 0}, "max_tokens"),
    ({"messages": FRANCE, "max_tokens": "many"}, "max_tokens"),
    ({"messages": FRANCE, "temperature": 3.5}, "temperature"),
    ({"messages": FRANCE, "temperature": -1}, "temperature"),
    ({"messages": FRANCE, "top_p": 1.5}, "top_p"),
    ({"messages": FRANCE, "n": 2}, "n"),
    ({"messages": FRANCE, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"messages": FRANCE, "stream": "sometimes"}, "stream"),
    ({"messages": FRANCE, "response_format": {"type": "xml"}}, "response_format.type"),
    ({"messages": FRANCE, "loop_guard": 1}, "loop_guard"),
    ({"messages": FRANCE, "loop_guard": -3}, "loop_guard"),
    ({"messages": FRANCE, "loop_guard": 10_000}, "loop_guard"),
    ({"messages": FRANCE, "repeat_last_n": -2}, "repeat_last_n"),
    ({"messages": FRANCE, "repeat_last_n": 2_000_000_000}, "repeat_last_n"),
    ({"messages": FRANCE, "repeat_penalty": 0}, "repeat_penalty"),
])
def test_invalid_fields_are_400_naming_the_field(server, body, param):
    error = assert_openai_error(post(server, "/v1/chat/completions", json=body), 400, "invalid_request")
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_json_schema_format_without_schema_is_400(server):
    body = {"messages": FRANCE, "response_format": {"type": "json_schema"}}
    assert_openai_error(post(server, "/v1/chat/completions", json=body), 400)


def test_image_content_is_refused_clearly(server):
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    body = {"messages": [{"role": "user", "content": [image]}]}
    error = assert_openai_error(post(server, "/v1/chat/completions", json=body), 400)
    assert "image_url" in error["message"]


def test_completions_without_prompt_is_400(server):
    error = assert_openai_error(post(server, "/v1/completions", json={"max_tokens": 5}), 400)
    assert error["param"] == "prompt"


def test_bad_request_maps_to_client_exception(client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="smollm2:135m", messages=[])


def test_unknown_route_is_404_in_openai_shape(server):
    assert_openai_error(httpx.get(f"{server.base_url}/v1/nothing-here"), 404)


def test_server_keeps_serving_after_bad_requests(client):
    done = client.chat.completions.create(model="smollm2:135m", messages=FRANCE, temperature=0)
    assert "Paris" in done.choices[0].message.content
