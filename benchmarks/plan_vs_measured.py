"""The planner's prediction for the built-in model on this machine, beside a measurement of it.

Prints, in one run: the planner's decode tokens/s at depth 0 and at 1,536 tokens and its prompt
processing rate; the same three measured with raw llama-cpp-python (medians of --repeat rounds);
and the ratios predicted / measured.

Usage: python benchmarks/plan_vs_measured.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from llama_cpp import Llama

from homellm.engine.llama import default_threads
from homellm.hardware.detect import detect
from homellm.models.builtin import builtin_model_path
from homellm.models.gguf import read_model_facts
from homellm.models.shape import shape_from_facts
from homellm.planner.plan import plan

CTX = 2048
DEEP = 1536
N_DECODE = 96


def decode_rate(llm: Llama, prompt: list[int]) -> float:
    """Tokens per second of one-token decode steps after `prompt` (prompt time excluded).

    The token fed back is fixed: sampling takes no part in what is measured, the decode step does.
    """
    llm.reset()
    llm.eval(prompt)
    start = time.perf_counter()
    for _ in range(N_DECODE):
        llm.eval([prompt[-1]])
    return N_DECODE / (time.perf_counter() - start)


def prefill_rate(llm: Llama, prompt: list[int]) -> float:
    llm.reset()
    start = time.perf_counter()
    llm.eval(prompt)
    return len(prompt) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    path = builtin_model_path()
    report = detect(probe_seconds=1.0)
    shape = shape_from_facts("smollm2:135m", read_model_facts(path))
    predicted = plan(shape, report.hardware, CTX)
    by_depth = dict(predicted.speed_by_depth)
    deep_prediction = plan(shape, report.hardware, DEEP).speed_by_depth[-1][1]

    llm = Llama(str(path), n_ctx=CTX, n_batch=512, n_threads=default_threads(), verbose=False)
    text = " ".join(str(i) for i in range(2000))
    tokens = llm.tokenize(text.encode())
    short, deep, batch = tokens[:8], tokens[:DEEP], tokens[:512]
    shallow, deeper, prefill = [], [], []
    for _ in range(args.repeat):
        shallow.append(decode_rate(llm, short))
        deeper.append(decode_rate(llm, deep))
        prefill.append(prefill_rate(llm, batch))
    rows = [("decode, depth 0", by_depth[0], statistics.median(shallow)),
            (f"decode, depth {DEEP}", deep_prediction, statistics.median(deeper)),
            ("prompt processing, 512 tokens", predicted.prefill_tps, statistics.median(prefill))]
    host = report.hardware.host
    print(f"{host.name}, {default_threads()} threads, RAM read test {host.bandwidth_gbs:.1f} GB/s; "
          f"built-in model, medians of {args.repeat}")
    print(f"{'':32} {'predicted':>10} {'measured':>10} {'ratio':>7}")
    for label, guess, real in rows:
        print(f"{label:32} {guess:10.1f} {real:10.1f} {guess / real:7.2f}")


if __name__ == "__main__":
    main()
