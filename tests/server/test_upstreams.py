"""Upstreams: other `homellm serve` processes on loopback behind this one's API, driven by the openai client."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from conftest import ServerProcess, free_port

HOMELLM = str(Path(sys.executable).with_name("homellm"))
FRANCE = [{"role": "user", "content": "Name the capital of France."}]


def upstream(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOMELLM_HOME": str(home)}
    return subprocess.run([HOMELLM, "upstream", *args], env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    """Two upstream servers with the built-in model, one CPU thread each."""
    # Both decode at once when requests fail over between them: with a thread per core each, llama.cpp's
    # spinning threads fight over the cores and 8 tokens took from 2 s to 45 s on 2 cores; one thread
    # each keeps it at 2 s. The first one wants a key, which the front server reads from UP1_KEY.
    procs = [ServerProcess([*(["--api-key", "not-logged-secret"] if i == 0 else []), "--threads", "1"],
                           tmp_path_factory.mktemp(f"up{i}"))
             for i in range(2)]
    for proc in procs:
        proc.wait_ready()
    yield procs
    for proc in procs:
        proc.stop()


@pytest.fixture(scope="module")
def front(replicas: list[ServerProcess], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The server users talk to: `up1` is one replica with a key from the environment; `pool` is both, and a dead one."""
    home = tmp_path_factory.mktemp("front")
    assert upstream(home, "add", "up1", replicas[0].base_url, "--api-key-env", "UP1_KEY").returncode == 0
    assert upstream(home, "add", "pool", f"http://127.0.0.1:{free_port()}/v1").returncode == 0  # nobody there
    assert upstream(home, "add", "pool", replicas[0].base_url, "--api-key-env", "UP1_KEY").returncode == 0
    assert upstream(home, "add", "pool", replicas[1].base_url).returncode == 0
    assert upstream(home, "add", "only", replicas[0].base_url, "--models", "none:such").returncode == 0
    proc = ServerProcess([], home, env={"UP1_KEY": "not-logged-secret"}).wait_ready()
    yield proc
    proc.stop()


def test_upstream_models_are_listed_as_name_slash_model(front: ServerProcess) -> None:
    cards = {m.id: m for m in front.client().models.list()}
    assert cards["up1/smollm2:135m"].owned_by == "up1"
    assert "pool/smollm2:135m" in cards and "smollm2:135m" in cards
    assert not any(card.startswith("only/") for card in cards)  # --models limits what is offered


def test_health_checks_mark_a_dead_replica_down_and_metrics_count_each_replica(front: ServerProcess,
                                                                             replicas: list[ServerProcess]) -> None:
    live = {f"{r.base_url}/v1" for r in replicas}
    deadline = time.monotonic() + 10
    while True:  # the first check runs as the server starts
        pool = [r for r in httpx.get(f"{front.base_url}/homellm/ps").json()["upstreams"] if r["name"] == "pool"]
        [dead] = [r for r in pool if r["url"] not in live]
        if dead["state"] == "down" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert dead["state"] == "down" and all(r["state"] == "up" for r in pool if r["url"] in live)
    front.client().chat.completions.create(model="up1/smollm2:135m", messages=FRANCE, max_tokens=2)
    metrics = httpx.get(f"{front.base_url}/metrics").text
    up1 = f'upstream="up1",url="{replicas[0].base_url}/v1"'
    assert f"homellm_upstream_requests_total{{{up1}}}" in metrics
    assert f'homellm_upstream_up{{upstream="pool",url="{dead["url"]}"}} 0.0' in metrics
    assert "homellm_requests_total" in metrics  # the local models' series are still there


