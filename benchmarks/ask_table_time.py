"""What one `homellm ask --table` question costs on a 1,000-row CSV, with the built-in model.

The table is made here (seeded, 1,000 rows: a package name, its installed size in kB, a section and
a priority), like the 825-row package list the tools issue was first tried on. Each question is:
- asked as a user asks it, `homellm ask --table FILE "question"` in a fresh process (model load,
  table load, the tool steps, the answer), timed from outside, `--runs` times;
- asked again in this process with the model already loaded, every model turn counted: prompt
  tokens, tokens generated, seconds in prompt evaluation and in decoding, and the table's load.
Prints the median of each and what the time goes to, and whether each answer holds the value
reckoned from the file with the standard library; `--json` prints the same as JSON.

    PYTHONPATH=src .venv/bin/python benchmarks/ask_table_time.py [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

from homellm.engine.llama import EngineOptions
from homellm.generation import ResponseFormat, SamplingParams
from homellm.models.builtin import BUILTIN_NAME, builtin_model_path
from homellm.models.resolve import ModelRef
from homellm.scheduler import Scheduler
from homellm.tools.loop import run_loop
from homellm.tools.toolbox import Toolbox

ROWS = 1000
SECTIONS = ["libs", "admin", "utils", "net", "python", "devel", "x11", "gnome", "doc", "text", "shells"]
PRIORITIES = ["required", "important", "standard", "optional"]
QUESTIONS = [
    "How many rows does the table have?",
    "Which section has the most rows?",
    "What is the largest installed size?",
    "Which package has the largest installed_size_kb?",
    "How many packages are in the net section?",
    "How many distinct sections are there?",
    "What is the total installed size?",
]
HOMELLM = str(Path(sys.executable).with_name("homellm"))


def write_table(path: Path) -> Path:
    """The 1,000-row package table, the same every run."""
    rng = random.Random(22)
    stems = ["lib", "py", "gir", "x", "gnome", "fonts", "perl", "node", "ruby", "tex"]
    words = ["core", "utils", "common", "data", "bin", "dev", "doc", "tools", "base", "extra", "gtk", "ssl"]
    names: set[str] = set()
    lines = ["package,installed_size_kb,section,priority"]
    while len(names) < ROWS:
        name = f"{rng.choice(stems)}{rng.choice(words)}-{rng.choice(words)}{rng.randint(0, 99)}"
        if name in names:
            continue
        names.add(name)
        size = int(rng.lognormvariate(6.5, 1.6))
        lines.append(f"{name},{size},{rng.choice(SECTIONS)},{rng.choices(PRIORITIES, [1, 2, 3, 12])[0]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def expected(table: Path) -> dict[str, str]:
    """Each question's answer, reckoned from the file without DuckDB."""
    with table.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    sizes = [int(r["installed_size_kb"]) for r in rows]
    sections = [r["section"] for r in rows]
    biggest = max(rows, key=lambda r: int(r["installed_size_kb"]))
    answers = [len(rows), max(set(sections), key=sections.count), max(sizes), biggest["package"],
               sections.count("net"), len(set(sections)), sum(sizes)]
    return {q: str(a) for q, a in zip(QUESTIONS, answers, strict=True)}


def cold(table: Path, question: str, home: Path) -> float:
    """Seconds for `homellm ask --table` in a fresh process, as a user runs it."""
    env = {**os.environ, "HOMELLM_HOME": str(home)}
    start = time.perf_counter()
    done = subprocess.run([HOMELLM, "ask", "--table", str(table), "--temperature", "0", question], env=env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"ask failed: {done.stderr.strip()}")
    return time.perf_counter() - start


