"""Streamed decode rate: raw llama-cpp-python against `homellm serve` with one client, in one run.

Decode rate = tokens after the first / time from the first to the last token,
so prompt processing and HTTP set-up are left out. Target: HTTP >= 0.95x raw.

    .venv/bin/python benchmarks/serve_overhead.py [--tokens 256] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import httpx
import openai
from llama_cpp import Llama
from rich.console import Console
from rich.table import Table
from serving import ServerProcess, homellm_serve

from homellm.engine.llama import default_threads
from homellm.models.builtin import BUILTIN_NAME, builtin_model_path

PROMPT = "1, 2, 3, 4, 5,"  # the built-in model keeps counting far past 256 tokens at temperature 0
# llama-cpp-python's create_completion samples with no repeat penalty: homellm is asked for the same
# sampling (its default penalty would also stop the counting early).
SAME_SAMPLING = {"repeat_penalty": 1.0}
CTX = 4096


def decode_rate(token_times: list[float], tokens: int) -> float:
    """Tokens after the first over the time between first and last."""
    return (tokens - 1) / (token_times[-1] - token_times[0])


def raw_round(llm: Llama, n: int) -> float:
    times = []
    for _ in llm.create_completion(PROMPT, max_tokens=n, temperature=0.0, stream=True):
        times.append(time.perf_counter())
    return decode_rate(times, len(times))


def http_round(client: openai.OpenAI, n: int) -> float:
    return http_round_counted(client, n)[0]


def http_round_counted(client: openai.OpenAI, n: int) -> tuple[float, int]:
    """Decode rate of one streamed completion through the openai client, and the tokens generated."""
    times = []
    tokens = 0
    stream = client.completions.create(model=BUILTIN_NAME, prompt=PROMPT, max_tokens=n, temperature=0,
                                       stream=True, stream_options={"include_usage": True}, extra_body=SAME_SAMPLING)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            times.append(time.perf_counter())
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    # Chunks can carry more than one token when the reader lags; count true tokens.
    return (tokens - 1) / (times[-1] - times[0]), tokens


def sse_round(base_url: str, n: int) -> float:
    """The same request read with plain httpx: the server's cost without the openai client's parsing."""
    times = []
    tokens = 0
    body = {"model": BUILTIN_NAME, "prompt": PROMPT, "max_tokens": n, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}, **SAME_SAMPLING}
    with httpx.stream("POST", f"{base_url}/v1/completions", json=body, timeout=120) as response:
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk["choices"] and chunk["choices"][0]["text"]:
                times.append(time.perf_counter())
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return (tokens - 1) / (times[-1] - times[0])


def start_server() -> ServerProcess:
    """`homellm serve` as this benchmark and dialects.py measure it."""
    return homellm_serve("--ctx", str(CTX), timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    threads = default_threads()
    llm = Llama(model_path=str(builtin_model_path()), n_ctx=CTX, n_threads=threads,
                n_threads_batch=threads, verbose=False)
    server = start_server()
    base_url = server.base_url
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="none", max_retries=0)
    raw, http, sse = [], [], []
    try:
        raw_round(llm, 16), http_round(client, 16), sse_round(base_url, 16)  # warm all three
        for _ in range(args.rounds):  # interleaved, so drift on a shared machine hits all alike
            raw.append(raw_round(llm, args.tokens))
            http.append(http_round(client, args.tokens))
            sse.append(sse_round(base_url, args.tokens))
    finally:
        server.stop()
    ratios = [h / r for h, r in zip(http, raw)]
    sse_ratios = [h / r for h, r in zip(sse, raw)]
    result = {
        "tokens": args.tokens, "rounds": args.rounds, "threads": threads, "cpu_count": os.cpu_count(),
        "raw_decode_tok_s": statistics.median(raw), "http_decode_tok_s": statistics.median(http),
        "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
        "httpx_decode_tok_s": statistics.median(sse), "httpx_ratio_median": statistics.median(sse_ratios),
        "raw_rounds": raw, "http_rounds": http, "httpx_rounds": sse,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    table = Table(title=f"streamed decode, {args.tokens} tokens, median of {args.rounds} rounds, {threads} threads")
    for col in ("path", "decode tok/s", "spread", "ratio to raw"):
        table.add_column(col, justify="right" if col != "path" else "left")
    table.add_row("llama-cpp-python create_completion (raw)", f"{result['raw_decode_tok_s']:.1f}",
                  f"{min(raw):.0f}-{max(raw):.0f}", "1.00")
    table.add_row("homellm serve, 1 client (openai, SSE)", f"{result['http_decode_tok_s']:.1f}",
                  f"{min(http):.0f}-{max(http):.0f}",
                  f"{result['ratio_median']:.3f} ({result['ratio_min']:.2f}-{result['ratio_max']:.2f})")
    table.add_row("homellm serve, 1 client (httpx, SSE lines)", f"{result['httpx_decode_tok_s']:.1f}",
                  f"{min(sse):.0f}-{max(sse):.0f}",
                  f"{result['httpx_ratio_median']:.3f} ({min(sse_ratios):.2f}-{max(sse_ratios):.2f})")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
