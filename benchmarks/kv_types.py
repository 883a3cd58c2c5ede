"""KV cache types on the built-in model: memory, decode rate at depth, and what each costs in answers.

For each type (F16, Q8_0, Q4_0 by default), in its own process so that memory does not carry over:
the KV bytes llama.cpp holds for one sequence filled to --depth tokens (its serialized state) and
the planner's prediction of them, the process's resident memory then, and the decode rate of
one-token steps at that depth (median of --rounds, the types interleaved round by round). Then
the KL divergence of each quantized type against an F16 cache on the same model (`homellm eval
--kv-type`), on two texts: the built-in one and, held out, the README. Ratios are against F16 in
the same run.

    .venv/bin/python benchmarks/kv_types.py [--types F16,Q8_0,Q4_0] [--depth 4096] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from homellm.engine.llama import EngineOptions, LlamaEngine
from homellm.models.builtin import BUILTIN_NAME, builtin_model_path
from homellm.models.gguf import read_model_facts
from homellm.models.shape import shape_from_facts
from homellm.planner.memory import kv_cache_bytes
from homellm.quant.evaluate import evaluate
from homellm.quant.texts import builtin_text

STEPS = 64
README = Path(__file__).resolve().parents[1] / "README.md"


def measure(kv_type: str, depth: int) -> dict[str, float]:
    """In a child process: fill one sequence to `depth`, then time STEPS one-token decodes there."""
    engine = LlamaEngine(builtin_model_path(), EngineOptions(n_ctx=depth + STEPS + 64, kv_type=kv_type))
    try:
        text_tokens = engine.tokenize(builtin_text())
        context = (text_tokens * (depth // len(text_tokens) + 1))[:depth]
        engine.fill(context)
        state = engine.sequence_state_bytes(0)
        seconds = engine.time_steps(context[-1], STEPS)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {"state_bytes": state, "decode_tps": STEPS / seconds, "peak_rss_bytes": rss}
    finally:
        engine.close()


def _child(kv_type: str, depth: int, results: Any) -> None:
    results.put(measure(kv_type, depth))


def in_child(kv_type: str, depth: int) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_child, args=(kv_type, depth, results))
    child.start()
    measured = results.get(timeout=600)
    child.join()
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", default="F16,Q8_0,Q4_0")
    parser.add_argument("--depth", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunks", type=int, default=8, help="512-token chunks of each text for the KL")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    types = [t.strip().upper() for t in args.types.split(",") if t.strip()]
    shape = shape_from_facts(BUILTIN_NAME, read_model_facts(builtin_model_path()))
    runs: dict[str, list[dict[str, float]]] = {t: [] for t in types}
    for _ in range(args.rounds):
        for kv_type in types:
            runs[kv_type].append(in_child(kv_type, args.depth))
    texts = {"built-in text": builtin_text(), "README (held out)": README.read_text(encoding="utf-8")}
    rows = []
    for kv_type in types:
        row: dict[str, Any] = {
            "kv_type": kv_type,
            "kv_bytes": statistics.median(r["state_bytes"] for r in runs[kv_type]),
            "predicted_kv_bytes": kv_cache_bytes(shape, args.depth, kv_type),
            "peak_rss_bytes": statistics.median(r["peak_rss_bytes"] for r in runs[kv_type]),
            "decode_tps": statistics.median(r["decode_tps"] for r in runs[kv_type]),
            "decode_tps_runs": [round(r["decode_tps"], 1) for r in runs[kv_type]],
        }
        if kv_type != "F16":
            for name, text in texts.items():
                result = evaluate(builtin_model_path(), text, 512, args.chunks, kv_type=kv_type)
                row[f"kl_mean {name}"] = result.kl_mean
                row[f"top1 {name}"] = result.top1_agreement
        rows.append(row)
    base = next((r for r in rows if r["kv_type"] == "F16"), rows[0])
    for row in rows:
        row["kv_bytes_ratio"] = row["kv_bytes"] / base["kv_bytes"]
        row["decode_ratio"] = row["decode_tps"] / base["decode_tps"]
    if args.json:
        print(json.dumps({"depth": args.depth, "rounds": args.rounds, "rows": rows}, indent=2))
        return
    table = Table(title=f"{BUILTIN_NAME}, one sequence at depth {args.depth:,}, {args.rounds} rounds (medians)")
    for column in ("KV type", "KV MiB (x F16)", "planner MiB", "peak RSS MiB", "decode tok/s (x F16)",
                   "KL built-in text", "KL README (held out)", "same top token"):
        table.add_column(column, justify="left" if column == "KV type" else "right")
    for row in rows:
        kl = [row.get(f"kl_mean {name}") for name in texts]
        top = [row.get(f"top1 {name}") for name in texts]
        table.add_row(row["kv_type"], f"{row['kv_bytes'] / 2**20:.1f} ({row['kv_bytes_ratio']:.2f})",
                      f"{row['predicted_kv_bytes'] / 2**20:.1f}", f"{row['peak_rss_bytes'] / 2**20:.0f}",
                      f"{row['decode_tps']:.1f} ({row['decode_ratio']:.2f})",
                      *(f"{v:.5f}" if v is not None else "-" for v in kl),
                      " / ".join(f"{v:.1%}" for v in top if v is not None) or "-")
    Console(width=160).print(table)
    print("decode tok/s by round: " + "; ".join(f"{r['kv_type']} {r['decode_tps_runs']}" for r in rows))


if __name__ == "__main__":
    main()