async def warm(scheduler: Scheduler, table: Path, question: str) -> dict[str, Any]:
    """One question in this process, the model loaded: the table's load and each model turn's cost."""
    turns: list[dict[str, Any]] = []

    async def chat(messages: list[dict[str, Any]], response_format: ResponseFormat, max_tokens: int,
                   tools: list[dict[str, Any]] | None = None) -> str:
        params = SamplingParams(max_tokens=max_tokens, temperature=0, seed=0, repeat_penalty=1.0,
                                response_format=response_format)
        text, finished = await (await scheduler.chat(BUILTIN_NAME, messages, params, tools=tools)).collect()
        turns.append({"prompt_tokens": finished.prompt_tokens, "cached_tokens": finished.cached_tokens,
                      "generated": finished.completion_tokens, "prompt_s": finished.prompt_seconds,
                      "decode_s": finished.decode_seconds})
        return text

    start = time.perf_counter()
    toolbox = Toolbox([table])
    tools, context = toolbox.tools(question), toolbox.context()
    loaded = time.perf_counter() - start
    result = await run_loop(chat, question, tools, context)
    toolbox.close()
    total = time.perf_counter() - start
    return {"question": question, "seconds": total, "table_load_s": loaded, "turns": turns,
            "steps": len(result.steps), "answer": result.answer}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def summarize(colds: dict[str, list[float]], warms: list[dict[str, Any]], load_s: float,
              answers: dict[str, str]) -> dict[str, Any]:
    turns = [t for w in warms for t in w["turns"]]
    per_question = [{"question": w["question"], "cold_s": median(colds[w["question"]]), "warm_s": w["seconds"],
                     "turns": len(w["turns"]), "prompt_tokens": sum(t["prompt_tokens"] for t in w["turns"]),
                     "generated": sum(t["generated"] for t in w["turns"]), "answer": w["answer"],
                     "expected": answers[w["question"]], "right": answers[w["question"]] in w["answer"]}
                    for w in warms]
    return {
        "rows": ROWS, "questions": per_question, "right": sum(q["right"] for q in per_question),
        "median_cold_s": median([q["cold_s"] for q in per_question]),
        "median_warm_s": median([q["warm_s"] for q in per_question]),
        "model_load_s": load_s,
        "median_table_load_s": median([w["table_load_s"] for w in warms]),
        "median_turns": median([len(w["turns"]) for w in warms]),
        "median_prompt_tokens_per_turn": median([t["prompt_tokens"] for t in turns]),
        "median_cached_tokens_per_turn": median([t["cached_tokens"] for t in turns]),
        "median_generated_per_turn": median([t["generated"] for t in turns]),
        "prompt_s_share": sum(t["prompt_s"] for t in turns) / max(sum(w["seconds"] for w in warms), 1e-9),
        "decode_s_share": sum(t["decode_s"] for t in turns) / max(sum(w["seconds"] for w in warms), 1e-9),
    }


def report(out: dict[str, Any]) -> None:
    console = Console()
    table = RichTable(title=f"ask --table on a {out['rows']:,}-row CSV (built-in model, temperature 0)")
    for column in ("question", "cold s", "warm s", "turns", "prompt tok", "generated", "answer", "right"):
        table.add_column(column)
    for q in out["questions"]:
        table.add_row(q["question"], f"{q['cold_s']:.1f}", f"{q['warm_s']:.1f}", str(q["turns"]),
                      str(q["prompt_tokens"]), str(q["generated"]), q["answer"][:70],
                      "yes" if q["right"] else f"no ({q['expected']})")
    console.print(table)
    console.print(
        f"right: {out['right']}/{len(out['questions'])}; "
        f"median per question: {out['median_cold_s']:.1f} s in a fresh process, {out['median_warm_s']:.1f} s with "
        f"the model loaded (model load {out['model_load_s']:.1f} s, table load {out['median_table_load_s'] * 1000:.0f} ms); "
        f"{out['median_turns']:.0f} model turns, {out['median_prompt_tokens_per_turn']:.0f} prompt tokens a turn "
        f"({out['median_cached_tokens_per_turn']:.0f} from the cache), {out['median_generated_per_turn']:.0f} "
        f"generated; prompt evaluation {out['prompt_s_share']:.0%} and decoding {out['decode_s_share']:.0%} "
        "of the warm time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="fresh-process runs per question (median)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        table = write_table(Path(tmp) / "packages.csv")
        colds = {q: [cold(table, q, Path(tmp) / "home") for _ in range(args.runs)] for q in QUESTIONS}
        scheduler = Scheduler()
        start = time.perf_counter()
        scheduler.add(ModelRef(BUILTIN_NAME, builtin_model_path()), EngineOptions(n_ctx=4096)).wait_loaded()
        load_s = time.perf_counter() - start
        try:
            warms = [asyncio.run(warm(scheduler, table, q)) for q in QUESTIONS]
        finally:
            scheduler.close()
        out = summarize(colds, warms, load_s, expected(table))
    print(json.dumps(out, indent=2)) if args.json else report(out)


if __name__ == "__main__":
    main()
