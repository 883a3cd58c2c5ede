"""The cost of each API dialect's translation: one stream's decode rate through /api/chat (Ollama),
/v1/messages (Anthropic) and /v1/responses (OpenAI Responses) against /v1/chat/completions, in one run.

Every route gets the same conversation and greedy sampling, so the model generates the same tokens;
only the translation and the wire format differ. Decode rate = tokens after the first / time from the
first to the last text event, read with plain httpx (no client's parsing in the figure), token counts
as each dialect reports them. Rounds are interleaved, so drift on a shared machine hits every route
alike. Target: each dialect >= 0.97x chat/completions.

    .venv/bin/python benchmarks/dialects.py [--tokens 256] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from serve_overhead import start_server  # the same server, started the same way

from homellm.models.builtin import BUILTIN_NAME

QUESTION = "Write a long story about a dragon who learns to cook."  # runs past 400 tokens at temperature 0
MESSAGES = [{"role": "user", "content": QUESTION}]


@dataclass(frozen=True)
class Route:
    """One dialect's streaming request, and how to read text and the token count from its events."""

    name: str
    path: str
    body: Callable[[int], dict[str, Any]]
    text: Callable[[dict[str, Any]], str]
    tokens: Callable[[dict[str, Any]], int | None]
    ndjson: bool = False


def _openai_text(event: dict[str, Any]) -> str:
    choices = event.get("choices") or []
    return (choices[0].get("delta", {}).get("content") or "") if choices else ""


def _openai_tokens(event: dict[str, Any]) -> int | None:
    return event["usage"]["completion_tokens"] if event.get("usage") else None


def _anthropic_text(event: dict[str, Any]) -> str:
    return event.get("delta", {}).get("text", "") if event.get("type") == "content_block_delta" else ""


def _anthropic_tokens(event: dict[str, Any]) -> int | None:
    return event["usage"]["output_tokens"] if event.get("type") == "message_delta" else None


def _responses_text(event: dict[str, Any]) -> str:
    return event.get("delta", "") if event.get("type") == "response.output_text.delta" else ""


def _responses_tokens(event: dict[str, Any]) -> int | None:
    if event.get("type") in ("response.completed", "response.incomplete"):
        return event["response"]["usage"]["output_tokens"]
    return None


def _ollama_text(event: dict[str, Any]) -> str:
    return event.get("message", {}).get("content", "")


def _ollama_tokens(event: dict[str, Any]) -> int | None:
    return event.get("eval_count") if event.get("done") else None


ROUTES = [
    Route("OpenAI /v1/chat/completions", "/v1/chat/completions",
          lambda n: {"model": BUILTIN_NAME, "messages": MESSAGES, "max_tokens": n, "temperature": 0,
                     "stream": True, "stream_options": {"include_usage": True}},
          _openai_text, _openai_tokens),
    Route("Ollama /api/chat", "/api/chat",
          lambda n: {"model": BUILTIN_NAME, "messages": MESSAGES, "stream": True,
                     "options": {"num_predict": n, "temperature": 0}},
          _ollama_text, _ollama_tokens, ndjson=True),
    Route("Anthropic /v1/messages", "/v1/messages",
          lambda n: {"model": BUILTIN_NAME, "messages": MESSAGES, "max_tokens": n, "temperature": 0, "stream": True},
          _anthropic_text, _anthropic_tokens),
    Route("OpenAI /v1/responses", "/v1/responses",
          lambda n: {"model": BUILTIN_NAME, "input": QUESTION, "max_output_tokens": n, "temperature": 0,
                     "stream": True},
          _responses_text, _responses_tokens),
]


def _events(response: httpx.Response, ndjson: bool):
    for line in response.iter_lines():
        if ndjson and line.strip():
            yield json.loads(line)
        elif line.startswith("data: {"):
            yield json.loads(line[6:])


def stream_round(base_url: str, route: Route, n: int) -> tuple[float, int, str]:
    """Decode rate of one streamed answer through the route, its token count, and its text."""
    times: list[float] = []
    tokens = 0
    text = []
    with httpx.stream("POST", base_url + route.path, json=route.body(n), timeout=300,
                      headers={"anthropic-version": "2023-06-01"}) as response:
        response.raise_for_status()
        for event in _events(response, route.ndjson):
            piece = route.text(event)
            if piece:
                times.append(time.perf_counter())
                text.append(piece)
            counted = route.tokens(event)
            if counted is not None:
                tokens = counted
    if tokens < 2 or len(times) < 2:
        raise SystemExit(f"{route.name}: too few tokens to time ({tokens})")
    return (tokens - 1) / (times[-1] - times[0]), tokens, "".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    server = start_server()
    base_url = server.base_url
    rates: dict[str, list[float]] = {r.name: [] for r in ROUTES}
    counts: dict[str, int] = {}
    texts: dict[str, str] = {}
    try:
        for route in ROUTES:  # warm every route
            stream_round(base_url, route, 16)
        for _ in range(args.rounds):
            for route in ROUTES:
                rate, counts[route.name], texts[route.name] = stream_round(base_url, route, args.tokens)
                rates[route.name].append(rate)
    finally:
        server.stop()
    base = ROUTES[0].name
    same_text = len(set(texts.values())) == 1
    result = {
        "tokens_asked": args.tokens, "rounds": args.rounds, "cpu_count": os.cpu_count(), "same_text": same_text,
        "routes": {
            name: {"decode_tok_s": statistics.median(values), "tokens": counts[name], "rounds": values,
                   "ratio_median": statistics.median(v / b for v, b in zip(values, rates[base], strict=True)),
                   "ratio_min": min(v / b for v, b in zip(values, rates[base], strict=True))}
            for name, values in rates.items()
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    table = Table(title=f"one stream's decode rate by dialect, {args.tokens} tokens asked, "
                        f"median of {args.rounds} interleaved rounds")
    for col in ("route", "tokens", "decode tok/s", "spread", "ratio to chat/completions"):
        table.add_column(col, justify="left" if col == "route" else "right")
    for name, row in result["routes"].items():
        values = row["rounds"]
        table.add_row(name, str(row["tokens"]), f"{row['decode_tok_s']:.1f}", f"{min(values):.0f}-{max(values):.0f}",
                      f"{row['ratio_median']:.3f} (min {row['ratio_min']:.2f})")
    console = Console(width=120)
    console.print(table)
    console.print("every route generated the same text" if same_text else "[yellow]the routes' texts differ")


if __name__ == "__main__":
    main()
