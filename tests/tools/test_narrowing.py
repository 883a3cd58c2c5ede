"""What a question's words decide about a table query: columns, operation, order, count, comparison."""

from __future__ import annotations

import pytest

from homellm.tools.narrowing import (
    asked_comparison,
    asked_operation,
    asks_contains,
    asks_negation,
    names_column,
    numbers,
    quoted,
    top_count,
    which_word,
)


@pytest.mark.parametrize(("question", "names_a_number", "operations", "grouped", "order", "limit"), [
    ("How many rows does the table have?", False, ("count",), False, "desc", None),
    ("How many rows are there for each category?", False, ("count",), True, "desc", None),
    ("How many distinct categories are there?", False, ("count_distinct",), False, "desc", None),
    ("Which category has the most rows?", False, ("count",), True, "desc", 1),
    ("Which category has the fewest packages?", False, ("count",), True, "asc", 1),
    ("Which name has the largest installed size?", True, ("argmax",), False, "desc", None),
    ("What is the name of the package with the smallest size?", True, ("argmin",), False, "asc", None),
    ("What is the largest installed size?", True, ("max",), False, "desc", None),
    ("What is the lowest price?", True, ("min",), False, "asc", None),
    ("Which category has the highest average size?", True, ("mean",), True, "desc", 1),
    ("What are the 5 largest sizes?", True, ("top",), False, "desc", 5),
    ("What are the 2 smallest sizes?", True, ("bottom",), False, "asc", 2),
    ("What is the total size?", True, ("sum",), False, "desc", None),
    ("Which weather has the highest total minimum temperature?", True, ("sum",), True, "desc", 1),
    ("What is the lowest maximum temperature?", True, ("min",), False, "asc", None),
    ("Tell me about the table.", False, None, None, None, None),
])
def test_the_questions_words_decide_the_operation(question: str, names_a_number: bool, operations: tuple | None,
                                                  grouped: bool | None, order: str | None,
                                                  limit: int | None) -> None:
    asked = asked_operation(question, names_a_number)
    if operations is None:
        assert asked is None
        return
    assert asked is not None and asked.operations == operations
    assert (asked.grouped, asked.limit) == (grouped, limit)
    assert asked.order == order


@pytest.mark.parametrize(("question", "column", "named"), [
    ("What is the largest installed size?", "installed_size_kb", True),
    ("Which category has the most rows?", "categories", True),
    ("What is the mean maximum temperature?", "temp_max", True),
    ("What is the mean maximum temperature?", "temp_min", False),
    ("List the 5 largest values of weights.", "Weight_in_lbs", True),
    ("What is the highest ret?", "high", False),  # "high" is in "highest", not a word of the question
    ("What is the mean body mass?", "body_mass_g", True),
    ("What is the mean petal length?", "petalLength", True),
    ("How many rows have gas under 2.5?", "gas", True),
])
def test_columns_are_named_by_the_words_that_say_what_they_hold(question: str, column: str, named: bool) -> None:
    assert names_column(question, column) is named


@pytest.mark.parametrize(("question", "word"), [
    ("Which year has the smallest gas?", "year"),
    ("Which 5 names have the smallest weight?", "names"),
    ("Give the date of the 5 days with the highest open.", "date"),
    ("What is the name of the package with the smallest size?", "name"),
    ("Which weather is the most common?", "weather"),
    ("What is the largest flipper length?", None),
    ("What is the mean body mass of Gentoo penguins?", None),
])
def test_the_word_a_row_or_group_is_asked_by(question: str, word: str | None) -> None:
    assert which_word(question) == word


@pytest.mark.parametrize(("question", "count"), [
    ("What are the 3 largest body masses?", 3), ("Which 5 names have the smallest weight?", 5),
    ("Give the date of the 5 days with the highest open.", 5), ("Show the top 4 rows by price.", 4),
    ("How many cars have 8 cylinders?", None), ("What is the largest flipper length?", None),
])
def test_how_many_rows_are_asked_for(question: str, count: int | None) -> None:
    assert top_count(question) == count


@pytest.mark.parametrize(("question", "ops"), [
    ("How many rows have a temp_max from 6 to 13?", ["between"]),
    ("How many days have high between 24.1 and 27.2?", ["between"]),
    ("How many records have gas more than 2.1?", [">"]), ("How many rows have gas under 2.5?", ["<"]),
    ("How many have at least 3 doors?", [">="]), ("What is the sum of the return over all days?", None),
    ("Which island has more penguins?", None),
])
def test_a_comparison_needs_a_number(question: str, ops: list[str] | None) -> None:
    assert asked_comparison(question) == ops


def test_quoted_text_and_the_numbers_given() -> None:
    question = 'How many rows have a species containing "vers"?'
    assert quoted(question) == ["vers"] and asks_contains(question)
    assert not asks_contains("How many rows contain data?")  # nothing quoted: nothing to look for
    assert numbers("Give the 5 largest rows with gas above 2.5", leave_out=5) == [2.5]
    assert numbers("between 10 and 2") == [2, 10]


def test_is_not_only_when_the_question_says_so() -> None:
    assert asks_negation("How many cars are not from Japan?") and asks_negation("Which origin, except USA, ...")
    assert not asks_negation("How many days are there where weather is fog?")
    assert not asks_negation("What is the average close of days with signal short?")  # "other" in a value
