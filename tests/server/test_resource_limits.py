"""Connection-level limits of `homellm serve`: idle, header and body timeouts, the connection limit,
bursts past every limit, and the body budget; real servers with short timeouts, raw sockets."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
import pytest
import uvicorn
from conftest import ServerProcess, free_port, generation_timeout

from homellm.errors import ServerBusyError
from homellm.models.builtin import BUILTIN_NAME
from homellm.server.connections import (
    BODY_FREE_BYTES,
    MAX_HEADER_BYTES,
    MAX_PIPELINED,
    BodyBudget,
    BodyLimits,
    ConnectionLimits,
    http_protocol,
)
from homellm.server.security import AccessMiddleware, AccessPolicy

# Generous: the behaviour is asserted, never how fast it comes, on a slow shared machine.
DEADLINE = 60.0
CHAT = {"model": BUILTIN_NAME, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2,
        "temperature": 0}
IDLE_AT_ONCE = 100
# A second client on this machine: Linux routes all of 127.0.0.0/8 to loopback.
OTHER_CLIENT = "127.0.0.2"


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Timeouts of half a second, room for IDLE_AT_ONCE connections."""
    proc = ServerProcess(["--idle-timeout", "0.5", "--header-timeout", "0.5", "--body-timeout", "0.5",
                          "--max-connections", "150"], tmp_path_factory.mktemp("quick")).wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def narrow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Five connections at most, one slot and one queued request; timeouts that do not end a test's connections."""
    proc = ServerProcess(["--idle-timeout", "60", "--header-timeout", "60", "--body-timeout", "60",
                          "--max-connections", "5", "--parallel", "1", "--queue", "1"],
                         tmp_path_factory.mktemp("narrow")).wait_ready()
    yield proc
    proc.stop()


# Timeouts


def test_a_connection_that_sends_nothing_is_closed_after_the_idle_timeout(quick: ServerProcess):
    start = time.monotonic()
    with _connect(quick) as sock:
        assert _read_to_end(sock) == b""  # closed, without an answer: there was no request
    assert time.monotonic() - start >= 0.45  # not before its time (0.5 s)


def test_a_keep_alive_connection_is_closed_after_the_idle_timeout_once_answered(quick: ServerProcess):
    with _connect(quick) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        status, headers, body = _read_response(sock)
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        assert "close" not in headers.get("connection", "")
        assert _read_to_end(sock) == b""


