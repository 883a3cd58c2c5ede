"""First questions: do answers end, and how long does each take, with homellm's defaults against none?

Each question is asked alone, one at a time, at temperature 0, as `homellm chat` asks it: through the
scheduler, with the 1,024-token answer cap. Three settings in one run, on the same loaded model:

- baseline: no repeat penalty, no loop guard (homellm before it had sampling defaults);
- loop guard only: the baseline with chat's loop guard (a span said 8 times in a row ends the answer);
- homellm: chat's defaults, the model's sampling (a repeat penalty of 1.1 over the answer's last
  64 tokens for the built-in model) and the loop guard (a span said 8 times in a row).

The questions come in two halves: the 21 the test suite asks (tests/cli/test_first_questions.py),
which the defaults were checked on, and 21 held out, never looked at while choosing them.

    .venv/bin/python benchmarks/first_questions.py [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from homellm.cli.chat import terminal_sampling
from homellm.cli.options import DEFAULT_ANSWER_TOKENS, DEFAULT_LOOP_GUARD
from homellm.cli.output import new_table, out
from homellm.engine.llama import EngineOptions
from homellm.generation import SamplingParams
from homellm.models.builtin import BUILTIN_NAME, builtin_model_path
from homellm.models.resolve import ModelRef
from homellm.scheduler import Scheduler

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "cli"))
from test_first_questions import FIRST_QUESTIONS  # noqa: E402

HELD_OUT = [
    "What is the capital of Italy?", "Give me a recipe for pancakes.", "What is a black hole?",
    "Write a limerick about a dog.", "How many legs does a spider have?", "What is the opposite of hot?",
    "Describe a sunset in two sentences.", "What is the tallest mountain in the world?",
    "How do plants make food?", "Write a short thank-you note to a friend.", "What is 100 divided by 4?",
    "Who painted the Mona Lisa?", "Give me a fun fact about octopuses.", "What should I name my goldfish?",
    "How do I tie a shoelace?", "What is the weather like on Mars?", "Recommend a book for a long flight.",
    "What does HTML stand for?", "Write a motivational quote.", "What language is spoken in Brazil?",
    "How can I learn to play the guitar?",
]


@dataclass(frozen=True)
class Answer:
    """One question's answer under one setting."""

    question: str
    setting: str
    seconds: float
    tokens: int
    ended: str  # "itself", "cap", "loop guard"


def ask(scheduler: Scheduler, question: str, setting: str, params: SamplingParams) -> Answer:
    async def one() -> Answer:
        start = time.perf_counter()
        generation = await scheduler.chat(BUILTIN_NAME, [{"role": "user", "content": question}], params)
        _, done = await generation.collect()
        ended = "loop guard" if done.looped else "itself" if done.reason == "stop" else "cap"
        return Answer(question, setting, time.perf_counter() - start, done.completion_tokens, ended)

    return asyncio.run(one())


def summary(answers: list[Answer]) -> dict[str, float | int]:
    seconds = [a.seconds for a in answers]
    return {"questions": len(answers), "ended_by_itself": sum(a.ended == "itself" for a in answers),
            "hit_the_cap": sum(a.ended == "cap" for a in answers),
            "ended_by_loop_guard": sum(a.ended == "loop guard" for a in answers),
            "tokens": sum(a.tokens for a in answers), "median_s": statistics.median(seconds), "max_s": max(seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    args = parser.parse_args()
    settings = {
        "baseline": SamplingParams(max_tokens=DEFAULT_ANSWER_TOKENS, temperature=0.0, repeat_penalty=1.0,
                                   cap_to_context=True),
        "loop guard only": terminal_sampling(DEFAULT_ANSWER_TOKENS, 0.0, None, DEFAULT_LOOP_GUARD, repeat_penalty=1.0),
        "homellm": terminal_sampling(DEFAULT_ANSWER_TOKENS, 0.0, None, DEFAULT_LOOP_GUARD),
    }
    halves = {"checked (the suite's)": FIRST_QUESTIONS, "held out": HELD_OUT}
    scheduler = Scheduler()
    scheduler.add(ModelRef(BUILTIN_NAME, builtin_model_path()), EngineOptions(n_ctx=4096)).wait_loaded()
    answers: dict[tuple[str, str], list[Answer]] = {}
    try:
        for half, questions in halves.items():
            for question in questions:  # the settings take turns, so a slower minute hurts both alike
                for setting, params in settings.items():
                    answers.setdefault((half, setting), []).append(ask(scheduler, question, setting, params))
    finally:
        scheduler.close()
    if args.json:
        print(json.dumps({"summary": [{"half": h, "setting": s, **summary(a)} for (h, s), a in answers.items()],
                          "answers": [asdict(a) for rows in answers.values() for a in rows]}, indent=2))
        return
    table = new_table(title="first questions at temperature 0, one at a time, 1,024-token cap")
    for column in ("half", "setting", "ended by itself", "hit the cap", "loop guard", "tokens",
                   "median s", "max s"):
        table.add_column(column, justify="left" if column in ("half", "setting") else "right")
    for (half, setting), rows in answers.items():
        s = summary(rows)
        table.add_row(half, setting, f"{s['ended_by_itself']}/{s['questions']}", str(s["hit_the_cap"]),
                      str(s["ended_by_loop_guard"]), f"{s['tokens']:,}", f"{s['median_s']:.1f}", f"{s['max_s']:.1f}")
    out.print(table)
    slow = sorted((a for rows in answers.values() for a in rows if a.setting == "homellm"),
                  key=lambda a: -a.seconds)[:3]
    for a in slow:
        print(f"slowest with homellm's defaults: {a.question!r} {a.seconds:.1f} s, {a.tokens} tokens, ended {a.ended}")


if __name__ == "__main__":
    main()