def test_chat_and_stream_pass_through(front: ServerProcess, replicas: list[ServerProcess]) -> None:
    client = front.client()
    direct = replicas[0].client(api_key="not-logged-secret").chat.completions.create(model="smollm2:135m", messages=FRANCE,
                                                          temperature=0, max_tokens=12)
    proxied = client.chat.completions.create(model="up1/smollm2:135m", messages=FRANCE, temperature=0, max_tokens=12)
    assert proxied.choices[0].message.content == direct.choices[0].message.content
    stream = client.chat.completions.create(model="up1/smollm2:135m", messages=FRANCE, temperature=0,
                                            max_tokens=12, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == direct.choices[0].message.content


def test_tools_and_errors_pass_through_unchanged(front: ServerProcess) -> None:
    tool = {"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}}
    answer = front.client().chat.completions.create(
        model="up1/smollm2:135m", messages=[{"role": "user", "content": "2 plus 3?"}], tools=[tool],
        tool_choice="required", temperature=0, max_tokens=60)
    call = answer.choices[0].message.tool_calls[0]
    assert call.function.name == "add" and set(json.loads(call.function.arguments)) == {"a", "b"}
    with pytest.raises(openai.NotFoundError) as missing:
        front.client().chat.completions.create(model="up1/nope:1b", messages=FRANCE)
    assert "nope" in missing.value.message  # the upstream's own 404
    bad = httpx.post(f"{front.base_url}/v1/chat/completions", json={"model": "up1/smollm2:135m", "messages": []})
    assert bad.status_code == 400


def test_the_key_goes_to_the_upstream_and_never_into_the_log(front: ServerProcess) -> None:
    front.client().chat.completions.create(model="up1/smollm2:135m", messages=FRANCE, max_tokens=2)
    assert "not-logged-secret" not in front.log.read_text()


def test_replicas_fail_over_and_a_stopped_one_loses_no_request(front: ServerProcess,
                                                               replicas: list[ServerProcess]) -> None:
    def ask(i: int) -> str:
        answer = front.client(timeout=120).chat.completions.create(
            model="pool/smollm2:135m", messages=[{"role": "user", "content": f"Say the number {i}."}],
            temperature=0, max_tokens=8)
        return answer.choices[0].finish_reason

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        first = list(pool.map(ask, range(4)))  # the dead replica is skipped
    replicas[1].stop()  # one of the two live replicas goes away
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        second = list(pool.map(ask, range(4, 12)))
    assert all(reason in ("stop", "length") for reason in first + second)
    status = httpx.get(f"{front.base_url}/homellm/ps").json()["upstreams"]
    pool_replicas = [r for r in status if r["name"] == "pool"]
    stopped = next(r for r in pool_replicas if r["url"] == f"{replicas[1].base_url}/v1")
    # The loss was noticed: a refused connection, or a health check that came first.
    assert len(pool_replicas) == 3 and (sum(r["failures"] for r in pool_replicas) >= 1 or stopped["state"] == "down")


@pytest.mark.parametrize("args, match", [
    (["add", "Bad Name", "http://x"], "not a valid upstream name"),
    (["add", "ok", "ftp://x"], "not an http(s) URL"),
    (["add", "ok", "http://x", "--api-key-env", "sk-123"], "not an environment variable name"),
    (["rm", "ghost"], "no upstream named 'ghost'"),
])
def test_bad_upstream_commands_are_clear_errors(tmp_path: Path, args: list[str], match: str) -> None:
    done = upstream(tmp_path, *args)
    assert done.returncode == 1 and match in done.stderr
    assert upstream(tmp_path, "ls", "--json").stdout.strip() == "[]"


def test_a_client_hanging_up_stops_the_upstream(front: ServerProcess, replicas: list[ServerProcess]) -> None:
    body = {"model": "up1/smollm2:135m", "stream": True, "max_tokens": 2000, "temperature": 0.8,
            "messages": [{"role": "user", "content": "Write a very long story about the sea."}]}
    with httpx.stream("POST", f"{front.base_url}/v1/chat/completions", json=body, timeout=60) as response:
        for number, _ in enumerate(response.iter_lines()):
            if number > 5:
                break  # hang up mid-answer
    headers = {"Authorization": "Bearer not-logged-secret"}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        models = httpx.get(f"{replicas[0].base_url}/homellm/ps", headers=headers).json()["models"]
        if all(m["busy_slots"] == 0 for m in models):
            break
        time.sleep(0.1)
    assert all(m["busy_slots"] == 0 for m in models)
    in_flight = [r["in_flight"] for r in httpx.get(f"{front.base_url}/homellm/ps").json()["upstreams"]]
    assert in_flight == [0] * len(in_flight)
