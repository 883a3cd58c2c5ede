"""Connection-level attacks on `homellm serve`: well-behaved clients' latency, the refusals, server memory.

Starts `homellm serve` (the built-in model, the given connection limits), measures a well-behaved
client unloaded (GET /health and a short greedy chat request, each on a new connection, median of
--samples), then runs each attack in turn from a separate process, connecting from another
loopback address (another client: 127.0.0.2), while that client goes on asking:

- idle: 600 connections that send nothing, each opened again as soon as the server closes it;
- slowloris: 200 connections sending a request's headers a line every 2 s, never ending them;
- slow bodies: 50 chat requests whose bodies come a byte a second;
- queued: 2,000 chat requests sent at once (each answered, or refused, once);
- pipelined: 50 connections each sending 256 KiB of pipelined GET /health at once and reading the
  answers only 5 s later (httptools parses every request in a read), each opened again when closed.

Reported per attack: the well-behaved requests' median and max latency and their ratio to the
unloaded medians (target: 2x), what the attackers were answered (by status; `closed` is a
connection closed without an answer, as an idle one is), how many refusals carried Retry-After,
and the server's RSS before, at its peak during, and after the attack.

    .venv/bin/python benchmarks/resource_limits.py [--attack-seconds 30] [--json]
        [--idle-timeout S] [--header-timeout S] [--body-timeout S] [--max-connections N] [--threads N]
        [--attacker-address 127.0.0.2] [--only idle slowloris slow_bodies queued pipelined]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import resource
import socket
import statistics
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from serving import ServerProcess, homellm_serve

from homellm.config import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
)
from homellm.models.builtin import BUILTIN_NAME

HOST = "127.0.0.1"
# The attackers are another client: Linux routes all of 127.0.0.0/8 to loopback.
ATTACKER_ADDRESS = "127.0.0.2"
CHAT = {"model": BUILTIN_NAME, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8,
        "temperature": 0}
# What the queued attackers ask: longer answers, so that the queue stays full a while.
QUEUED_CHAT = {**CHAT, "max_tokens": 32}
ATTACKS = {"idle": 600, "slowloris": 200, "slow_bodies": 50, "queued": 2000, "pipelined": 50}
TITLES = {"idle": "{n} idle connections", "slowloris": "{n} slowloris connections",
          "slow_bodies": "{n} bodies at 1 byte/s", "queued": "{n} requests at once",
          "pipelined": "{n} x 256 KiB pipelined"}
# What each pipelining attacker sends at once, never reading the answers.
PIPELINED_BYTES = 256 * 1024
PIPELINE_HOLD_SECONDS = 5.0  # how long each holds its connection before reading what came back
SLOWLORIS_LINE_SECONDS = 2.0
PROBE_PAUSE_SECONDS = 0.2
PROBE_TIMEOUT_SECONDS = 120.0
RSS_EVERY_SECONDS = 0.2
# File descriptors for the attackers' sockets, the probes' and the process's own.
OPEN_FILES = 2 * max(ATTACKS.values()) + 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attack-seconds", type=float, default=30.0,
                        help="how long each attack lasts (slow bodies: at least the body timeout + 10 s; "
                             "queued: until every request is answered)")
    parser.add_argument("--samples", type=int, default=9, help="unloaded requests of each kind")
    parser.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT)
    parser.add_argument("--header-timeout", type=float, default=DEFAULT_HEADER_TIMEOUT)
    parser.add_argument("--body-timeout", type=float, default=DEFAULT_BODY_TIMEOUT)
    parser.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS)
    parser.add_argument("--threads", type=int, help="the server's decode threads [default: serve's]")
    parser.add_argument("--attacker-address", default=ATTACKER_ADDRESS,
                        help="the loopback address the attackers connect from (the well-behaved client's is "
                             f"{HOST}; give {HOST} for one client that both attacks and behaves)")
    parser.add_argument("--only", nargs="+", choices=list(ATTACKS), help="run these attacks only")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    open_files = raise_open_files(OPEN_FILES)
    home = tempfile.mkdtemp(prefix="homellm-limits-")
    server = homellm_serve("--idle-timeout", str(args.idle_timeout), "--header-timeout", str(args.header_timeout),
                           "--body-timeout", str(args.body_timeout), "--max-connections", str(args.max_connections),
                           *(["--threads", str(args.threads)] if args.threads else []),
                           home=home, log=Path(home) / "serve.log")
    try:
        for _ in range(2):  # warm: the first chat request loads the template and fills a slot's cache
            probe(server.port, "chat")
        unloaded = Probes()
        for _ in range(args.samples):
            unloaded.add("health", *probe(server.port, "health"))
            unloaded.add("chat", *probe(server.port, "chat"))
        results = []
        for name in args.only or list(ATTACKS):
            seconds = args.attack_seconds
            if name == "slow_bodies":
                seconds = max(seconds, args.body_timeout + 10)
            results.append(run_attack(server, name, ATTACKS[name], seconds, args.attacker_address,
                                      settle=args.idle_timeout + 2))
    finally:
        server.stop()
    report(args, open_files, unloaded, results)


@dataclass
class Probes:
    """A well-behaved client's latencies (s) and statuses, by kind of request."""

    latency: dict[str, list[float]] = field(default_factory=lambda: {"health": [], "chat": []})
    statuses: dict[str, Counter] = field(default_factory=lambda: {"health": Counter(), "chat": Counter()})

    def add(self, kind: str, seconds: float, status: str) -> None:
        self.statuses[kind][status] += 1
        if status == "200":
            self.latency[kind].append(seconds)

    def median(self, kind: str) -> float:
        return statistics.median(self.latency[kind]) if self.latency[kind] else float("nan")

    def max(self, kind: str) -> float:
        return max(self.latency[kind], default=float("nan"))


