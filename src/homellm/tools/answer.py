"""The tool loop's answer: the result a tool returned, every value verbatim, beside what was computed.

A 135M model asked to restate 825 writes "8"; asked to restate "Ford Pinto" it may write "Ford".
So the model never types a value: it chooses the query, and the answer is built from the query (in
words: "the mean of body_mass_g where species is Gentoo") and the result as the tool returned it.
Results that are read rather than shown (passages, a JSON object's keys) are answered in the model's
own words.
"""

from __future__ import annotations

import json
from typing import Any

MAX_SHOWN_ROWS = 10
MAX_LABELS = 2  # text columns that name a row ("name", "category"), beside the value it was ordered by


def stated(subject: str, shown: str, many: bool) -> str:
    """The answer sentence: "The number of rows where Origin is Japan is 79."."""
    sentence = f"{subject[:1].upper()}{subject[1:]} {'are' if many else 'is'} {shown}"
    return sentence if sentence.endswith((".", "!", "?")) else sentence + "."


def shown_result(result: Any) -> tuple[str, bool] | None:
    """A tool's result as it goes in the answer, every value verbatim, and whether it is several rows;
    None for results that are read, not shown."""
    if not isinstance(result, dict):
        return None
    if "value" in result and not isinstance(result["value"], (dict, list)):
        return value_text(result["value"]), False
    rows = result.get("rows")
    if not isinstance(rows, list):
        return None
    if not rows:
        return "none: no rows match", False
    if "by" in result and "columns" in result:
        shown = [_ordered_row(result["columns"], row, result["by"], result.get("label"))
                 for row in rows[:MAX_SHOWN_ROWS]]
    else:
        shown = [_row(row) for row in rows[:MAX_SHOWN_ROWS]]
    more = f" and {len(rows) - MAX_SHOWN_ROWS} more" if len(rows) > MAX_SHOWN_ROWS else ""
    return "; ".join(shown) + more, len(rows) > 1


def value_text(value: Any) -> str:
    """A value as JSON writes it (344, 4201.7544, true), text as it is."""
    if value is None:
        return "no value"
    return value if isinstance(value, str) else json.dumps(value)


def _row(row: Any) -> str:
    """A group and its value as "Biscoe (168)", a listed value alone."""
    if not isinstance(row, list):
        return value_text(row)
    if len(row) == 2:
        return f"{value_text(row[0])} ({value_text(row[1])})"
    return ", ".join(value_text(v) for v in row)


def _ordered_row(columns: list[str], row: list[Any], by: str, label: str | None = None) -> str:
    """A whole row (argmax, top) as the text that names it (the label asked for first) and the value
    it was ordered by."""
    cells = dict(zip(columns, row, strict=False))
    named = [value_text(cells[label])] if label in cells and label != by else []
    labels = (named + [value_text(v) for k, v in cells.items() if isinstance(v, str) and k not in (by, label)])
    labels = labels[:MAX_LABELS]
    return f"{', '.join(labels) or 'the row'} ({by} {value_text(cells.get(by))})"
