"""Decode rate of the built-in model served locally against split over a llama.cpp RPC link, in one run.

The worker runs in one network namespace, the server (and this benchmark's client) in another,
joined by a veth pair. The link gets extra one-way delay (worker to server) of 0.2, 2 and 5 ms
through a relay of this script's own in the server's namespace (its undelayed figure is reported
too, as the relay's own cost): `tc netem` would do it in the kernel, but CI's kernel lacks
sch_netem, and with every configuration up at once one qdisc could not give each its own delay.
All configurations run at once, each with its own worker, and their rounds are interleaved.

Decode rate = tokens after the first / time from the first to the last streamed token.
Needs root (ip netns). Both namespaces share this machine's cores.

    .venv/bin/python benchmarks/rpc_split.py [--tokens 128] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openai
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from serve_overhead import http_round_counted  # noqa: E402
from serving import HOMELLM, ServerProcess, homellm_serve  # noqa: E402

WORKER_PORT = 50052
DELAYS_MS = (0.2, 2.0, 5.0)
console = Console(stderr=True)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextmanager
def namespaces() -> Iterator[tuple[str, str, str]]:
    """(worker namespace, server namespace, worker address)."""
    tag = f"hb{os.getpid() % 100000}"
    worker_ns, server_ns = f"{tag}w", f"{tag}s"
    try:
        ip("netns", "add", worker_ns)
        ip("netns", "add", server_ns)
        ip("link", "add", f"{tag}a", "type", "veth", "peer", "name", f"{tag}b")
        ip("link", "set", f"{tag}a", "netns", worker_ns)
        ip("link", "set", f"{tag}b", "netns", server_ns)
        ip("-n", worker_ns, "addr", "add", "10.233.0.1/30", "dev", f"{tag}a")
        ip("-n", server_ns, "addr", "add", "10.233.0.2/30", "dev", f"{tag}b")
        for ns, device in ((worker_ns, f"{tag}a"), (server_ns, f"{tag}b")):
            ip("-n", ns, "link", "set", device, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield worker_ns, server_ns, "10.233.0.1"
    finally:
        subprocess.run(["ip", "netns", "del", server_ns], capture_output=True)
        subprocess.run(["ip", "netns", "del", worker_ns], capture_output=True)


class DelayRelay:
    """A TCP relay in this namespace that holds the worker's replies back by a fixed delay, in order.

    Threads with blocking sockets and a spin for the last 0.3 ms: an event loop's timers
    round sub-millisecond waits up to a millisecond, which would swamp a 0.2 ms delay.
    """

    def __init__(self, target: tuple[str, int], delay_s: float) -> None:
        self.target, self.delay = target, delay_s
        self.replies = 0  # chunks the worker sent back: a token's round trips, counted
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            upstream = socket.create_connection(self.target)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._pipe(client, upstream, 0.0, False)
            self._pipe(upstream, client, self.delay, True)

    def _pipe(self, source: socket.socket, sink: socket.socket, delay: float, count: bool) -> None:
        chunks: queue.Queue[tuple[float, bytes]] = queue.Queue()

        def read() -> None:
            try:
                while data := source.recv(1 << 16):
                    chunks.put((time.perf_counter() + delay, data))
            except OSError:
                pass
            chunks.put((0.0, b""))

        def write() -> None:
            while True:
                due, data = chunks.get()
                if not data:
                    break
                if (wait := due - time.perf_counter()) > 0.0003:
                    time.sleep(wait - 0.0003)
                while time.perf_counter() < due:
                    pass
                self.replies += count
                try:
                    sink.sendall(data)
                except OSError:
                    break
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        threading.Thread(target=read, daemon=True).start()
        threading.Thread(target=write, daemon=True).start()


def rpc_server(home: Path, args: list[str]) -> ServerProcess:
    """`homellm serve --parallel 1` in this namespace, its log beside the others in `home`."""
    # No API key: the requests here send none.
    return homellm_serve("--parallel", "1", *args, home=home, env={"HOMELLM_API_KEY": None},
                         log=home / "serve-{port}.log")


def rate(server: ServerProcess, tokens: int) -> float:
    """Decode tokens/s of one streamed completion."""
    return generate(server, tokens)[0]


def generate(server: ServerProcess, tokens: int) -> tuple[float, int]:
    """Decode tokens/s of one streamed completion, and the tokens it generated."""
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="none", max_retries=0)
    return http_round_counted(client, tokens)


def replies_per_token(server: ServerProcess, relay: DelayRelay, tokens: int) -> float:
    """The worker's replies per generated token, over two completions of different lengths (the
    prompt's share cancels out)."""
    counts = []
    for n in (tokens // 2, tokens):
        before = relay.replies
        generated = generate(server, n)[1]
        counts.append((relay.replies - before, generated))
    (r1, n1), (r2, n2) = counts
    return (r2 - r1) / (n2 - n1)


def start_worker(args: argparse.Namespace, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["ip", "netns", "exec", args.worker_ns, HOMELLM, "worker", "--host", args.worker_addr,
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def inside(args: argparse.Namespace) -> list[dict]:
    """The runs, from inside the server's namespace: every configuration up at once, rounds interleaved
    (this machine's rate drifts by more than a 2 ms delay costs between runs taken one after another)."""
    home = Path(args.home)
    configs: list[tuple[str, str, float]] = [("local", "", 0.0), ("split", "veth", 0.0)]
    configs += [("split", "relay", d) for d in (0.0, *DELAYS_MS)]
    workers = [start_worker(args, WORKER_PORT + i) for i in range(len(configs) - 1)]
    servers: list[ServerProcess] = []
    relays: list[DelayRelay | None] = []
    try:
        time.sleep(2)
        with console.status("starting servers…"):
            for i, (_, link, delay) in enumerate(configs):
                relay = DelayRelay((args.worker_addr, WORKER_PORT + i - 1), delay / 1000) if link == "relay" else None
                target = f"127.0.0.1:{relay.port}" if relay else f"{args.worker_addr}:{WORKER_PORT + i - 1}"
                servers.append(rpc_server(home, ["--rpc", target] if link else []))
                relays.append(relay)
        rates: list[list[float]] = [[] for _ in configs]
        with console.status("measuring…"):
            for server in servers:
                rate(server, 16)  # warm-up
            for _ in range(args.rounds):
                for server, row in zip(servers, rates):
                    row.append(rate(server, args.tokens))
            undelayed_relay = configs.index(("split", "relay", 0.0))
            trips = replies_per_token(servers[undelayed_relay], relays[undelayed_relay], args.tokens)  # type: ignore[arg-type]
    finally:
        for server in servers:
            server.stop()
        for worker in workers:
            worker.terminate()
            worker.wait(10)
    results = [{"run": name, "link": link, "delay_ms": delay, "decode_tps": round(statistics.median(row), 1),
                "rounds": [round(r, 1) for r in row]} for (name, link, delay), row in zip(configs, rates)]
    base, relay_base = results[0]["decode_tps"], results[undelayed_relay]["decode_tps"]
    results[undelayed_relay]["replies_per_token"] = round(trips, 2)
    for row in results:
        row["ratio"] = round(row["decode_tps"] / base, 3)
        if row["delay_ms"]:
            row["added_ms_per_token"] = round(1000 / row["decode_tps"] - 1000 / relay_base, 2)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--worker-ns", "--worker-addr", "--home"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        print(json.dumps(inside(args)))
        return
    import tempfile

    with tempfile.TemporaryDirectory() as home, namespaces() as (worker_ns, server_ns, worker_addr):
        run = subprocess.run(["ip", "netns", "exec", server_ns, sys.executable, __file__, "--inside",
                              "--worker-ns", worker_ns, "--worker-addr", worker_addr,
                              "--home", home, "--tokens", str(args.tokens), "--rounds", str(args.rounds)],
                             stdout=subprocess.PIPE, text=True)
        if run.returncode != 0:
            sys.exit(run.returncode)
        results = json.loads(run.stdout)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    table = Table(title=f"built-in model decode, {args.tokens} tokens, median of {args.rounds}")
    for column in ("run", "link", "extra delay", "tokens/s", "x local"):
        table.add_column(column, justify="left" if column in ("run", "link") else "right")
    for row in results:
        table.add_row(row["run"], row["link"] or "-", f"{row['delay_ms']} ms", f"{row['decode_tps']:.1f}",
                      f"{row['ratio']:.2f}")
    Console().print(table)
    for row in results:
        if "replies_per_token" in row:
            console.print(f"the worker sends {row['replies_per_token']} replies a token")
        if "added_ms_per_token" in row:
            console.print(f"{row['delay_ms']} ms of one-way delay added {row['added_ms_per_token']} ms a token "
                          f"({row['added_ms_per_token'] / row['delay_ms']:.1f} waits on the worker a token)")


if __name__ == "__main__":
    main()
