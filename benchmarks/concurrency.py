"""Concurrent streamed chats: raw llama-cpp-python against `homellm serve --parallel 8`, in one run.

Prints, per round and as medians over rounds:
- raw llama-cpp-python, one stream of 256 tokens: decode rate and wall rate;
- homellm with 1, 4, 8 and 16 concurrent streamed chats of up to 128 tokens: aggregate
  tokens/s (all tokens over the wall time), decode rate per stream, time to first token
  p50/p95, failures;
- prefix cache: time to first token of a ~1500-token conversation's first and second turn;
- llama-cpp-python's own server at 1 and 4 streams (when `llama-cpp-python[server]` is installed);
- with `--anchor BIN_DIR`, llama.cpp's `llama-server --parallel 8` under the same load.

Targets (this 2-core machine): 1 stream decode >= 0.95x raw decode; 8 streams aggregate
>= 1.40x raw wall rate; 0 failures; second-turn TTFT <= 25% of the first turn's.

    .venv/bin/python benchmarks/concurrency.py [--rounds 3] [--anchor DIR] [--json]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from llama_cpp import Llama
from rich.console import Console
from rich.table import Table
from serving import ServerProcess, homellm_serve

from homellm.engine.llama import default_threads
from homellm.models.builtin import BUILTIN_NAME, builtin_model_path

CTX = 2048  # per slot
PARALLEL = 8
STREAMS = (1, 4, 8, 16)
CHAT_TOKENS = 128
RAW_TOKENS = 256
SETTLE_SECONDS = 8
TOPICS = ("the sea", "a city at night", "the mountains", "a library", "the first snow", "a train journey",
          "an old clock", "a garden in spring", "the desert", "a lighthouse", "a market", "the moon",
          "a forest path", "a storm", "a violin", "a bakery")


@dataclass
class StreamResult:
    ok: bool
    tokens: int = 0
    ttft: float = 0.0
    decode_tps: float = 0.0
    end: float = 0.0
    prompt_tokens: int = 0
    timings: dict | None = None  # llama-server's own figures from its last chunk (draft_n, draft_n_accepted ...)


@dataclass
class LoadResult:
    streams: int
    aggregate_tps: float
    decode_tps_per_stream: float
    ttft_p50: float
    ttft_p95: float
    failures: int


def chat_stream(base_url: str, messages: list[dict], max_tokens: int, temperature: float = 0.7,
                seed: int = 1, model: str = BUILTIN_NAME) -> StreamResult:
    """One streamed chat read with httpx; token count from the usage chunk when there is one."""
    # No repeat penalty, on both servers: llama-server's default, and the raw baseline's.
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature,
            "repeat_penalty": 1.0, "seed": seed, "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    times: list[float] = []
    usage_tokens = None
    prompt_tokens = 0
    timings = None
    try:
        with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body, timeout=300) as response:
            if response.status_code != 200:
                return StreamResult(False)
            for line in response.iter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                    times.append(time.perf_counter())
                timings = chunk.get("timings", timings)
                if chunk.get("usage"):
                    usage_tokens = chunk["usage"]["completion_tokens"]
                    prompt_tokens = chunk["usage"]["prompt_tokens"]
    except httpx.HTTPError:
        return StreamResult(False)
    if not times:
        return StreamResult(False)
    tokens = usage_tokens if usage_tokens is not None else len(times)
    decode = (tokens - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
    return StreamResult(True, tokens, times[0] - start, decode, times[-1], prompt_tokens, timings)


def load(base_url: str, streams: int) -> LoadResult:
    """`streams` chats sent at once; aggregate = all tokens over the wall time of the whole load."""
    prompts = [[{"role": "user", "content": f"Write a long story about {TOPICS[i % len(TOPICS)]}."}]
               for i in range(streams)]
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(streams) as pool:
        results = list(pool.map(lambda m: chat_stream(base_url, m, CHAT_TOKENS), prompts))
    wall = max((r.end for r in results if r.ok), default=start + 1) - start
    good = [r for r in results if r.ok]
    ttfts = sorted(r.ttft for r in good) or [0.0]
    return LoadResult(streams, sum(r.tokens for r in good) / wall,
                      statistics.median([r.decode_tps for r in good]) if good else 0.0,
                      ttfts[len(ttfts) // 2], ttfts[min(len(ttfts) - 1, int(len(ttfts) * 0.95))],
                      len(results) - len(good))


def raw_round(llm: Llama) -> tuple[float, float]:
    """Decode rate and wall rate of one raw stream of RAW_TOKENS tokens."""
    start = time.perf_counter()
    times = [time.perf_counter() for _ in llm.create_completion("1, 2, 3, 4, 5,", max_tokens=RAW_TOKENS,
                                                                temperature=0.0, stream=True)]
    return (len(times) - 1) / (times[-1] - times[0]), len(times) / (times[-1] - start)


def prefix_cache(base_url: str) -> tuple[float, float, int]:
    """TTFT of a ~1500-token conversation's first turn, then of a later turn."""
    # A new opening each time, so no server can answer the first turn from an earlier round's cache.
    story = f"Here is long story number {uuid.uuid4().hex[:8]}. " + " ".join(
        f"On day {i} the fox ran over hill number {i} while the dog slept by the river." for i in range(64))
    turn = [{"role": "user", "content": story + " Who ran over the hills?"}]
    first = chat_stream(base_url, turn, 16)
    follow = [*turn, {"role": "assistant", "content": "The fox ran over the hills."},
              {"role": "user", "content": "And where did the dog sleep?"}]
    chat_stream(base_url, follow, 1)  # the assistant turn is new text: the cache learns it once
    follow2 = [*follow, {"role": "assistant", "content": "By the river."},
               {"role": "user", "content": "Thank you. What was the last hill's number?"}]
    second = chat_stream(base_url, follow2, 16)
    return first.ttft, second.ttft, second.prompt_tokens