@dataclass
class AttackResult:
    name: str
    size: int
    seconds: float
    probes: Probes
    attackers: dict[str, Any]
    rss_before: int
    rss_peak: int
    rss_after: int


def run_attack(server: ServerProcess, name: str, size: int, seconds: float, source: str, settle: float) -> AttackResult:
    """One attack from its own process, probed meanwhile from this one; RSS sampled throughout."""
    rss_before = server.rss()
    sampler = RssSampler(server)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    attacker = context.Process(target=attack_process, args=(name, Target(server.port, source), size, seconds,
                                                                            results))
    start = time.monotonic()
    attacker.start()
    probes = Probes()
    kinds = ("health", "chat")
    turn = 0
    while attacker.is_alive():
        kind = kinds[turn % 2]
        turn += 1
        probes.add(kind, *probe(server.port, kind))
        time.sleep(PROBE_PAUSE_SECONDS)
    attackers = results.get(timeout=10)
    attacker.join()
    elapsed = time.monotonic() - start
    time.sleep(settle)  # the attackers' connections close, idle ones time out
    sampler.stop()
    return AttackResult(name, size, elapsed, probes, attackers, rss_before, sampler.peak, server.rss())


def probe(port: int, kind: str) -> tuple[float, str]:
    """One well-behaved request on a new connection: its latency and status (or the error's name)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=PROBE_TIMEOUT_SECONDS)
    start = time.perf_counter()
    try:
        if kind == "health":
            conn.request("GET", "/health")
        else:
            conn.request("POST", "/v1/chat/completions", body=json.dumps(CHAT),
                         headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return time.perf_counter() - start, str(response.status)
    except OSError as exc:
        return time.perf_counter() - start, type(exc).__name__
    finally:
        conn.close()


# The attackers, in their own process (one asyncio loop)


@dataclass(frozen=True)
class Target:
    """The server's port, and the address the attackers connect from."""

    port: int
    source: str


def attack_process(name: str, target: Target, size: int, seconds: float, results: Any) -> None:
    """Run one attack and put what its connections were answered on `results`."""
    stats = AttackStats()
    attack = {"idle": idle, "slowloris": slowloris, "slow_bodies": slow_bodies, "queued": queued,
              "pipelined": pipelined}[name]
    asyncio.run(attack(target, size, seconds, stats))
    results.put(stats.summary())


@dataclass
class AttackStats:
    opened: int = 0
    statuses: Counter = field(default_factory=Counter)
    retry_after: int = 0
    refused_after: list[float] = field(default_factory=list)  # seconds from sending to a 503
    served_after: list[float] = field(default_factory=list)  # seconds from sending to a 200

    def answered(self, data: bytes | None, sent_at: float | None = None) -> None:
        """Count what a connection got before it closed (None: still open when the attack ended)."""
        if data is None:
            self.statuses["open at end"] += 1
            return
        if not data.startswith(b"HTTP/1.1 "):
            self.statuses["closed" if not data else "garbled"] += 1
            return
        status = data[9:12].decode()
        self.statuses[status] += 1
        head = data.split(b"\r\n\r\n", 1)[0].lower()
        if b"\r\nretry-after:" in head:
            self.retry_after += 1
        if sent_at is not None:
            elapsed = time.monotonic() - sent_at
            (self.refused_after if status == "503" else self.served_after).append(elapsed)

    def summary(self) -> dict[str, Any]:
        def spread(values: list[float]) -> dict[str, float] | None:
            return {"median": statistics.median(values), "max": max(values)} if values else None

        return {"connections": self.opened, "statuses": dict(self.statuses), "retry_after": self.retry_after,
                "refused_after_s": spread(self.refused_after), "served_after_s": spread(self.served_after)}


