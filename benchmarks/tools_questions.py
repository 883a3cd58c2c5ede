"""Generated table questions with answers computed from the data, split by table into a tuning half
and a held-out half (issue 22, item 5).

Each question names one table, carries one operation tag (see OPERATIONS) and an expected answer
reckoned here with the standard library only (csv, json, math, statistics), never with DuckDB, so
that the tools' SQL is checked against an independent computation. Nulls are skipped the way
DuckDB's aggregates skip them: a row count counts every row; count distinct, sum, mean, min, max
and comparisons ignore nulls; in a CSV "NA", "N/A", "NaN" and "" are nulls (as homellm reads them).

Questions are worded from the table's own column names: sometimes as written (`body_mass_g`),
sometimes in words ("body mass"), sometimes with the number changed ("islands" for `island`), with
several phrasings per operation. Everything is drawn from `random.Random` seeded per table, so the
list is the same on every call and adding a table changes no other table's questions.

The tables come from packages installed without pandas (`pip install --no-deps palmerpenguins
vega_datasets`); the files are read directly, found through importlib like tools_qa.py does.
- tuning (7 tables, 329 questions): palmerpenguins' penguins.csv (344 rows) and vega_datasets'
  cars.json (406), iris.json (150), seattle-weather.csv (1,461), burtin.json (16), driving.json (55),
  ohlc.json (44); the first four are the ones the legacy questions were tuned on.
- held-out (6 tables, 245 questions): see HELD_OUT.

Where a question could be read two ways it is left out: an extreme value several rows share, a top
group that ties, a tie at the cut of a top-n, a threshold equal to a cell, a `contains` whose count
changes with case.

    .venv/bin/python benchmarks/tools_questions.py [--half tuning|held-out] [--show N]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import random
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SEED = 22

OPERATIONS = (
    "count_rows", "count_distinct", "sum", "mean", "min", "max", "argmax", "argmin",
    "group_count", "group_agg", "filter_eq", "filter_lt", "filter_gt", "filter_between",
    "filter_contains", "filter_agg", "top_n",
)

# The most questions of each operation drawn from one table (fewer where the table has fewer).
QUOTA = {
    "count_rows": 2, "count_distinct": 2, "sum": 3, "mean": 3, "min": 3, "max": 3, "argmax": 3,
    "argmin": 3, "group_count": 3, "group_agg": 4, "filter_eq": 4, "filter_lt": 3, "filter_gt": 3,
    "filter_between": 3, "filter_contains": 3, "filter_agg": 5, "top_n": 4,
}

CSV_NULLS = frozenset({"NA", "N/A", "NaN", ""})


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{name} is not installed: .venv/bin/pip install --no-deps palmerpenguins vega_datasets")
    return Path(list(spec.submodule_search_locations)[0])


@dataclass(frozen=True)
class TableSpec:
    """A table and the roles of its columns: which name a row, which group, which hold measures."""

    name: str
    package: str
    path: str  # inside the package
    entity: tuple[str, str]  # what a row is: (plural, singular)
    numbers: tuple[str, ...]  # numeric columns for sum/mean/min/max, filters, argmax, top-n
    groups: tuple[str, ...] = ()  # text (or small integer) columns with few values: group-by, =, distinct
    labels: tuple[str, ...] = ()  # columns that name the row with an extreme value
    contains: tuple[str, ...] = ()  # text columns for `contains`
    no_sum: tuple[str, ...] = ()  # numeric columns whose total means nothing (years, coordinates)
    words: dict[str, str] = field(default_factory=dict)  # a column in words, where the split is not enough

    def file(self) -> Path:
        return package_dir(self.package) / self.path


TABLES: tuple[TableSpec, ...] = (
    # --- tuning half: the tables tools_qa.py's legacy questions came from, and a few more ---
    TableSpec("penguins", "palmerpenguins", "data/penguins.csv", ("penguins", "penguin"),
              numbers=("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"),
              groups=("species", "island", "sex", "year"), labels=("species", "island"),
              contains=("island", "species"), no_sum=("year",)),
    TableSpec("cars", "vega_datasets", "_data/cars.json", ("cars", "car"),
              numbers=("Miles_per_Gallon", "Cylinders", "Displacement", "Horsepower", "Weight_in_lbs",
                       "Acceleration"),
              groups=("Origin", "Cylinders"), labels=("Name",), contains=("Name",), no_sum=("Cylinders",),
              words={"Weight_in_lbs": "weight"}),
    TableSpec("iris", "vega_datasets", "_data/iris.json", ("flowers", "flower"),
              numbers=("sepalLength", "sepalWidth", "petalLength", "petalWidth"),
              groups=("species",), labels=("species",), contains=("species",)),
    TableSpec("seattle-weather", "vega_datasets", "_data/seattle-weather.csv", ("days", "day"),
              numbers=("precipitation", "temp_max", "temp_min", "wind"),
              groups=("weather",), labels=("weather",), contains=("weather",),
              words={"temp_max": "maximum temperature", "temp_min": "minimum temperature"}),
    TableSpec("burtin", "vega_datasets", "_data/burtin.json", ("bacteria", "bacterium"),
              numbers=("Penicillin", "Streptomycin", "Neomycin"),
              groups=("Gram_Staining", "Genus"), labels=("Bacteria",), contains=("Bacteria",)),
    TableSpec("driving", "vega_datasets", "_data/driving.json", ("records", "record"),
              numbers=("year", "miles", "gas"), groups=("side",), labels=("year",), no_sum=("year",)),
    TableSpec("ohlc", "vega_datasets", "_data/ohlc.json", ("days", "day"),
              numbers=("open", "high", "low", "close", "ret"), groups=("signal",), labels=("date",),
              contains=("signal",), words={"ret": "return"}),
    # --- held-out half (HELD_OUT below) ---
    TableSpec("airports", "vega_datasets", "_data/airports.csv", ("airports", "airport"),
              numbers=("latitude", "longitude"), groups=("state", "country"), labels=("name", "iata"),
              contains=("name", "city"), no_sum=("latitude", "longitude")),
    TableSpec("la-riots", "vega_datasets", "_data/la-riots.csv", ("people", "person"),
              numbers=("age", "longitude", "latitude"), groups=("gender", "race", "neighborhood", "type"),
              labels=("last_name", "neighborhood"), contains=("address", "neighborhood", "type"),
              no_sum=("longitude", "latitude")),
    TableSpec("stocks", "vega_datasets", "_data/stocks.csv", ("records", "record"),
              numbers=("price",), groups=("symbol",), labels=("date", "symbol"), contains=("date",)),
    TableSpec("barley", "vega_datasets", "_data/barley.json", ("records", "record"),
              numbers=("yield", "year"), groups=("variety", "site", "year"), labels=("variety", "site"),
              contains=("variety", "site"), no_sum=("year",)),
    TableSpec("iowa-electricity", "vega_datasets", "_data/iowa-electricity.csv", ("rows", "row"),
              numbers=("net_generation",), groups=("source",), labels=("year",), contains=("source",)),
    TableSpec("us-employment", "vega_datasets", "_data/us-employment.csv", ("months", "month"),
              numbers=("nonfarm", "private", "goods_producing", "construction", "manufacturing", "durable_goods",
                       "retail_trade", "information", "financial_activities", "leisure_and_hospitality",
                       "government", "nonfarm_change"),
              labels=("month",)),
)

# HELD-OUT TABLES. Nobody may look at these tables' questions, answers or per-question results while
# changing prompts, narrowing or grammars (src/homellm/tools/*): tune on the tuning half only, and read
# the held-out half's accuracy as a single figure per operation. A gap of more than 5 points between
# the halves means the tools were tuned to the data. Do not move a table between the halves.
HELD_OUT: frozenset[str] = frozenset({"airports", "la-riots", "stocks", "barley", "iowa-electricity", "us-employment"})
TUNING: frozenset[str] = frozenset(t.name for t in TABLES) - HELD_OUT


@dataclass(frozen=True)
class Question:
    text: str
    file: Path
    expected: Any  # a number, a word, or a list of them (every item must be in the answer)
    kind: str = "table"  # "table" or "json"
    operation: str = "legacy"
    table: str = ""
    half: str = "legacy"
    # what is asked, as data: {"op": ..., "column": ..., "where": [column, op, value], ...}; the test
    # recomputes every expected answer from it a second way (SQLite)
    query: dict[str, Any] | None = field(default=None, hash=False)


# ---------------------------------------------------------------- loading

_NUMERIC = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def load(path: Path) -> list[dict[str, Any]]:
    """The rows with None for nulls; a CSV column whose every non-null cell is a number holds numbers."""
    if path.suffix == ".json":
        rows = json.loads(path.read_text())
        return [{k: v for k, v in row.items()} for row in rows]
    with path.open(newline="") as handle:
        raw = [{k: (None if v in CSV_NULLS else v) for k, v in row.items()} for row in csv.DictReader(handle)]
    if not raw:
        return raw
    for column in raw[0]:
        cells = [r[column] for r in raw if r[column] is not None]
        if cells and all(_NUMERIC.fullmatch(c) for c in cells):
            integral = all(re.fullmatch(r"-?\d+", c) for c in cells)
            for r in raw:
                if r[column] is not None:
                    r[column] = int(r[column]) if integral else float(r[column])
    return raw


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def values(rows: list[dict[str, Any]], column: str, where: Callable[[dict], bool] = lambda r: True) -> list[Any]:
    return [r[column] for r in rows if r.get(column) is not None and where(r)]


def aggregate(how: str, xs: list[float]) -> float:
    if how == "sum":
        return sum(xs) if all(isinstance(x, int) for x in xs) else math.fsum(xs)
    if how == "mean":
        return statistics.fmean(xs)
    return min(xs) if how == "min" else max(xs)


# ---------------------------------------------------------------- wording

_UNITS = {"mm", "g", "lbs", "kg", "cm", "kb", "in", "of"}


def in_words(column: str, spec: TableSpec) -> str:
    """`body_mass_g` -> "body mass", `sepalLength` -> "sepal length", `Miles_per_Gallon` -> "miles per gallon"."""
    if column in spec.words:
        return spec.words[column]
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", column).replace("_", " ").replace("-", " ").lower().split()
    while len(spaced) > 1 and spaced[-1] in _UNITS:
        spaced.pop()
    return " ".join(spaced)


def plural(words: str) -> str:
    head, _, last = words.rpartition(" ")
    if last.endswith(("s", "ia")):
        return words  # species, bacteria, goods: already plural or the same
    if last.endswith("y") and last[-2:-1] not in "aeiou":
        last = last[:-1] + "ies"
    elif last.endswith(("x", "ch", "sh")):
        last += "es"
    else:
        last += "s"
    return f"{head} {last}".strip()


def name_of(column: str, spec: TableSpec, rng: random.Random, many: bool = False) -> str:
    """The column as a question says it: as written, in words, or (where the sense is plural) in plural."""
    style = rng.choice(("written", "words", "words"))
    if style == "written":
        return column
    words = in_words(column, spec)
    return plural(words) if many else words


def show(x: float) -> str:
    """A threshold as a question writes it: 40, 17.5, 0.25."""
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.6g}"


def nice_between(xs: list[float], q: float) -> float | None:
    """A round number near the q-quantile of xs that no cell equals (so <, >, between have one reading)."""
    ordered = sorted(xs)
    target = ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    present = set(ordered)
    spread = (ordered[-1] - ordered[0]) or abs(target) or 1.0
    step = 10 ** math.floor(math.log10(spread / 10)) if spread > 0 else 1.0
    for k in (1, 0.5, 0.1, 0.05, 0.01):
        s = step * k
        candidate = round(round(target / s) * s, 10)
        if candidate not in present and ordered[0] < candidate < ordered[-1]:
            return candidate
    return None


def unique_top(scores: dict[Any, float], highest: bool) -> Any | None:
    """The key with the highest (lowest) score when no other key ties it and it is not the null group."""
    if len(scores) < 2:
        return None
    ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=highest)
    (top, a), (_, b) = ranked[0], ranked[1]
    if top is None or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
        return None
    return top


# ---------------------------------------------------------------- the operations


class Maker:
    """Every candidate question of one table, grouped by operation."""

    def __init__(self, spec: TableSpec, rows: list[dict[str, Any]], rng: random.Random) -> None:
        self.spec, self.rows, self.rng = spec, rows, rng
        self.plural_entity, self.singular_entity = spec.entity

    def entity(self) -> str:
        return self.rng.choice((self.plural_entity, self.plural_entity, "rows"))

    def col(self, column: str, many: bool = False) -> str:
        return name_of(column, self.spec, self.rng, many)

    def pick(self, *phrasings: str) -> str:
        return self.rng.choice(phrasings)

    def text_value(self, column: str) -> bool:
        return not any(is_number(v) for v in values(self.rows, column))

    # each returns a list of (text, expected) candidates

    def count_rows(self) -> list[tuple[str, Any, dict[str, Any]]]:
        n, query = len(self.rows), {"op": "count_rows"}
        return [("How many rows does the table have?", n, query),
                (f"How many {self.plural_entity} are in the table?", n, query),
                (f"How many {self.plural_entity} are there?", n, query),
                ("What is the number of rows in the table?", n, query),
                ("How many records does the table hold?", n, query)]

    def count_distinct(self) -> list[tuple[str, Any, dict[str, Any]]]:
        out = []
        for column in self.spec.groups:
            n = len(set(values(self.rows, column)))
            for _ in range(2):
                c = self.col(column, many=True)
                out.append((self.pick(f"How many distinct {c} are there?", f"How many different {c} are in the table?",
                                      f"What is the number of unique {c}?"), n,
                            {"op": "count_distinct", "column": column}))
        return out

    def simple(self, how: str) -> list[tuple[str, Any, dict[str, Any]]]:
        out = []
        for column in self.spec.numbers:
            if how == "sum" and column in self.spec.no_sum:
                continue
            xs = values(self.rows, column)
            c = self.col(column)
            phrase = {
                "sum": (f"What is the total {c}?", f"What is the sum of {c}?",
                        f"What is the sum of the {c} over all {self.plural_entity}?"),
                "mean": (f"What is the average {c}?", f"What is the mean {c}?",
                         f"What is the {c} on average?"),
                "min": (f"What is the smallest {c}?", f"What is the minimum {c}?", f"What is the lowest {c}?"),
                "max": (f"What is the largest {c}?", f"What is the maximum {c}?", f"What is the highest {c}?"),
            }[how]
            out.append((self.pick(*phrase), aggregate(how, xs), {"op": how, "column": column}))
        return out

    def arg(self, highest: bool) -> list[tuple[str, Any, dict[str, Any]]]:
        out = []
        for column in self.spec.numbers:
            for label in self.spec.labels:
                if label == column:
                    continue
                scored = [r for r in self.rows if r.get(column) is not None]
                extreme = (max if highest else min)(r[column] for r in scored)
                top = [r for r in scored if r[column] == extreme]
                if len(top) != 1 or top[0].get(label) is None:
                    continue
                answer = top[0][label]
                word = "largest" if highest else "smallest"
                word = self.pick(word, "highest" if highest else "lowest")
                c, lab = self.col(column), self.col(label)
                out.append((self.pick(f"What is the {lab} of the {self.singular_entity} with the {word} {c}?",
                                      f"Which {lab} has the {word} {c}?",
                                      f"Which {self.singular_entity} has the {word} {c}? Give its {lab}."), answer,
                            {"op": "argmax" if highest else "argmin", "column": column, "label": label}))
        return out

    def group_count(self) -> list[tuple[str, Any, dict[str, Any]]]:
        out = []
        for column in self.spec.groups:
            counts = Counter(r.get(column) for r in self.rows)
            for most in (True, False):
                top = unique_top(dict(counts), most)
                if top is None:
                    continue
                c, e = self.col(column), self.entity()
                if most:
                    text = self.pick(f"Which {c} has the most {e}?", f"Which {c} appears most often?",
                                     f"Which {c} has the largest number of {e}?")
                else:
                    text = self.pick(f"Which {c} has the fewest {e}?", f"Which {c} appears least often?",
                                     f"Which {c} has the smallest number of {e}?")
                out.append((text, top, {"op": "group_count", "group": column, "highest": most}))
        return out

    def group_agg(self) -> list[tuple[str, Any, dict[str, Any]]]:
        out = []
        for group in self.spec.groups:
            for column in self.spec.numbers:
                if column == group or column in self.spec.no_sum:
                    continue
                by: dict[Any, list[float]] = defaultdict(list)
                for r in self.rows:
                    by[r.get(group)]  # a group whose values are all null still exists (its aggregate is null)
                    if r.get(column) is not None:
                        by[r.get(group)].append(r[column])
                for how, highest in (("mean", True), ("mean", False), ("sum", True), ("max", True), ("min", False)):
                    if how == "sum" and column in self.spec.no_sum:
                        continue
                    scores = {k: aggregate(how, xs) for k, xs in by.items() if xs}
                    top = unique_top(scores, highest)
                    if top is None:
                        continue
                    g, c = self.col(group), self.col(column)
                    adjective = "highest" if highest else "lowest"
                    noun = {"mean": self.pick("average", "mean"), "sum": "total", "max": "largest single",
                            "min": "smallest single"}[how]
                    text = (f"Which {g} has the {adjective} {noun} {c}?" if how in ("mean", "sum")
                            else f"Which {g} has the {noun} {c}?")
                    out.append((text, top, {"op": "group_agg", "group": group, "column": column, "agg": how,
                                            "highest": highest}))
        return out

    def filter_eq(self) -> list[tuple[str, Any, dict[str, Any]]]:
        out = []
        for column in self.spec.groups:
            counts = Counter(values(self.rows, column))
            for value in sorted(counts, key=str):
                c, e = self.col(column), self.entity()
                out.append((self.pick(f"How many {e} have {c} {value}?", f"How many {e} have {c} equal to {value}?",
                                      f"How many {e} are there where {c} is {value}?"), counts[value],
                            {"op": "count", "where": [column, "=", value]}))
        return out

    def filter_compare(self, op: str) -> list[tuple[str, Any, dict[str, Any]]]:
        out = []
        for column in self.spec.numbers:
            xs = values(self.rows, column)
            if len(set(xs)) < 4:
                continue
            for q in (0.2, 0.5, 0.8):
                if op == "between":
                    low, high = nice_between(xs, q - 0.15), nice_between(xs, q + 0.15)
                    if low is None or high is None or not low < high:
                        continue
                    n = sum(1 for x in xs if low <= x <= high)
                    where = [column, "between", [low, high]]
                    c, e = self.col(column), self.entity()
                    text = self.pick(f"How many {e} have {c} between {show(low)} and {show(high)}?",
                                     f"How many {e} have a {c} from {show(low)} to {show(high)}?")
                else:
                    t = nice_between(xs, q)
                    if t is None:
                        continue
                    n = sum(1 for x in xs if (x < t if op == "<" else x > t))
                    where = [column, op, t]
                    c, e = self.col(column), self.entity()
                    if op == "<":
                        text = self.pick(f"How many {e} have {c} less than {show(t)}?",
                                         f"How many {e} have a {c} below {show(t)}?",
                                         f"How many {e} have {c} under {show(t)}?")
                    else:
                        text = self.pick(f"How many {e} have {c} greater than {show(t)}?",
                                         f"How many {e} have a {c} above {show(t)}?",
                                         f"How many {e} have {c} more than {show(t)}?")
                if 0 < n < len(self.rows):
                    out.append((text, n, {"op": "count", "where": where}))
        return out

    def filter_contains(self) -> list[tuple[str, Any, dict[str, Any]]]:
        out = []
        for column in self.spec.contains:
            cells = [str(v) for v in values(self.rows, column)]
            # whole words of 4 letters or more, and the first 4 letters of longer ones ("Torg" of "Torgersen")
            found = {w for cell in cells for w in re.findall(r"[A-Za-z0-9]{4,}", cell)}
            words = sorted(found | {w[:4] for w in found if len(w) >= 6})
            fits = []
            for word in words:
                n = sum(1 for cell in cells if word in cell)
                folded = sum(1 for cell in cells if word.lower() in cell.lower())
                if n == folded and 2 <= n < len(cells) and word not in cells:
                    fits.append((word, n))
            for word, n in self.rng.sample(fits, min(3, len(fits))):
                c, e = self.col(column), self.entity()
                out.append((self.pick(f'How many {e} have a {c} that contains "{word}"?',
                                      f'How many {e} have "{word}" in their {c}?',
                                      f'How many {e} have a {c} containing "{word}"?'), n,
                            {"op": "count", "where": [column, "contains", word]}))
        return out

    def filter_agg(self) -> list[tuple[str, Any, dict[str, Any]]]:
        out = []
        for group in self.spec.groups:
            for value in sorted(set(values(self.rows, group)), key=str):
                for column in self.spec.numbers:
                    if column == group or column in self.spec.no_sum:
                        continue
                    xs = values(self.rows, column, lambda r: r.get(group) == value)
                    if not xs:
                        continue
                    how = self.rng.choice(("mean", "mean", "sum", "min", "max"))
                    g, c, e = self.col(group), self.col(column), self.entity()
                    text = {
                        "mean": self.pick(f"What is the mean {c} where {g} is {value}?",
                                          f"What is the average {c} of {e} with {g} {value}?"),
                        "sum": self.pick(f"What is the total {c} for {e} with {g} {value}?",
                                         f"What is the sum of {c} where {g} is {value}?"),
                        "min": f"What is the smallest {c} among {e} whose {g} is {value}?",
                        "max": f"What is the largest {c} among {e} whose {g} is {value}?",
                    }[how]
                    out.append((text, aggregate(how, xs), {"op": how, "column": column, "where": [group, "=", value]}))
        return out

    def top_n(self) -> list[tuple[str, Any, dict[str, Any]]]:
        out = []
        for column in self.spec.numbers:
            scored = sorted((r for r in self.rows if r.get(column) is not None), key=lambda r: r[column])
            for highest in (True, False):
                ranked = scored[::-1] if highest else scored
                for n in (3, 5):
                    top_values = [r[column] for r in ranked[:n]]
                    if len(ranked) <= n or len(set(top_values)) != n or ranked[n - 1][column] == ranked[n][column]:
                        continue  # a tie within or at the cut: "the 3 largest" has more than one reading
                    word = self.pick("largest", "highest") if highest else self.pick("smallest", "lowest")
                    c = self.col(column, many=True)
                    out.append((self.pick(f"What are the {n} {word} {c}?", f"List the {n} {word} values of {c}."),
                                top_values, {"op": "top_n", "column": column, "n": n, "highest": highest}))
                    for label in self.spec.labels:
                        names = [r.get(label) for r in ranked[:n]]
                        if label == column or None in names or len(set(names)) != n:
                            continue
                        lab = self.col(label, many=True)
                        out.append((self.pick(f"Which {n} {lab} have the {word} {self.col(column)}?",
                                              f"Give the {lab} of the {n} {self.plural_entity} with the {word}"
                                              f" {self.col(column)}."), names,
                                    {"op": "top_n", "column": column, "n": n, "highest": highest, "label": label}))
        return out

    def candidates(self, operation: str) -> list[tuple[str, Any, dict[str, Any]]]:
        return {
            "count_rows": self.count_rows, "count_distinct": self.count_distinct,
            "sum": lambda: self.simple("sum"), "mean": lambda: self.simple("mean"),
            "min": lambda: self.simple("min"), "max": lambda: self.simple("max"),
            "argmax": lambda: self.arg(True), "argmin": lambda: self.arg(False),
            "group_count": self.group_count, "group_agg": self.group_agg, "filter_eq": self.filter_eq,
            "filter_lt": lambda: self.filter_compare("<"), "filter_gt": lambda: self.filter_compare(">"),
            "filter_between": lambda: self.filter_compare("between"),
            "filter_contains": self.filter_contains, "filter_agg": self.filter_agg, "top_n": self.top_n,
        }[operation]()


def table_questions(spec: TableSpec) -> list[Question]:
    """Up to QUOTA[op] questions of each operation from one table, drawn with a seed of its own."""
    rng = random.Random(f"{SEED}:{spec.name}")
    path = spec.file()
    maker = Maker(spec, load(path), rng)
    half = "held-out" if spec.name in HELD_OUT else "tuning"
    out: list[Question] = []
    seen: set[str] = set()
    for operation in OPERATIONS:
        fresh = []
        for text, expected, query in maker.candidates(operation):
            if text not in seen:
                seen.add(text)
                fresh.append((text, expected, query))
        for text, expected, query in rng.sample(fresh, min(QUOTA[operation], len(fresh))):
            out.append(Question(text, path, expected, "table", operation, spec.name, half, query))
    return out


def generated(half: str) -> list[Question]:
    """The questions of one half ("tuning" or "held-out") in a fixed shuffled order, so that the first
    few (`tools_qa.py --limit N`) mix tables and operations."""
    names = {"tuning": TUNING, "held-out": HELD_OUT}[half]
    asked = [q for spec in TABLES if spec.name in names for q in table_questions(spec)]
    random.Random(f"{SEED}:order:{half}").shuffle(asked)
    return asked


# ---------------------------------------------------------------- scoring

_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def _matches(shown: str, expected: float) -> bool:
    value = float(shown)
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    return abs(value - expected) <= 0.01 * abs(expected) or round(float(expected), decimals) == value


def is_right(answer: str, expected: Any, question: str = "") -> bool:
    """The expected value is in the answer: a number within 1% or equal when rounded as shown, a word
    (case-insensitive), or for a list every item.

    With the `question` given (the generated sets), a word must stand alone (not "CA" inside "can"),
    and a number the answer merely repeats from the question ("... greater than 40") does not count.
    Without it, the legacy rule: a substring for words, any number in the answer.
    """
    if isinstance(expected, list):
        return all(is_right(answer, item, question) for item in expected)
    if isinstance(expected, str):
        if not question:
            return expected.lower() in answer.lower()
        return re.search(rf"(?<!\w){re.escape(expected.lower())}(?!\w)", answer.lower()) is not None
    echoed = {m.replace(",", "") for m in _NUMBER.findall(question)}
    echoed = {m for m in echoed if not _matches(m, expected)}
    return any(_matches(m.replace(",", ""), expected) for m in _NUMBER.findall(answer)
               if m.replace(",", "") not in echoed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--half", choices=("tuning", "held-out"), default="tuning")
    parser.add_argument("--show", type=int, default=0, help="print the first N questions (tuning half only)")
    args = parser.parse_args()
    if args.half == "held-out" and args.show:
        raise SystemExit("the held-out questions are not shown: see HELD_OUT")
    asked = generated(args.half)
    per = Counter(q.operation for q in asked)
    print(f"{args.half}: {len(asked)} questions over {len({q.table for q in asked})} tables")
    for operation in OPERATIONS:
        print(f"  {operation:16} {per[operation]}")
    for q in asked[: args.show]:
        print(f"[{q.table}/{q.operation}] {q.text} -> {q.expected}")


if __name__ == "__main__":
    main()
