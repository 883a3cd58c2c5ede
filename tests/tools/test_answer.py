"""How a tool's result reaches the answer: every value verbatim, beside what the query computed."""

from __future__ import annotations

import pytest

from homellm.tools.answer import shown_result, stated, value_text
from homellm.tools.table import query_subject


@pytest.mark.parametrize(("result", "shown", "many"), [
    ({"value": 825}, "825", False),
    ({"value": 4201.7544}, "4201.7544", False),
    ({"value": "Alpha Station 11"}, "Alpha Station 11", False),
    ({"value": None}, "no value", False),
    ({"rows": [["Biscoe", 168], ["Dream", 124]]}, "Biscoe (168); Dream (124)", True),
    ({"rows": [["Biscoe", 168]]}, "Biscoe (168)", False),
    ({"rows": []}, "none: no rows match", False),
    ({"columns": ["name", "size_kb", "kind"], "by": "size_kb", "rows": [["libfoo-1.2.3", 123456789, "lib"]]},
     "libfoo-1.2.3, lib (size_kb 123456789)", False),
])
def test_results_are_shown_verbatim(result: dict, shown: str, many: bool) -> None:
    assert shown_result(result) == (shown, many)


def test_results_that_are_read_not_shown_are_left_to_the_model() -> None:
    assert shown_result({"path": "(top)", "type": "object", "keys": {"a": "number"}}) is None
    assert shown_result([{"source": "a.md:1-3", "text": "..."}]) is None


def test_many_rows_are_cut_with_a_count() -> None:
    shown, many = shown_result({"rows": [[f"g{i}", i] for i in range(25)]})  # type: ignore[misc]
    assert many and shown.endswith("g9 (9) and 15 more")


def test_the_answer_says_what_was_computed_and_the_result() -> None:
    request = {"operation": "mean", "column": "body_mass_g",
               "filters": [{"column": "species", "op": "=", "value": "Gentoo"}]}
    assert stated(query_subject(request), "5076.0163", False) == \
        "The mean of body_mass_g where species is Gentoo is 5076.0163."
    grouped = {"operation": "count", "column": "*", "group_by": "island", "order": "asc", "limit": 1}
    assert query_subject(grouped) == "the island with the fewest rows"
    top = {"operation": "top", "column": "size_kb", "limit": 3,
           "filters": [{"column": "size_kb", "op": "between", "value": [10, 20]}]}
    assert stated(query_subject(top), "a; b; c", True) == \
        "The 3 rows with the largest size_kb where size_kb is between 10 and 20 are a; b; c."
    assert value_text(True) == "true" and value_text(3.0) == "3.0"