async def idle(target: Target, size: int, seconds: float, stats: AttackStats) -> None:
    """`size` connections that send nothing, each opened again when the server closes it."""
    until = time.monotonic() + seconds

    async def one() -> None:
        while time.monotonic() < until:
            conn = await RawConnection.open(target, stats)
            if conn is not None:
                stats.answered(await conn.read_to_end(until))
                conn.close()

    await asyncio.gather(*(one() for _ in range(size)))


async def slowloris(target: Target, size: int, seconds: float, stats: AttackStats) -> None:
    """`size` connections that send a request line, then a header line every few seconds, never the end."""
    until = time.monotonic() + seconds
    lines = [b"GET /health HTTP/1.1\r\nHost: localhost\r\n", *[b"X-Slow: 1\r\n"] * 100_000]
    await asyncio.gather(*(_trickle(target, until, lines, SLOWLORIS_LINE_SECONDS, stats) for _ in range(size)))


async def slow_bodies(target: Target, size: int, seconds: float, stats: AttackStats) -> None:
    """`size` chat requests whose whole headers arrive, then their body a byte a second."""
    until = time.monotonic() + seconds
    body = json.dumps({**CHAT, "messages": [{"role": "user", "content": "x" * 1000}]}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    pieces = [head, *(bytes([byte]) for byte in body)]
    await asyncio.gather(*(_trickle(target, until, pieces, 1.0, stats) for _ in range(size)))


async def _trickle(target: Target, until: float, pieces: list[bytes], every: float, stats: AttackStats) -> None:
    """Send `pieces` one every `every` seconds on a connection until the server answers or closes it; again."""
    while time.monotonic() < until:
        conn = await RawConnection.open(target, stats)
        if conn is None:
            continue
        reading = asyncio.ensure_future(conn.read_to_end(until))
        try:
            for piece in pieces:
                await conn.send(piece)
                await asyncio.wait({reading}, timeout=every)
                if reading.done():
                    break
        except OSError:
            pass  # the server closed it: what it said is in `reading`
        stats.answered(await reading)
        conn.close()


async def queued(target: Target, size: int, seconds: float, stats: AttackStats) -> None:
    """`size` chat requests sent at once, each read to its answer (the attack lasts until all are answered)."""
    body = json.dumps(QUEUED_CHAT).encode()
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    until = time.monotonic() + max(seconds, PROBE_TIMEOUT_SECONDS)

    async def one() -> None:
        conn = await RawConnection.open(target, stats)
        if conn is None:
            return
        sent_at = time.monotonic()
        try:
            await conn.send(request)
        except OSError:
            pass  # refused before it was sent: the 503 is there to read
        stats.answered(await conn.read_to_end(until), sent_at)
        conn.close()

    await asyncio.gather(*(one() for _ in range(size)))


async def pipelined(target: Target, size: int, seconds: float, stats: AttackStats) -> None:
    """`size` connections each sending PIPELINED_BYTES of requests at once, then reading nothing for
    PIPELINE_HOLD_SECONDS, then what came back until the server closes it; again."""
    request = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n"
    burst = request * (PIPELINED_BYTES // len(request))
    until = time.monotonic() + seconds

    async def one() -> None:
        while time.monotonic() < until:
            conn = await RawConnection.open(target, stats, receive_buffer=4096)
            if conn is None:
                continue
            try:
                await asyncio.wait_for(conn.send(burst), max(0.0, until - time.monotonic()))
            except (OSError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(min(PIPELINE_HOLD_SECONDS, max(0.0, until - time.monotonic())))
            answers = await conn.read_to_end(until)
            stats.statuses["answers read"] += (answers or b"").count(b"HTTP/1.1 ")
            stats.answered(answers)  # the first answer's status
            conn.close()

    await asyncio.gather(*(one() for _ in range(size)))


class RawConnection:
    """A non-blocking socket read with the loop's sock_recv: data that came before a reset is still read
    (asyncio's streams raise the reset instead)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    async def open(cls, target: Target, stats: AttackStats, receive_buffer: int | None = None) -> RawConnection | None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.bind((target.source, 0))
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (HOST, target.port))
        except OSError:
            sock.close()
            stats.statuses["connect failed"] += 1
            await asyncio.sleep(0.1)
            return None
        stats.opened += 1
        return cls(sock)

    async def send(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def read_to_end(self, until: float) -> bytes | None:
        """Everything the server sends until it closes; None when the attack ends first."""
        data = b""
        loop = asyncio.get_running_loop()
        while True:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return None
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), remaining)
            except asyncio.TimeoutError:
                return None
            except OSError:
                return data  # reset: what came before it
            if not chunk:
                return data
            data += chunk

    def close(self) -> None:
        self.sock.close()


# The server's memory


class RssSampler:
    """The server's peak RSS, sampled on a thread until stopped."""

    def __init__(self, server: ServerProcess) -> None:
        self.peak = server.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(server,), daemon=True)
        self._thread.start()

    def _run(self, server: ServerProcess) -> None:
        while not self._stop.wait(RSS_EVERY_SECONDS):
            self.peak = max(self.peak, server.rss())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def raise_open_files(wanted: int) -> int:
    """Raise this process's soft limit on open files (inherited by the attackers) toward `wanted`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        soft = raised
    return soft


# The report


def report(args: argparse.Namespace, open_files: int, unloaded: Probes, results: list[AttackResult]) -> None:
    base = {kind: unloaded.median(kind) for kind in ("health", "chat")}
    if args.json:
        print(json.dumps({
            "limits": {"idle_timeout": args.idle_timeout, "header_timeout": args.header_timeout,
                       "body_timeout": args.body_timeout, "max_connections": args.max_connections},
            "attacker_address": args.attacker_address,
            "open_files_soft_limit": open_files,
            "unloaded": _probe_json(unloaded, base),
            "attacks": [{"name": r.name, "size": r.size, "seconds": round(r.seconds, 1),
                         "probes": _probe_json(r.probes, base), "attackers": r.attackers,
                         "rss_bytes": {"before": r.rss_before, "peak": r.rss_peak, "after": r.rss_after}}
                        for r in results],
        }, indent=2))
        return
    console = Console(width=max(Console().width, 132))
    table = Table(title=f"a well-behaved client under attack (idle timeout {args.idle_timeout:g} s, headers "
                        f"{args.header_timeout:g} s, body {args.body_timeout:g} s, {args.max_connections} connections)")
    for column in ("load", "/health median / max", "x unloaded", "chat median / max", "x unloaded",
                   "not 200", "server RSS MiB before / peak / after"):
        table.add_column(column, justify="left" if column == "load" else "right")
    table.add_row("unloaded", _ms(unloaded, "health"), "1.00", _ms(unloaded, "chat"), "1.00", _failures(unloaded), "")
    for r in results:
        table.add_row(TITLES[r.name].format(n=f"{r.size:,}"), _ms(r.probes, "health"),
                      _ratio(r.probes, "health", base), _ms(r.probes, "chat"), _ratio(r.probes, "chat", base),
                      _failures(r.probes),
                      f"{r.rss_before / 2**20:.0f} / {r.rss_peak / 2**20:.0f} / {r.rss_after / 2**20:.0f}")
    console.print(table)
    attackers = Table(title="what the attackers were answered")
    for column in ("attack", "seconds", "connections", "answers", "with Retry-After", "503 after median / max"):
        attackers.add_column(column, justify="left" if column in ("attack", "answers") else "right")
    for r in results:
        refused = r.attackers.get("refused_after_s")
        attackers.add_row(TITLES[r.name].format(n=f"{r.size:,}"), f"{r.seconds:.0f}", f"{r.attackers['connections']:,}",
                          ", ".join(f"{status} x{count:,}" for status, count in sorted(r.attackers["statuses"].items())),
                          f"{r.attackers['retry_after']:,}",
                          f"{refused['median'] * 1000:.0f} / {refused['max'] * 1000:.0f} ms" if refused else "")
    console.print(attackers)
    console.print(f"Medians of {args.samples} unloaded requests of each kind, each on a new connection; x unloaded: "
                  "median (max) over the unloaded median. `closed`: closed without an answer (idle connections); "
                  f"`open at end`: still open when the attack stopped. Open files soft limit here: {open_files}.")


def _probe_json(probes: Probes, base: dict[str, float]) -> dict[str, Any]:
    return {kind: {"median_s": probes.median(kind), "max_s": probes.max(kind),
                   "median_ratio": probes.median(kind) / base[kind], "max_ratio": probes.max(kind) / base[kind],
                   "statuses": dict(probes.statuses[kind])} for kind in ("health", "chat")}


def _ms(probes: Probes, kind: str) -> str:
    return f"{probes.median(kind) * 1000:.1f} / {probes.max(kind) * 1000:.1f} ms"


def _ratio(probes: Probes, kind: str, base: dict[str, float]) -> str:
    return f"{probes.median(kind) / base[kind]:.2f} ({probes.max(kind) / base[kind]:.1f})"


def _failures(probes: Probes) -> str:
    failed = {f"{kind} {status}": n for kind in ("health", "chat")
              for status, n in probes.statuses[kind].items() if status != "200"}
    return ", ".join(f"{name} x{n}" for name, n in failed.items()) or "none"


if __name__ == "__main__":
    main()
