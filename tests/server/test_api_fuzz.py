"""Every route the server publishes, fuzzed against its own OpenAPI schema with schemathesis.

A real `homellm serve` (the tiny random model at a 256-token context, so that a generation is short
whatever the fuzzer asks), behind a key. Each operation gets requests that fit its schema and requests
that do not, with the key; and requests without it. Properties: no 500 ever, no other 5xx but the
deliberate ones, every error in its dialect's shape, and the server still answering afterwards.

The default budget (HOMELLM_FUZZ_EXAMPLES, examples per operation and mode) keeps this under two minutes
on a slow machine; `make fuzz` runs a longer search.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from conftest import ServerProcess, error_message, free_port
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from homellm.server.dialects import dialect_of

KEY = "fuzz-key-91c3"
EXAMPLES = int(os.environ.get("HOMELLM_FUZZ_EXAMPLES", "12"))
# Deliberate 5xx answers: the Hub cannot be reached (pull), a model cannot be loaded or does not fit,
# the queue is full. Each still comes in the dialect's shape.
DELIBERATE_5XX = {502, 503, 507}

# Every operation the server publishes. A new route must be added here, so that it is swept too
# (test_every_published_route_is_fuzzed fails until it is).
OPERATIONS = [
    ("GET", "/health"), ("GET", "/v1/models"), ("GET", "/v1/models/{model_id}"),
    ("POST", "/v1/chat/completions"), ("POST", "/v1/completions"), ("POST", "/v1/embeddings"),
    ("GET", "/homellm/docs"), ("GET", "/homellm/docs/{name}/search"), ("GET", "/homellm/ps"), ("GET", "/metrics"),
    ("POST", "/v1/messages"), ("POST", "/v1/messages/count_tokens"),
    ("POST", "/v1/responses"), ("GET", "/v1/responses/{response_id}"), ("DELETE", "/v1/responses/{response_id}"),
    ("POST", "/api/chat"), ("POST", "/api/generate"), ("POST", "/api/embed"), ("POST", "/api/embeddings"),
    ("GET", "/api/version"), ("HEAD", "/api/version"), ("GET", "/api/tags"), ("HEAD", "/api/tags"),
    ("POST", "/api/show"), ("GET", "/api/ps"), ("POST", "/api/pull"), ("DELETE", "/api/delete"),
    ("POST", "/api/copy"), ("GET", "/homellm/hardware"), ("GET", "/homellm/plan"), ("GET", "/homellm/bench"),
    ("GET", "/homellm/cost"),
]


@pytest.fixture(scope="module")
def fuzz_server(tiny_dense_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # The Hub is a loopback port nobody listens on: a pull of whatever name the fuzzer writes fails fast.
    proc = ServerProcess(["-m", str(tiny_dense_path), "--ctx", "256", "--api-key", KEY],
                         tmp_path_factory.mktemp("fuzz-home"),
                         env={"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"}).wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_server: ServerProcess) -> Any:
    return schemathesis.openapi.from_url(f"{fuzz_server.base_url}/openapi.json", headers=_auth())


@pytest.fixture(scope="module")
def served_model(fuzz_server: ServerProcess) -> str:
    return fuzz_server.client(api_key=KEY).models.list().data[0].id


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def test_every_published_route_is_fuzzed(api_schema: Any) -> None:
    published = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert published == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fuzzed_requests_get_no_crash_and_errors_in_their_dialect(fuzz_server: ServerProcess, api_schema: Any,
                                                                  served_model: str, method: str,
                                                                  path: str) -> None:
    operation = api_schema[path][method]
    problems: list[str] = []
    # Requests that fit the schema, then (where there is a body or a query to get wrong) requests that do not.
    modes = [GenerationMode.POSITIVE]
    if len(operation.body) or len(operation.query):
        modes.append(GenerationMode.NEGATIVE)

    # Half the bodies name the served model (as every real client does), so that requests reach
    # generation rather than a 404 or a "model is required".
    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(case=st.one_of(*(operation.as_strategy(generation_mode=mode) for mode in modes)), served=st.booleans())
    def sweep(case: Any, served: bool) -> None:
        if served and isinstance(case.body, dict):
            case.body["model"] = served_model
        response = case.call(base_url=fuzz_server.base_url, headers=_auth(), timeout=120)
        problem = _problem(path, response.status_code, response.headers, response.content, method == "HEAD")
        if problem:
            problems.append(f"{problem}: {method} {path} -> {response.status_code}: {response.content[:300]!r}\n"
                            f"    {case.as_curl_command()[:1500]}")

    sweep()
    assert not problems, "\n".join(problems[:5])


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fuzzed_requests_without_the_key_are_refused_in_their_dialect(fuzz_server: ServerProcess,
                                                                      api_schema: Any, method: str,
                                                                      path: str) -> None:
    operation = api_schema[path][method]
    statuses: list[int] = []

    @settings(max_examples=max(2, EXAMPLES // 3), derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(case=operation.as_strategy())
    def sweep(case: Any) -> None:
        response = case.call(base_url=fuzz_server.base_url, timeout=60)
        statuses.append(response.status_code)
        if path == "/health":
            assert response.status_code == 200
            return
        assert response.status_code == 401, case.as_curl_command()
        assert response.headers["www-authenticate"] == ["Bearer"]  # schemathesis keeps each header's values
        if method != "HEAD":
            assert "key" in error_message(path, response.json()).lower()

    sweep()
    assert statuses


def test_server_still_answers_after_the_sweep(fuzz_server: ServerProcess, served_model: str) -> None:
    # Runs after the fuzzing tests above (pytest keeps a module's order).
    done = fuzz_server.client(api_key=KEY).chat.completions.create(
        model=served_model, messages=[{"role": "user", "content": "Say hi."}], max_tokens=4, temperature=0)
    assert done.choices[0].finish_reason == "length"
    assert done.usage is not None and done.usage.completion_tokens == 4
    assert httpx.get(f"{fuzz_server.base_url}/health").status_code == 200
    log = fuzz_server.log.read_text(errors="replace")
    assert "Traceback" not in log, log[log.find("Traceback"):][:3000]


def _problem(path: str, status: int, headers: Any, content: bytes, head: bool) -> str | None:
    """What is wrong with one answer (a crash, a 5xx not on purpose, an error in the wrong shape), or None."""
    if status >= 500 and status not in DELIBERATE_5XX:
        return "server error"
    if status == 503 and "retry-after" not in {k.lower() for k in headers}:
        return "503 without Retry-After"
    if status < 400 or head:
        return None
    try:
        error_message(path, json.loads(content))
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        return f"error not in the {dialect_of(path)} shape ({exc!r})"
    return None
