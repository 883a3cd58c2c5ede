"""One model split across two network namespaces: `homellm worker` in one, `homellm serve --rpc` in the other.

The namespaces and their addresses are the test's own: a veth pair joins the worker's namespace
to the server's, a second one joins the server's to this one, where the openai client runs.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import httpx
import ollama
import openai
import pytest

HOMELLM = str(Path(sys.executable).with_name("homellm"))
KEY = "split-test-key"
STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper and his dog."}]
FRANCE = [{"role": "user", "content": "Name the capital of France."}]
WORKER_PORT = 50052
SERVER_PORT = 8435
RPC_TIMEOUT = 6  # seconds a decode step may hang before the workers count as lost


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


@dataclass
class Net:
    """The two namespaces and the addresses the test gave them."""

    worker_ns: str
    server_ns: str
    worker_addr: str
    server_addr: str
    worker_link: str  # the worker's end of the veth pair

    @property
    def base_url(self) -> str:
        return f"http://{self.server_addr}:{SERVER_PORT}"

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    """Two namespaces joined by veth pairs; skipped only where `ip netns` is refused."""
    tag = f"hl{os.getpid() % 100000}"
    k = os.getpid() % 250 + 1
    worker_ns, server_ns = f"{tag}w", f"{tag}s"
    made = ip("netns", "add", worker_ns)
    if made.returncode != 0:
        pytest.skip(f"ip netns is refused here: {made.stderr.strip() or 'no iproute2'}")
    try:
        assert ip("netns", "add", server_ns).returncode == 0
        setup = [
            ("link", "add", f"{tag}a", "type", "veth", "peer", "name", f"{tag}b"),
            ("link", "set", f"{tag}a", "netns", worker_ns), ("link", "set", f"{tag}b", "netns", server_ns),
            ("-n", worker_ns, "addr", "add", f"10.231.{k}.1/30", "dev", f"{tag}a"),
            ("-n", server_ns, "addr", "add", f"10.231.{k}.2/30", "dev", f"{tag}b"),
            ("link", "add", f"{tag}c", "type", "veth", "peer", "name", f"{tag}d"),
            ("link", "set", f"{tag}d", "netns", server_ns),
            ("addr", "add", f"10.232.{k}.1/30", "dev", f"{tag}c"),
            ("-n", server_ns, "addr", "add", f"10.232.{k}.2/30", "dev", f"{tag}d"),
            ("link", "set", f"{tag}c", "up"),
        ]
        for ns, device in ((worker_ns, f"{tag}a"), (server_ns, f"{tag}b"), (server_ns, f"{tag}d")):
            setup += [("-n", ns, "link", "set", device, "up"), ("-n", ns, "link", "set", "lo", "up")]
        for args in setup:
            done = ip(*args)
            assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr}"
        yield Net(worker_ns, server_ns, f"10.231.{k}.1", f"10.232.{k}.2", f"{tag}a")
    finally:
        ip("netns", "del", server_ns)  # takes its veth ends, and so their peers, with it
        ip("netns", "del", worker_ns)


class NsProcess:
    """A homellm command inside a namespace, its output in a log file."""

    def __init__(self, ns: str, args: list[str], home: Path, name: str) -> None:
        env = {**os.environ, "HOMELLM_HOME": str(home)}
        env.pop("HOMELLM_API_KEY", None)
        self.log = home / f"{name}.log"
        self._file = self.log.open("ab")
        self.process = subprocess.Popen(["ip", "netns", "exec", ns, HOMELLM, *args], env=env,
                                        stdout=self._file, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self._file.close()


def start_worker(net: Net, home: Path) -> NsProcess:
    worker = NsProcess(net.worker_ns, ["worker", "--host", net.worker_addr, "--port", str(WORKER_PORT)], home, "worker")
    probe = f"import socket; socket.create_connection(('{net.worker_addr}', {WORKER_PORT}), 1).close()"
    deadline = time.monotonic() + 30
    while subprocess.run(["ip", "netns", "exec", net.server_ns, sys.executable, "-c", probe],
                         capture_output=True).returncode != 0:
        assert worker.process.poll() is None, worker.log.read_text()
        assert time.monotonic() < deadline, worker.log.read_text()
        time.sleep(0.2)
    return worker


@pytest.fixture(scope="module")
def split(net: Net, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Net, dict[str, NsProcess], Path]]:
    """A worker, and a server that splits the built-in model between itself and the worker."""
    home = tmp_path_factory.mktemp("split")
    procs = {"worker": start_worker(net, home)}
    procs["server"] = NsProcess(net.server_ns, ["serve", "--host", net.server_addr, "--port", str(SERVER_PORT),
                                                "--api-key", KEY, "--rpc", f"{net.worker_addr}:{WORKER_PORT}",
                                                "--rpc-timeout", str(RPC_TIMEOUT)],
                                home, "serve")
    deadline = time.monotonic() + 120
    while True:
        assert procs["server"].process.poll() is None, procs["server"].log.read_text()
        try:
            if httpx.get(f"{net.base_url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, procs["server"].log.read_text()
        time.sleep(0.2)
    yield net, procs, home
    for proc in procs.values():
        proc.kill()


def ps(net: Net) -> dict:
    run = subprocess.run([HOMELLM, "ps", "--host", net.server_addr, "--port", str(SERVER_PORT), "--json"],
                         env={**os.environ, "HOMELLM_API_KEY": KEY}, capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_split_model_answers_as_the_local_one(split, client: openai.OpenAI) -> None:
    net, _, _ = split
    local = client.chat.completions.create(model="smollm2:135m", messages=FRANCE, temperature=0, max_tokens=24)
    answer = net.client().chat.completions.create(model="smollm2:135m", messages=FRANCE, temperature=0, max_tokens=24)
    assert answer.choices[0].message.content == local.choices[0].message.content
    stream = net.client().chat.completions.create(model="smollm2:135m", messages=FRANCE, temperature=0,
                                                  max_tokens=24, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == local.choices[0].message.content


def test_every_dialect_reaches_the_split_model(split, client: openai.OpenAI) -> None:
    net, _, _ = split
    local = client.chat.completions.create(model="smollm2:135m", messages=FRANCE, temperature=0, max_tokens=12)
    expected = local.choices[0].message.content
    via_ollama = ollama.Client(host=net.base_url, headers={"Authorization": f"Bearer {KEY}"}).chat(
        model="smollm2:135m", messages=FRANCE, options={"temperature": 0, "num_predict": 12})
    via_anthropic = anthropic.Anthropic(base_url=net.base_url, api_key=KEY, max_retries=0).messages.create(
        model="smollm2:135m", messages=FRANCE, max_tokens=12, extra_body={"temperature": 0})
    via_responses = net.client().responses.create(model="smollm2:135m", input=FRANCE, temperature=0,
                                                  max_output_tokens=12)
    assert via_ollama.message.content == expected
    assert via_anthropic.content[0].text == expected
    assert via_responses.output_text == expected


def test_ps_shows_the_worker_with_its_layers_and_memory(split) -> None:
    net, _, _ = split
    report = ps(net)
    [worker] = report["workers"]
    assert worker["endpoint"] == f"{net.worker_addr}:{WORKER_PORT}" and worker["state"] == "connected"
    assert 0 < worker["layers"] < 31  # the built-in model has 30 layers and an output layer: some stay here
    assert worker["devices"][0]["total_bytes"] > 1 << 30
    assert [m["name"] for m in report["models"]] == ["smollm2:135m"]
    table = subprocess.run([HOMELLM, "ps", "--host", net.server_addr, "--port", str(SERVER_PORT)],
                           env={**os.environ, "HOMELLM_API_KEY": KEY}, capture_output=True, text=True, timeout=30)
    assert "RPC workers" in table.stdout and "connected" in table.stdout
    metrics = httpx.get(f"{net.base_url}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    assert f'homellm_rpc_worker_up{{worker="{net.worker_addr}:{WORKER_PORT}"}} 1.0' in metrics
    assert 'homellm_requests_total{finish_reason="stop",model="smollm2:135m"}' in metrics


def test_a_worker_killed_mid_stream_fails_that_request_cleanly_and_the_server_stays_up(split) -> None:
    net, procs, home = split
    stream = net.client().chat.completions.create(model="smollm2:135m", messages=STORY, temperature=0,
                                                  max_tokens=400, stream=True)
    chunks = 0
    with pytest.raises(openai.APIError) as caught:
        for _ in stream:
            chunks += 1
            if chunks == 10:
                threading.Thread(target=procs["worker"].kill).start()
    assert 10 <= chunks < 400
    assert "was lost mid-answer" in caught.value.message and net.worker_addr in caught.value.message
    assert httpx.get(f"{net.base_url}/health", timeout=5).status_code == 200
    [worker] = ps(net)["workers"]
    assert worker["state"] == "lost"
    with pytest.raises(openai.APIStatusError) as refused:
        net.client().chat.completions.create(model="smollm2:135m", messages=FRANCE, max_tokens=4)
    assert refused.value.status_code == 503 and "cannot be reached" in refused.value.message

    # The worker comes back: the next requests (together) start the split model again, once, and all
    # of them are answered, not only the one that started it.
    procs["worker"] = start_worker(net, home)

    def ask(_: int) -> str:
        answer = net.client().chat.completions.create(model="smollm2:135m", messages=FRANCE, temperature=0,
                                                      max_tokens=8)
        return answer.choices[0].message.content

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(ask, range(3)))
    assert all(answers) and len(set(answers)) == 1
    report = ps(net)
    assert report["workers"][0]["state"] == "connected" and report["starts"] == 2


def test_a_worker_cut_off_without_a_word_fails_the_request_after_the_rpc_timeout(split) -> None:
    net, procs, home = split
    stream = net.client().chat.completions.create(model="smollm2:135m", messages=STORY, temperature=0,
                                                  max_tokens=400, stream=True)
    chunks = 0
    started = time.monotonic()
    with pytest.raises(openai.APIError) as caught:
        for _ in stream:
            chunks += 1
            if chunks == 10:  # the cable is pulled: packets vanish, no connection is closed
                assert ip("-n", net.worker_ns, "link", "set", net.worker_link, "down").returncode == 0
                started = time.monotonic()
    waited = time.monotonic() - started
    assert "hung" in caught.value.message and net.worker_addr in caught.value.message
    assert RPC_TIMEOUT <= waited < RPC_TIMEOUT + 30
    assert httpx.get(f"{net.base_url}/health", timeout=5).status_code == 200
    assert ps(net)["workers"][0]["state"] == "lost"

    # The machine comes back (its worker started again, the cable in): the split model loads anew.
    procs["worker"].kill()
    assert ip("-n", net.worker_ns, "link", "set", net.worker_link, "up").returncode == 0
    procs["worker"] = start_worker(net, home)
    answer = net.client().chat.completions.create(model="smollm2:135m", messages=FRANCE, temperature=0, max_tokens=8)
    assert answer.choices[0].message.content and ps(net)["workers"][0]["state"] == "connected"


def test_the_split_process_gets_the_kv_cache_types_the_server_was_given():
    from homellm.rpc.split import split_process_args

    args = split_process_args("m", None, None, 1, 8, "5m", 1, None, "Q8_0/F16")
    assert args[args.index("--kv-type-k") + 1] == "Q8_0" and args[args.index("--kv-type-v") + 1] == "F16"
    args = split_process_args("m", None, None, 1, 8, "5m", 1, None, "Q4_0")
    assert args[args.index("--kv-type-k") + 1] == args[args.index("--kv-type-v") + 1] == "Q4_0"
    assert "--kv-type-k" not in split_process_args("m", None, None, 1, 8, "5m", 1, None)
