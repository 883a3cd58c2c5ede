"""Worker addresses, the layer split, and the commands' refusals, without a network namespace."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port, generation_timeout

from homellm.errors import InvalidRequestError, WorkerLostError
from homellm.rpc.workers import (
    Endpoint,
    parse_endpoints,
    probe,
    require_reachable,
    tensor_split,
    worker_address,
    worker_layers,
)

HOMELLM = str(Path(sys.executable).with_name("homellm"))


def test_endpoints_parse_as_ipv4_addresses_or_names() -> None:
    assert parse_endpoints("10.0.0.2:50052, worker-b.lan:50053") == [Endpoint("10.0.0.2", 50052),
                                                                      Endpoint("worker-b.lan", 50053)]
    assert str(Endpoint("10.0.0.2", 50052)) == "10.0.0.2:50052"


@pytest.mark.parametrize("text", ["10.0.0.2", "10.0.0.2:", ":50052", "10.0.0.2:0", "10.0.0.2:70000", "host:port",
                                  "a b:1", "10.0.0.2:50052,10.0.0.2:50052", ""])
def test_bad_endpoints_are_refused(text: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_endpoints(text)
    assert caught.value.hint


@pytest.mark.parametrize("text", ["[fd00::2]:50052", "fd00::2:50052", "[::1]:50052"])
def test_ipv6_workers_are_refused_before_llama_cpp_aborts_on_them(text: str) -> None:
    with pytest.raises(InvalidRequestError, match="IPv4 only"):
        parse_endpoints(text)


def test_a_worker_listens_on_an_ipv4_address_only() -> None:
    assert worker_address("localhost") == "127.0.0.1" and worker_address("0.0.0.0") == "0.0.0.0"
    for host in ("::1", "worker.lan", "10.0.0.256"):
        with pytest.raises(InvalidRequestError, match="not an IPv4 address"):
            worker_address(host)


def test_probe_tells_a_listening_worker_from_a_closed_port() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert probe(Endpoint("127.0.0.1", listener.getsockname()[1])) is None
    closed = Endpoint("127.0.0.1", free_port())
    assert probe(closed) is not None
    with pytest.raises(WorkerLostError, match=str(closed)):
        require_reachable([closed])


def test_workers_take_their_share_of_free_memory_unless_told() -> None:
    assert worker_layers(30, local_free=8 << 30, remote_free=[8 << 30]) == 15
    assert worker_layers(30, local_free=8 << 30, remote_free=[16 << 30, 8 << 30]) == 22
    assert worker_layers(30, local_free=0, remote_free=[0]) == 0
    assert worker_layers(30, 8 << 30, [8 << 30], asked=40) == 30 and worker_layers(30, 1, [1], asked=3) == 3
    assert tensor_split([16 << 30, 8 << 30]) == pytest.approx((2 / 3, 1 / 3))


def run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOMELLM_HOME": str(home)}
    env.pop("HOMELLM_API_KEY", None)
    return subprocess.run([HOMELLM, *args], env=env, capture_output=True, text=True, timeout=generation_timeout(0))


def test_serve_rpc_refuses_an_unreachable_worker_and_bad_combinations(tmp_path: Path) -> None:
    port = str(free_port())
    unreachable = run("serve", "--port", port, "--rpc", f"127.0.0.1:{free_port()}", home=tmp_path)
    assert unreachable.returncode == 1 and "cannot be reached" in unreachable.stderr
    assert "homellm worker" in unreachable.stderr and "Traceback" not in unreachable.stderr
    bad = run("serve", "--port", port, "--rpc", "somewhere", home=tmp_path)
    assert bad.returncode == 1 and "is not a worker address" in bad.stderr
    moe = run("serve", "--port", port, "--rpc", f"127.0.0.1:{free_port()}", "--cpu-moe", home=tmp_path)
    assert moe.returncode == 1 and "--cpu-moe" in moe.stderr


def test_worker_refuses_a_host_llama_cpp_cannot_listen_on(tmp_path: Path) -> None:
    result = run("worker", "--host", "::1", "--port", str(free_port()), home=tmp_path)
    assert result.returncode == 1 and "not an IPv4 address" in result.stderr and "Traceback" not in result.stderr


def test_worker_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run("worker", "--port", str(taken.getsockname()[1]), home=tmp_path)
    assert result.returncode == 1 and "cannot listen" in result.stderr and "Traceback" not in result.stderr
