"""Questions with known answers over public datasets that packages ship, answered by the built-in
model with homellm's tools (`homellm ask --table/--json-file`) and by the same model from the
question alone.

Datasets (install the data packages without their pandas dependency):
    .venv/bin/pip install --no-deps palmerpenguins vega_datasets
- palmerpenguins' penguins.csv (344 rows), vega_datasets' cars.json (406), iris.json (150),
  seattle-weather.csv (1,461) and local_datasets.json (a JSON document).
The expected answers are computed here from the files with the standard library (csv, json,
statistics), not with DuckDB, so the tool's SQL is checked against an independent reckoning.

An answer is right when it contains the expected value: a number within 1% (or equal after
rounding to the shown decimals), or the expected word. Prints accuracy with and without tools,
the rate of tool calls that parse and validate against their schema, and each failure.

    .venv/bin/python benchmarks/tools_qa.py [--only N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import importlib.util
import json
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
from rich.console import Console
from rich.table import Table as RichTable

from homellm.engine.llama import EngineOptions
from homellm.generation import ResponseFormat
from homellm.models.builtin import BUILTIN_NAME, builtin_model_path
from homellm.models.resolve import ModelRef
from homellm.scheduler import Scheduler
from homellm.tools.loop import run_loop, scheduler_chat
from homellm.tools.toolbox import Toolbox


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{name} is not installed: .venv/bin/pip install --no-deps palmerpenguins vega_datasets")
    return Path(list(spec.submodule_search_locations)[0])


@dataclass(frozen=True)
class Question:
    text: str
    file: Path
    expected: Any  # a number or a word
    kind: str  # "table" or "json"


def rows_csv(path: Path) -> list[dict[str, Any]]:
    def value(text: str) -> Any:
        if text in ("", "NA"):
            return None
        try:
            return float(text)
        except ValueError:
            return text
    with path.open() as handle:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def numbers(rows: list[dict[str, Any]], column: str, where: Callable[[dict], bool] = lambda r: True) -> list[float]:
    return [r[column] for r in rows if where(r) and isinstance(r[column], float | int)]


def count(rows: list[dict[str, Any]], where: Callable[[dict], bool] = lambda r: True) -> int:
    return sum(1 for r in rows if where(r))


def most_common(rows: list[dict[str, Any]], column: str) -> str:
    return Counter(r[column] for r in rows if r[column] is not None).most_common(1)[0][0]


def questions() -> list[Question]:
    pp = package_dir("palmerpenguins") / "data" / "penguins.csv"
    vega = package_dir("vega_datasets")
    cars_path, iris_path = vega / "_data" / "cars.json", vega / "_data" / "iris.json"
    weather_path, index_path = vega / "_data" / "seattle-weather.csv", vega / "local_datasets.json"
    p = rows_csv(pp)
    cars = json.loads(cars_path.read_text())
    iris = json.loads(iris_path.read_text())
    w = rows_csv(weather_path)
    index = json.loads(index_path.read_text())
    sp = lambda s: (lambda r: r["species"] == s)  # noqa: E731
    org = lambda o: (lambda r: r["Origin"] == o)  # noqa: E731
    table = lambda text, path, value: Question(text, path, value, "table")  # noqa: E731
    return [
        table("How many rows does the table have?", pp, len(p)),
        table("How many penguins are of species Adelie?", pp, count(p, sp("Adelie"))),
        table("How many penguins live on the island Biscoe?", pp, count(p, lambda r: r["island"] == "Biscoe")),
        table("How many penguins live on Dream?", pp, count(p, lambda r: r["island"] == "Dream")),
        table("What is the mean body mass of Gentoo penguins?", pp,
              statistics.mean(numbers(p, "body_mass_g", sp("Gentoo")))),
        table("What is the largest flipper length?", pp, max(numbers(p, "flipper_length_mm"))),
        table("What is the smallest bill length?", pp, min(numbers(p, "bill_length_mm"))),
        table("What is the mean flipper length?", pp, statistics.mean(numbers(p, "flipper_length_mm"))),
        table("How many penguins were recorded in the year 2009?", pp, count(p, lambda r: r["year"] == 2009)),
        table("What is the heaviest body mass of a Chinstrap penguin?", pp,
              max(numbers(p, "body_mass_g", sp("Chinstrap")))),
        table("How many different species are there?", pp, len({r["species"] for r in p})),
        table("How many female penguins are there?", pp, count(p, lambda r: r["sex"] == "female")),
        table("What is the mean bill depth of Adelie penguins?", pp,
              statistics.mean(numbers(p, "bill_depth_mm", sp("Adelie")))),
        table("Which island has the most penguins?", pp, most_common(p, "island")),
        table("How many cars are in the table?", cars_path, len(cars)),
        table("What is the maximum horsepower?", cars_path, max(numbers(cars, "Horsepower"))),
        table("What is the mean miles per gallon?", cars_path, statistics.mean(numbers(cars, "Miles_per_Gallon"))),
        table("How many cars come from Japan?", cars_path, count(cars, org("Japan"))),
        table("How many cars come from Europe?", cars_path, count(cars, org("Europe"))),
        table("What is the mean weight in lbs of cars from USA?", cars_path,
              statistics.mean(numbers(cars, "Weight_in_lbs", org("USA")))),
        table("What is the lowest acceleration?", cars_path, min(numbers(cars, "Acceleration"))),
        table("How many different origins are there?", cars_path, len({r["Origin"] for r in cars})),
        table("What is the largest displacement?", cars_path, max(numbers(cars, "Displacement"))),
        table("Which origin has the most cars?", cars_path, most_common(cars, "Origin")),
        table("How many rows does the iris table have?", iris_path, len(iris)),
        table("What is the mean petal length of setosa?", iris_path,
              statistics.mean(numbers(iris, "petalLength", sp("setosa")))),
        table("What is the largest sepal width?", iris_path, max(numbers(iris, "sepalWidth"))),
        table("How many flowers are of species virginica?", iris_path, count(iris, sp("virginica"))),
        table("What is the smallest petal width?", iris_path, min(numbers(iris, "petalWidth"))),
        table("How many different species are there in the iris table?", iris_path, len({r["species"] for r in iris})),
        table("How many days are in the table?", weather_path, len(w)),
        table("What is the highest temp_max?", weather_path, max(numbers(w, "temp_max"))),
        table("How many days had weather rain?", weather_path, count(w, lambda r: r["weather"] == "rain")),
        table("How many days had weather snow?", weather_path, count(w, lambda r: r["weather"] == "snow")),
        table("What is the mean wind?", weather_path, statistics.mean(numbers(w, "wind"))),
        table("What is the maximum precipitation?", weather_path, max(numbers(w, "precipitation"))),
        table("What is the mean temp_min?", weather_path, statistics.mean(numbers(w, "temp_min"))),
        table("Which weather is the most common?", weather_path, most_common(w, "weather")),
        Question("How many datasets does the JSON file list?", index_path, len(index), "json"),
        Question("Which file holds the cars dataset?", index_path, index["cars"], "json"),
        Question("Which file holds the iris dataset?", index_path, index["iris"], "json"),
    ]


_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def is_right(answer: str, expected: Any) -> bool:
    """The expected value is in the answer: a number within 1% or equal when rounded as shown, or the word."""
    if isinstance(expected, str):
        return expected.lower() in answer.lower()
    for match in _NUMBER.findall(answer):
        shown = match.replace(",", "")
        value = float(shown)
        decimals = len(shown.split(".")[1]) if "." in shown else 0
        if abs(value - expected) <= 0.01 * abs(expected) or round(float(expected), decimals) == value:
            return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", type=int, help="the first N questions")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    console = Console(stderr=True)
    asked = questions()[: args.only]
    scheduler = Scheduler()
    scheduler.add(ModelRef(BUILTIN_NAME, builtin_model_path()), EngineOptions(n_ctx=4096)).wait_loaded()

    chat = scheduler_chat(scheduler, BUILTIN_NAME, temperature=0, seed=1)

    results = []
    valid = made = 0
    started = time.perf_counter()
    for number, q in enumerate(asked, start=1):
        toolbox = Toolbox([q.file] if q.kind == "table" else [], [q.file] if q.kind == "json" else [])
        tools = toolbox.tools(q.text)
        with_tools = asyncio.run(run_loop(chat, q.text, tools, toolbox.context()))
        toolbox.close()
        schemas = {t.name: t.parameters for t in tools}
        for step in with_tools.steps:
            made += 1
            try:
                jsonschema.validate(step.arguments, schemas[step.tool])
                valid += 1
            except jsonschema.ValidationError:
                pass
        unparsed = with_tools.calls_made - with_tools.calls_parsed
        made += unparsed
        alone = asyncio.run(chat([{"role": "user", "content": q.text}], ResponseFormat(), 80)).strip()
        results.append({"question": q.text, "file": q.file.name, "expected": q.expected,
                        "with_tools": with_tools.answer, "right_with_tools": is_right(with_tools.answer, q.expected),
                        "alone": alone, "right_alone": is_right(alone, q.expected),
                        "steps": [{"tool": s.tool, "arguments": s.arguments, "ok": s.ok, "result": s.result[:300]}
                                  for s in with_tools.steps]})
        mark = "ok " if results[-1]["right_with_tools"] else "NO "
        console.print(f"{number:2}/{len(asked)} {mark} {q.text}", highlight=False)
    scheduler.close()
    seconds = time.perf_counter() - started
    right_tools = sum(r["right_with_tools"] for r in results)
    right_alone = sum(r["right_alone"] for r in results)
    summary = {"questions": len(results), "right_with_tools": right_tools, "right_alone": right_alone,
               "accuracy_with_tools": right_tools / len(results), "accuracy_alone": right_alone / len(results),
               "tool_calls": made, "tool_calls_valid": valid, "valid_rate": valid / made if made else None,
               "seconds": seconds}
    if args.json:
        print(json.dumps({"summary": summary, "results": results}, indent=2, ensure_ascii=False, default=str))
        return
    table = RichTable(title="homellm ask with tools vs the same model alone (built-in SmolLM2-135M)")
    for column in ("", "right", "accuracy"):
        table.add_column(column, justify="left" if not column else "right")
    table.add_row("with tools", f"{right_tools}/{len(results)}", f"{summary['accuracy_with_tools']:.0%}")
    table.add_row("question alone", f"{right_alone}/{len(results)}", f"{summary['accuracy_alone']:.0%}")
    Console().print(table)
    Console().print(f"tool calls that parse and validate: {valid}/{made}"
                    f" ({summary['valid_rate']:.0%})" if made else "no tool calls")
    Console().print(f"{seconds:.0f} s in all")
    for r in results:
        if not r["right_with_tools"]:
            steps = "; ".join(f"{s['tool']}({json.dumps(s['arguments'])}) -> {s['result'][:120]}" for s in r["steps"])
            Console().print(f"[bold]failed:[/] {r['question']} (expected {r['expected']}) answer: "
                            f"{r['with_tools'][:160]!r} steps: {steps}", highlight=False, soft_wrap=True)


if __name__ == "__main__":
    main()