def homellm_server(threads: int, home: str) -> ServerProcess:
    return homellm_serve("--parallel", str(PARALLEL), "--ctx", str(CTX), "--threads", str(threads), "--queue", "64",
                         home=home)


def llama_cpp_python_server(threads: int) -> ServerProcess | None:
    try:
        import llama_cpp.server.app  # noqa: F401
    except ImportError:
        return None
    return ServerProcess([sys.executable, "-m", "llama_cpp.server", "--model", str(builtin_model_path()),
                          "--model_alias", BUILTIN_NAME, "--port", "{port}", "--n_ctx", str(CTX),
                          "--n_threads", str(threads), "--chat_format", "chatml"], "/v1/models")


def anchor_server(bin_dir: str, threads: int, *extra: str, model: Path | None = None) -> ServerProcess:
    """llama.cpp's llama-server on the built-in model (or `model`), 8 slots, with `extra` options."""
    return ServerProcess([str(Path(bin_dir) / "llama-server"), "-m", str(model or builtin_model_path()),
                          "--port", "{port}",
                          "--parallel", str(PARALLEL), "-c", str(CTX * PARALLEL), "-t", str(threads),
                          "--alias", BUILTIN_NAME, "--no-webui", *extra], "/health", {"LD_LIBRARY_PATH": bin_dir})


