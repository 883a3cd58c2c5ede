"""Counting a reasoning model's thinking tokens: where the thought starts and ends, when the budget is spent."""

from __future__ import annotations

from homellm.generation import Reasoning
from homellm.scheduler.thinking import ThinkingBudget


def feed_all(budget: ThinkingBudget, pieces: list[str]) -> list[bool]:
    return [budget.feed(piece) for piece in pieces]


def test_a_prompt_that_opened_the_thought_counts_from_the_first_token():
    budget = ThinkingBudget(Reasoning(starts_inside=True, budget=3))
    assert feed_all(budget, ["Let", " me", " see"]) == [False, False, True]
    assert not budget.thinking and budget.spent == 3
    assert not budget.feed(" more")  # closed: nothing more to count


def test_an_open_tag_split_across_tokens_starts_the_count_after_it():
    budget = ThinkingBudget(Reasoning(budget=2))
    assert feed_all(budget, ["\n", "<th", "ink", ">"]) == [False] * 4
    assert budget.thinking and budget.spent == 0
    assert feed_all(budget, ["Hmm", "."]) == [False, True]


def test_the_models_own_close_tag_ends_the_count_even_split():
    budget = ThinkingBudget(Reasoning(starts_inside=True, budget=5))
    assert feed_all(budget, ["ok", "</", "think", ">", "Paris", " is", " it"]) == [False] * 7
    assert not budget.thinking and budget.spent == 4


def test_an_answer_that_does_not_open_a_thought_is_never_counted():
    budget = ThinkingBudget(Reasoning(budget=1))
    assert feed_all(budget, ["The", " capital", " <think>"]) == [False, False, False]
    assert budget.spent == 0


def test_no_budget_counts_but_never_closes():
    budget = ThinkingBudget(Reasoning(starts_inside=True))
    assert feed_all(budget, ["a"] * 50) == [False] * 50
    assert budget.thinking and budget.spent == 50
