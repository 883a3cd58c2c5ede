"""Bodies the fuzzer does not write: nesting past any parser's stack, lone surrogates, NULs, bounds at their
limits. Each is answered 400 in the route's dialect (or answered normally), never 500."""

from __future__ import annotations

import anthropic
import httpx
import ollama
import openai
import pytest
from conftest import error_message

from homellm.errors import InvalidRequestError
from homellm.server.body_checks import MAX_JSON_DEPTH, check_json_body
from homellm.server.dialects import dialect_of
from homellm.server.schemas import MAX_STOP_CHARS, MAX_STOPS, MAX_TOP_LOGPROBS

MODEL = "smollm2:135m"
JSON_ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages",
               "/v1/messages/count_tokens", "/v1/responses", "/api/chat", "/api/generate", "/api/embed",
               "/api/embeddings", "/api/show", "/api/pull", "/api/copy"]
# A lone surrogate where each route reads text.
SURROGATE_BODIES = {
    "/v1/chat/completions": '{"model": "%s", "messages": [{"role": "user", "content": "a\\ud800b"}], "max_tokens": 2}',
    "/v1/completions": '{"model": "%s", "prompt": "a\\udfffb", "max_tokens": 2}',
    "/v1/messages": '{"model": "%s", "max_tokens": 2, "messages": [{"role": "user", "content": "a\\ud800"}]}',
    "/v1/responses": '{"model": "%s", "input": "\\udc00", "max_output_tokens": 2}',
    "/api/chat": '{"model": "%s", "stream": false, "messages": [{"role": "user", "content": "\\uD83D x"}]}',
    "/api/generate": '{"model": "%s", "stream": false, "prompt": "x", "options": {"stop": ["\\ud800"]}}',
}


def _error_message(path: str, response: httpx.Response) -> str:
    """The message of a 400 in the route's dialect; OpenAI's routes name it an invalid request."""
    if dialect_of(path) == "openai":
        assert response.json()["error"]["type"] == "invalid_request_error"
    return error_message(path, response.json())


@pytest.mark.parametrize("path", JSON_ROUTES)
def test_json_nested_past_the_limit_is_400_on_every_route(server, path):
    for body in (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, b"[" * 100_000 + b"]" * 100_000, b"[" * 100_000):
        response = httpx.post(f"{server.base_url}{path}", content=body,
                              headers={"content-type": "application/json"}, timeout=30)
        assert response.status_code == 400, response.text
        assert "JSON" in _error_message(path, response)


def test_depth_limit_counts_levels_not_strings():
    check_json_body(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    check_json_body(b'{"text": "' + b"[" * 10_000 + b'\\"{{{"}')  # brackets inside strings are text
    with pytest.raises(InvalidRequestError, match=f"more than {MAX_JSON_DEPTH} levels"):
        check_json_body(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    with pytest.raises(InvalidRequestError, match="do not balance"):
        check_json_body(b'{"a": [1, 2}')


def test_surrogate_pairs_and_escaped_backslashes_pass_the_check():
    check_json_body(b'{"text": "\\ud83d\\ude00 and \\\\ud800 written out"}')
    with pytest.raises(InvalidRequestError, match="lone UTF-16 surrogate"):
        check_json_body(b'{"text": "\\ude00\\ud83d"}')  # the halves in the wrong order


@pytest.mark.parametrize("path", sorted(SURROGATE_BODIES))
def test_lone_surrogate_is_400_in_the_routes_dialect(server, path):
    body = (SURROGATE_BODIES[path] % MODEL).encode()
    response = httpx.post(f"{server.base_url}{path}", content=body, headers={"content-type": "application/json"},
                          timeout=60)
    assert response.status_code == 400, response.text
    assert "surrogate" in _error_message(path, response)


def test_surrogate_pair_and_nul_are_answered(client):
    done = client.chat.completions.create(model=MODEL, max_tokens=3, temperature=0,
                                          messages=[{"role": "user", "content": "smile \U0001F600 and \x00 nul"}])
    assert done.choices[0].finish_reason in ("stop", "length")


def test_top_logprobs_past_openais_bound_is_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2,
                                       logprobs=True, top_logprobs=1000)
    assert info.value.body["param"] == "top_logprobs"
    done = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2,
                                          logprobs=True, top_logprobs=MAX_TOP_LOGPROBS)
    assert done.choices[0].message.content is not None
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model=MODEL, input="hi", max_output_tokens=16, top_logprobs=21)
    assert info.value.body["param"] == "top_logprobs"
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=MODEL, prompt="hi", max_tokens=2, logprobs=6)
    assert info.value.body["param"] == "logprobs"


def test_stop_lists_past_their_bounds_are_400_in_each_dialect(server, client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], stop=["a"] * 5)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                       stop="x" * (MAX_STOP_CHARS + 1))
    assert info.value.body["param"].startswith("stop")
    claude = anthropic.Anthropic(base_url=server.base_url, api_key="none", max_retries=0)
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.create(model=MODEL, max_tokens=2, messages=[{"role": "user", "content": "hi"}],
                               stop_sequences=["s"] * (MAX_STOPS + 1))
    with pytest.raises(ollama.ResponseError) as error:
        ollama.Client(host=server.base_url).chat(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                 options={"stop": ["s"] * (MAX_STOPS + 1)})
    assert error.value.status_code == 400
    # At the bounds, each is answered.
    done = claude.messages.create(model=MODEL, max_tokens=2, messages=[{"role": "user", "content": "hi"}],
                                  stop_sequences=["s" * MAX_STOP_CHARS] * MAX_STOPS)
    assert done.stop_reason in ("end_turn", "max_tokens", "stop_sequence")