def med(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--anchor", help="folder with llama.cpp's llama-server (../shared/tools/build-llama-server.sh)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import tempfile

    threads = default_threads()
    llm = Llama(model_path=str(builtin_model_path()), n_ctx=4096, n_threads=threads, n_threads_batch=threads,
                verbose=False)
    home = tempfile.mkdtemp(prefix="homellm-bench-")
    servers: dict[str, ServerProcess] = {"homellm": homellm_server(threads, home)}
    if args.anchor:
        servers["llama-server"] = anchor_server(args.anchor, threads)
    # Last in each round, with a pause after: it goes on decoding for the streams it dropped.
    if (lcp := llama_cpp_python_server(threads)) is not None:
        servers["llama-cpp-python server"] = lcp
    streams_for = {"homellm": STREAMS, "llama-cpp-python server": (1, 4), "llama-server": STREAMS}
    raw_decode: list[float] = []
    raw_wall: list[float] = []
    loads: dict[str, dict[int, list[LoadResult]]] = {name: {n: [] for n in streams_for[name]} for name in servers}
    prefix: dict[str, list[tuple[float, float, int]]] = {name: [] for name in servers if name != "llama-cpp-python server"}
    try:
        raw_round(llm)
        for server in servers.values():
            load(server.base_url, 2)  # warm
        for _ in range(args.rounds):  # interleaved, so drift on a shared machine hits all alike
            decode, wall = raw_round(llm)
            raw_decode.append(decode)
            raw_wall.append(wall)
            for name, server in servers.items():
                for n in streams_for[name]:
                    loads[name][n].append(load(server.base_url, n))
                if name in prefix:
                    prefix[name].append(prefix_cache(server.base_url))
                if name == "llama-cpp-python server":
                    time.sleep(SETTLE_SECONDS)
    finally:
        for server in servers.values():
            server.stop()
    report(args, threads, raw_decode, raw_wall, loads, prefix)


def report(args: argparse.Namespace, threads: int, raw_decode: list[float], raw_wall: list[float],
           loads: dict[str, dict[int, list[LoadResult]]], prefix: dict[str, list[tuple[float, float, int]]]) -> None:
    rd, rw = med(raw_decode), med(raw_wall)

    def summary(results: list[LoadResult]) -> dict[str, float]:
        agg: Callable[[str], float] = lambda key: med([getattr(r, key) for r in results])
        return {"aggregate_tps": agg("aggregate_tps"), "decode_tps_per_stream": agg("decode_tps_per_stream"),
                "ttft_p50": agg("ttft_p50"), "ttft_p95": agg("ttft_p95"),
                "failures": sum(r.failures for r in results),
                "aggregate_over_raw_wall": agg("aggregate_tps") / rw, "decode_over_raw_decode": agg("decode_tps_per_stream") / rd,
                "rounds": [asdict(r) for r in results]}

    result = {
        "threads": threads, "rounds": args.rounds, "raw_decode_tps": rd, "raw_wall_tps": rw,
        "raw_rounds": list(zip(raw_decode, raw_wall)),
        "servers": {name: {str(n): summary(rs) for n, rs in by_n.items()} for name, by_n in loads.items()},
        "prefix_cache": {name: {"first_ttft": med([p[0] for p in ps]), "second_ttft": med([p[1] for p in ps]),
                                "ratio": med([p[1] / p[0] for p in ps]),
                                "later_turn_prompt_tokens": med([p[2] for p in ps])} for name, ps in prefix.items()},
    }
    if "llama-server" in loads:
        result["homellm_over_llama_server"] = {
            str(n): result["servers"]["homellm"][str(n)]["aggregate_tps"]
            / result["servers"]["llama-server"][str(n)]["aggregate_tps"] for n in STREAMS}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    console = Console(width=140)
    rounds = ", ".join(f"{d:.0f}/{w:.0f}" for d, w in zip(raw_decode, raw_wall))
    console.print(f"raw llama-cpp-python, {RAW_TOKENS} tokens: decode {rd:.1f} tok/s, wall {rw:.1f} tok/s "
                  f"(medians of {args.rounds}; decode/wall by round: {rounds})")
    table = Table(title=f"streamed chats of up to {CHAT_TOKENS} tokens, medians of {args.rounds} rounds, {threads} threads")
    for col in ("server", "streams", "aggregate tok/s", "x raw wall", "decode/stream", "x raw decode",
                "TTFT p50 s", "TTFT p95 s", "failures"):
        table.add_column(col, justify="left" if col == "server" else "right")
    for name, by_n in result["servers"].items():
        for n, s in by_n.items():
            table.add_row(name, n, f"{s['aggregate_tps']:.1f}", f"{s['aggregate_over_raw_wall']:.2f}",
                          f"{s['decode_tps_per_stream']:.1f}", f"{s['decode_over_raw_decode']:.2f}",
                          f"{s['ttft_p50']:.2f}", f"{s['ttft_p95']:.2f}", str(s["failures"]))
    console.print(table)
    for name, p in result["prefix_cache"].items():
        console.print(f"{name} prefix cache: first turn TTFT {p['first_ttft']:.2f} s, later turn "
                      f"({p['later_turn_prompt_tokens']:.0f} prompt tokens) {p['second_ttft']:.2f} s, "
                      f"ratio {p['ratio']:.2f} (target <= 0.25)")
    if "homellm_over_llama_server" in result:
        console.print("homellm / llama-server aggregate: " + ", ".join(
            f"{n} streams {r:.2f}" for n, r in result["homellm_over_llama_server"].items()))


if __name__ == "__main__":
    main()
