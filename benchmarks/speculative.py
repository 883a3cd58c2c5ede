"""Speculative decoding: `homellm serve --spec ngram` against no speculation, and against llama.cpp's
`llama-server --spec-type ngram-mod`, in one run with the rounds interleaved.

Single streams at temperature 0 (the built-in model, its F16 file):
- copying: repeat a text, a code edit that returns the file, an answer that quotes its passage;
- free text: stories and explanations.
Each kind has a tuning half (the prompts the policy's constants were chosen on) and a held-out
half, reported apart. Then 4 and 8 concurrent streamed stories, aggregate tokens/s, with and
without speculation. Decode rates come from the usage's completion tokens over the time from the
first streamed token to the last.

Targets (this 2-core machine): copying >= 1.8x no speculation and >= 1.0x llama-server's ngram-mod;
free text >= 0.97x; 4 and 8 streams >= 0.95x. With `--f16` every server runs the built-in model as
an F16 file (requantized from the shipped Q4_1 by llama.cpp's quantizer, so it holds the same weights),
as the issue's llama-server figures were taken: it verifies drafts more cheaply on a CPU.

    .venv/bin/python benchmarks/speculative.py [--rounds 3] [--anchor BIN_DIR] [--f16] [--json]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from concurrency import CTX, PARALLEL, StreamResult, anchor_server
from concurrency import chat_stream as stream_messages
from rich.console import Console
from rich.table import Table
from serving import ServerProcess, homellm_serve

from homellm.engine.llama import default_threads
from homellm.engine.quantize import quantize_file
from homellm.models.builtin import BUILTIN_NAME, builtin_model_path

COPY_TOKENS = 320
FREE_TOKENS = 200
LOAD_TOKENS = 128
LOADS = (4, 8)

TEXT_A = (
    "The old harbour town wakes before the sun. Fishing boats slip out past the breakwater while the bakers "
    "light their ovens, and by the time the first light touches the church tower the smell of bread has "
    "reached the quay. Children run down the steep lanes to school, the market women set out crates of "
    "apples and cabbages, and the harbour master writes the tides on a blackboard by the steps. In the "
    "afternoon the boats come back low in the water, gulls circling above them, and the whole town gathers "
    "to watch the catch unloaded, weighed and sold before the evening bell.")
TEXT_B = (
    "A glacier is a river of ice that moves so slowly that a lifetime is too short to see it. Snow falls on "
    "the high slopes, is pressed by the snow above it into firn and then into ice, and the ice, heavy enough, "
    "begins to flow downhill under its own weight. As it moves it scrapes the rock beneath, carrying stones "
    "as large as houses, and it carves valleys shaped like the letter U. Where it reaches warmer air it melts, "
    "and the meltwater runs off milky with ground rock, feeding the lakes and rivers of the plains below.")
CODE_A = '''def area(width, height):
    """The area of a rectangle."""
    if width < 0 or height < 0:
        raise ValueError("sides must not be negative")
    return width * height


def describe(width, height):
    return f"a {width} by {height} rectangle has an area of {area(width, height)}"


if __name__ == "__main__":
    for side in range(1, 6):
        print(describe(side, side + 1))
'''
CODE_B = '''class Counter:
    """Counts events by name."""

    def __init__(self):
        self.counts = {}

    def add(self, name, times=1):
        self.counts[name] = self.counts.get(name, 0) + times

    def most_common(self, n):
        ordered = sorted(self.counts.items(), key=lambda item: item[1], reverse=True)
        return ordered[:n]


counter = Counter()
for word in "the cat and the dog and the bird".split():
    counter.add(word)
print(counter.most_common(2))
'''
PASSAGE_A = (
    "Section 4.2. Tenants must give written notice at least thirty days before the end of the month in which "
    "they intend to leave. The deposit is returned within fourteen days of the keys being handed back, less "
    "the cost of any damage beyond ordinary wear, which the landlord must list in writing with receipts.")
PASSAGE_B = (
    "Article 7. Members may borrow up to six books at a time for three weeks. A loan may be renewed twice, "
    "in person or online, unless another member has reserved the book. Books returned late are charged ten "
    "cents a day, up to the price of the book, and members owing more than five dollars may not borrow.")

COPYING = {
    "tune": {
        "repeat": f"Repeat the following text exactly, word for word:\n\n{TEXT_A}",
        "code edit": f"Rename the function `area` to `surface` everywhere in this file and return the whole "
                     f"file:\n\n```python\n{CODE_A}```",
        "quote": f"{PASSAGE_A}\n\nWhat does the passage say about leaving and the deposit? Quote it word for word.",
    },
    "held-out": {
        "repeat": f"Repeat the following text exactly, word for word:\n\n{TEXT_B}",
        "code edit": f"Rename the method `add` to `record` everywhere in this file and return the whole "
                     f"file:\n\n```python\n{CODE_B}```",
        "quote": f"{PASSAGE_B}\n\nWhat does the passage say about renewals and late books? Quote it word for word.",
    },
}
FREE = {
    "tune": {"story": "Write a long story about a lighthouse keeper.",
             "explain": "Explain how a refrigerator keeps food cold."},
    "held-out": {"story": "Write a long story about a train journey through the mountains.",
                 "explain": "Explain why the sky is blue and sunsets are red."},
}
TOPICS = ("the sea", "a city at night", "the mountains", "a library", "the first snow", "a train journey",
          "an old clock", "a garden in spring")
F16_NAME = "smollm2-f16"  # the model's name on homellm's servers with --f16 (its file's stem)
NGRAM_MOD = "llama-server ngram-mod"


def chat_stream(base_url: str, prompt: str, max_tokens: int, temperature: float = 0.0, seed: int = 1,
                model: str = BUILTIN_NAME) -> StreamResult:
    return stream_messages(base_url, [{"role": "user", "content": prompt}], max_tokens, temperature, seed,
                           model=model)


def ngram_mod_server(bin_dir: str, threads: int, model: Path | None) -> ServerProcess:
    """llama-server with `--spec-type ngram-mod`, started afresh."""
    return anchor_server(bin_dir, threads, "--spec-type", "ngram-mod", model=model)


def load(base_url: str, streams: int, model: str = BUILTIN_NAME) -> float:
    """Aggregate tokens/s of `streams` stories sent at once (all tokens over the wall time)."""
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(streams) as pool:
        results = list(pool.map(
            lambda i: chat_stream(base_url, f"Write a long story about {TOPICS[i % len(TOPICS)]}.", LOAD_TOKENS,
                                  0.7, i + 1, model), range(streams)))
    good = [r for r in results if r.ok]
    wall = max((r.end for r in good), default=start + 1) - start
    return sum(r.tokens for r in good) / wall


def acceptance(base_url: str) -> tuple[int, int]:
    """Drafted and accepted tokens so far, from /homellm/ps (homellm only)."""
    models = httpx.get(f"{base_url}/homellm/ps", timeout=10).json()["models"]
    spec = models[0].get("speculation", {})
    return spec.get("drafted", 0), spec.get("accepted", 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--anchor", help="folder with llama.cpp's llama-server (../shared/tools/build-llama-server.sh)")
    parser.add_argument("--f16", action="store_true", help="serve the built-in model as an F16 file")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    threads = default_threads()
    home = tempfile.mkdtemp(prefix="homellm-spec-")
    target, model = None, BUILTIN_NAME
    if args.f16:
        target, model = Path(home) / f"{F16_NAME}.gguf", F16_NAME
        quantize_file(builtin_model_path(), target, "F16", allow_requantize=True)
    common = ("--parallel", str(PARALLEL), "--ctx", str(CTX), "--threads", str(threads), "--queue", "64",
              *(("--model", str(target)) if target else ()))
    servers = {"homellm": homellm_serve(*common, home=home),
               "homellm --spec ngram": homellm_serve(*common, "--spec", "ngram", home=home)}
    if args.anchor:
        servers["llama-server"] = anchor_server(args.anchor, threads, model=target)
        servers[NGRAM_MOD] = ngram_mod_server(args.anchor, threads, target)
    tasks = [(kind, half, name, prompt, COPY_TOKENS if kind == "copying" else FREE_TOKENS)
             for kind, table in (("copying", COPYING), ("free text", FREE))
             for half, prompts in table.items() for name, prompt in prompts.items()]
    rates: dict[tuple[str, str, str, str], list[float]] = {}
    loads: dict[tuple[str, int], list[float]] = {}
    console = Console(stderr=True)
    try:
        for server in servers.values():  # warm up: the first request pays for page faults
            chat_stream(server.base_url, "Hello.", 8, model=model)
        for round_no in range(args.rounds):
            if round_no and NGRAM_MOD in servers:
                # ngram-mod keeps the n-grams of every answer it gave: asked the same prompt again it
                # drafts its whole greedy answer (3-4.5x here). Each round starts it afresh, as homellm's
                # drafts come from the request alone.
                servers[NGRAM_MOD].stop()
                servers[NGRAM_MOD] = ngram_mod_server(args.anchor, threads, target)
                chat_stream(servers[NGRAM_MOD].base_url, "Hello.", 8, model=model)
            for label, server in servers.items():
                for kind, half, name, prompt, tokens in tasks:
                    result = chat_stream(server.base_url, prompt, tokens, model=model)
                    rates.setdefault((label, kind, half, name), []).append(result.decode_tps if result.ok else 0.0)
                if label.startswith("homellm"):
                    for streams in LOADS:
                        loads.setdefault((label, streams), []).append(load(server.base_url, streams, model))
            console.print(f"round {round_no + 1}/{args.rounds} done")
        drafted, accepted = acceptance(servers["homellm --spec ngram"].base_url)
    finally:
        for server in servers.values():
            server.stop()
    report(rates, loads, list(servers), tasks, drafted, accepted, args.json)


def report(rates: dict, loads: dict, labels: list[str], tasks: list, drafted: int, accepted: int,
           as_json: bool) -> None:
    median = {key: statistics.median(values) for key, values in rates.items()}
    ratio = {key: median[key] / median[("homellm", *key[1:])] for key in median if median[("homellm", *key[1:])]}
    load_median = {key: statistics.median(values) for key, values in loads.items()}
    summary: dict[str, float] = {}
    for kind in ("copying", "free text"):
        for half in ("tune", "held-out"):
            keys = [("homellm --spec ngram", k, h, n) for k, h, n, _, _ in tasks if (k, h) == (kind, half)]
            summary[f"{kind} {half}: spec / none"] = statistics.median(ratio[key] for key in keys)
            if NGRAM_MOD in labels:
                summary[f"{kind} {half}: spec / llama-server ngram-mod"] = statistics.median(
                    median[key] / median[(NGRAM_MOD, *key[1:])] for key in keys)
    for streams in LOADS:
        summary[f"{streams} streams: spec / none"] = (load_median[("homellm --spec ngram", streams)]
                                                     / load_median[("homellm", streams)])
    result = {"decode_tps": {" | ".join(key): round(value, 1) for key, value in median.items()},
              "loads_tps": {f"{label} | {streams}": round(value, 1) for (label, streams), value in load_median.items()},
              "summary": {key: round(value, 3) for key, value in summary.items()},
              "drafted": drafted, "accepted": accepted,
              "acceptance": round(accepted / drafted, 3) if drafted else None}
    if as_json:
        print(json.dumps(result, indent=2))
        return
    console = Console()
    table = Table("kind", "half", "prompt", *labels, "spec / none", title="decode tokens/s, one stream (median)")
    for kind, half, name, _, _ in tasks:
        table.add_row(kind, half, name, *(f"{median[(label, kind, half, name)]:.1f}" for label in labels),
                      f"{ratio[('homellm --spec ngram', kind, half, name)]:.2f}x")
    console.print(table)
    loads_table = Table("streams", "homellm", "homellm --spec ngram", "ratio", title="aggregate tokens/s (median)")
    for streams in LOADS:
        plain, spec = load_median[("homellm", streams)], load_median[("homellm --spec ngram", streams)]
        loads_table.add_row(str(streams), f"{plain:.1f}", f"{spec:.1f}", f"{spec / plain:.2f}x")
    console.print(loads_table)
    for key, value in summary.items():
        console.print(f"{key}: {value:.2f}x")
    console.print(f"drafted {drafted}, accepted {accepted} ({result['acceptance']})")


if __name__ == "__main__":
    main()