def test_headers_sent_a_line_at_a_time_are_answered_408_while_others_are_served(quick: ServerProcess):
    with _connect(quick) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
        assert httpx.get(f"{quick.base_url}/health").status_code == 200
        _trickle(sock, b"X-Slow: 1\r\n")
        answer = _read_to_end(sock)
    status, headers, body = _parse(answer)
    assert status == 408
    assert headers["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "request_timeout"


def test_headers_larger_than_the_limit_are_answered_431(quick: ServerProcess):
    with _connect(quick) as sock:
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n" + b"X-Big: " + b"a" * MAX_HEADER_BYTES + b"\r\n")
        except OSError:
            pass  # answered and closed while sending: the answer is read below
        status, headers, body = _parse(_read_to_end(sock))
    assert status == 431
    assert json.loads(body)["error"]["code"] == "headers_too_large"


def test_a_body_sent_a_byte_at_a_time_is_answered_408_and_the_connection_closed(quick: ServerProcess):
    body = json.dumps({**CHAT, "messages": [{"role": "user", "content": "x" * 500}]}).encode()
    with _connect(quick) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        assert _chat(quick).status_code == 200
        _trickle(sock, *(bytes([b]) for b in body))
        status, headers, answer = _parse(_read_to_end(sock))
    assert status == 408
    assert headers["connection"] == "close"
    assert json.loads(answer)["error"]["code"] == "request_timeout"


def test_requests_pipelined_past_the_limit_are_dropped_and_the_connection_closed(quick: ServerProcess):
    with _connect(quick) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n" * (MAX_PIPELINED + 20))
        answers = _read_to_end(sock)
    # The one answered at once and MAX_PIPELINED waiting behind it; the last says it closes.
    assert answers.count(b"HTTP/1.1 200 OK") == MAX_PIPELINED + 1
    assert answers.count(b"connection: close") == 1


def test_a_hundred_idle_connections_leave_requests_served_and_are_closed(quick: ServerProcess):
    with _connections(quick, IDLE_AT_ONCE) as idle:
        assert httpx.get(f"{quick.base_url}/health").status_code == 200
        assert _chat(quick).status_code == 200
        assert [_read_to_end(sock) for sock in idle] == [b""] * IDLE_AT_ONCE


# The connection limit


def test_past_the_limit_a_new_connection_replaces_the_one_idle_longest(narrow: ServerProcess):
    _wait_until_served(narrow)
    with _connections(narrow, 5) as idle:
        time.sleep(1.2)  # past the grace that keeps a just-opened connection
        assert httpx.get(f"{narrow.base_url}/health").status_code == 200
        assert _read_to_end(idle[0]) == b""  # closed without an answer: it had asked nothing
        assert not _readable(idle[1])


def test_past_the_limit_a_connection_stuck_in_its_headers_is_replaced_with_408(narrow: ServerProcess):
    _wait_until_served(narrow)
    with _connections(narrow, 5) as stuck:
        for sock in stuck:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
        time.sleep(1.2)
        assert httpx.get(f"{narrow.base_url}/health").status_code == 200
        assert _parse(_read_to_end(stuck[0]))[0] == 408


def test_past_the_limit_with_every_connection_busy_a_new_one_is_answered_503_with_retry_after(
        narrow: ServerProcess):
    _wait_until_served(narrow)
    with _connections(narrow, 5) as busy:
        for sock in busy:  # headers done, body on its way: busy, never replaced
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{")
        time.sleep(0.5)
        refused = httpx.get(f"{narrow.base_url}/health")
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["code"] == "server_busy"
    _wait_until_served(narrow)  # the limit counts open connections only


def test_past_the_limit_an_address_with_no_connection_open_still_gets_in(narrow: ServerProcess):
    _wait_until_served(narrow)
    busy_request = b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{"
    with _connections(narrow, 5, source=OTHER_CLIENT) as flood:
        for sock in flood:
            sock.sendall(busy_request)
        time.sleep(0.5)
        with _connect(narrow, OTHER_CLIENT) as more:  # the address holding every connection: refused
            status, headers, _ = _parse(_read_to_end(more))
            assert (status, int(headers["retry-after"]) >= 1) == (503, True)
        assert httpx.get(f"{narrow.base_url}/health").status_code == 200  # another address: the reserve
    _wait_until_served(narrow)


def test_a_burst_past_every_limit_is_answered_200_or_503_with_retry_after(narrow: ServerProcess):
    _wait_until_served(narrow)
    body = json.dumps(CHAT).encode()
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
               b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
    with _connections(narrow, 30) as burst:
        for sock in burst:
            try:
                sock.sendall(request)
            except OSError:
                pass  # refused at once: the 503 is read below
        answers = [_parse(_read_to_end(sock)) for sock in burst]
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {200, 503}
    assert 200 in statuses
    refused = [(headers, json.loads(body)) for status, headers, body in answers if status == 503]
    assert len(refused) >= 20  # 5 connections at most: the rest are refused as they connect
    assert all(int(headers["retry-after"]) >= 1 for headers, _ in refused)
    assert all(error["error"]["code"] == "server_busy" for _, error in refused)
    _wait_until_served(narrow)


# The body budget and the open-files limit, without a server


def test_the_body_budget_refuses_bodies_past_it_but_never_a_small_one():
    async def run() -> None:
        limits = BodyLimits(timeout=60, budget=BodyBudget(limit=100_000))
        first, second, small = limits.meter(), limits.meter(), limits.meter()
        first.count(BODY_FREE_BYTES + 80_000)
        with pytest.raises(ServerBusyError) as refused:
            second.count(BODY_FREE_BYTES + 30_000)
        assert refused.value.retry_after >= 1
        small.count(BODY_FREE_BYTES)  # the first bytes of every body are free
        first.close()
        second.close()
        assert limits.budget is not None and limits.budget.held == 0
        limits.meter().count(BODY_FREE_BYTES + 100_000)

    asyncio.run(run())


def test_max_connections_are_lowered_to_what_the_open_files_limit_allows():
    import resource

    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 300:
        pytest.skip("the hard limit on open files here is below the one this test sets")
    code = ("import resource; from homellm.server.connections import fit_open_files as fit; "
            "print(fit(1000), fit(100), resource.getrlimit(resource.RLIMIT_NOFILE)[0])")

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, 300))

    done = subprocess.run([sys.executable, "-c", code], preexec_fn=low_limit, capture_output=True, text=True,
                          timeout=DEADLINE, check=True)
    # 300 files at most, 128 kept for the server's own and 100 for the light clients' reserve: 72 connections;
    # 100 fit once the soft limit is raised.
    assert done.stdout.split() == ["72", "100", "300"]


# The same limits on uvicorn's h11 protocol (the one used where httptools is not installed)


def test_the_h11_protocol_gets_the_same_timeouts():
    async def ok(scope: dict, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    port = free_port()
    limits = ConnectionLimits(idle_timeout=0.5, header_timeout=0.5, body_timeout=0.5, max_connections=10)
    config = uvicorn.Config(AccessMiddleware(ok, AccessPolicy()), host="127.0.0.1", port=port, log_level="warning",
                            http=http_protocol(limits, parser="h11"), ws="none", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        _wait_for_port(port)
        assert httpx.post(f"http://127.0.0.1:{port}/", json={}).text == "ok"
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
            assert _read_to_end(sock) == b""
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
            _trickle(sock, b"X-Slow: 1\r\n")
            assert _parse(_read_to_end(sock))[0] == 408
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n{")
            _trickle(sock, b" ")  # 9 more bytes would take 1.8 s
            assert _parse(_read_to_end(sock))[0] == 408
    finally:
        server.should_exit = True
        thread.join(DEADLINE)


# Helpers


def _connect(server: ServerProcess, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE, source_address=(source, 0))


@contextmanager
def _connections(server: ServerProcess, count: int, source: str = "127.0.0.1") -> Iterator[list[socket.socket]]:
    """`count` connections to the server from the `source` address, all closed when the block ends."""
    with ExitStack() as stack:
        yield [stack.enter_context(_connect(server, source)) for _ in range(count)]


def _chat(server: ServerProcess) -> httpx.Response:
    return httpx.post(f"{server.base_url}/v1/chat/completions", json=CHAT, timeout=generation_timeout(2))


def _trickle(sock: socket.socket, *pieces: bytes, every: float = 0.2) -> None:
    """Send `pieces` (repeating the last) one every `every` s, until the server answers or closes."""
    deadline = time.monotonic() + DEADLINE
    sent = 0
    while time.monotonic() < deadline and not _readable(sock, every):
        try:
            sock.sendall(pieces[min(sent, len(pieces) - 1)])
        except OSError:
            return
        sent += 1


def _readable(sock: socket.socket, wait: float = 0.0) -> bool:
    return bool(select.select([sock], [], [], wait)[0])


def _read_to_end(sock: socket.socket) -> bytes:
    """What the server sends until it closes (up to a reset)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response with a Content-Length, leaving the connection open."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    status, headers, body = _parse(data)
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return status, headers, body


def _parse(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), data[:200]
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def _wait_until_served(server: ServerProcess) -> None:
    """Until /health answers 200: the connections of a test before are closed and forgotten."""
    deadline = time.monotonic() + DEADLINE
    while httpx.get(f"{server.base_url}/health").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
