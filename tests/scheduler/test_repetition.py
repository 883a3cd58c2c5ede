"""The loop guard on token ids: loops end, counting and lists of similar lines never do."""

from __future__ import annotations

import pytest

from homellm.scheduler.repetition import MIN_LOOP_TOKENS, LoopGuard


def first_loop(tokens: list[int], repeats: int = 8) -> int | None:
    """The position at which the guard calls the tokens a loop, or None."""
    guard = LoopGuard(repeats)
    for i, token in enumerate(tokens):
        if guard.feed(token):
            return i
    return None


def test_a_span_said_over_and_over_is_a_loop_once_it_is_long_enough():
    span = [11, 12, 13, 14, 15, 16]
    tokens = [1, 2, 3] + span * 20
    at = first_loop(tokens)
    assert at is not None
    assert at == 3 + 8 * len(span) - 1  # the eighth copy's last token
    guard = LoopGuard(8)
    for token in tokens[:at + 1]:
        guard.feed(token)
    assert guard.span == len(span)


def test_one_token_repeated_is_a_loop_only_past_the_minimum_length():
    assert first_loop([7] * (MIN_LOOP_TOKENS - 1)) is None
    assert first_loop([7] * MIN_LOOP_TOKENS) == MIN_LOOP_TOKENS - 1


def test_fewer_repeats_than_asked_are_not_a_loop():
    span = list(range(100, 110))
    assert first_loop(span * 7, repeats=8) is None
    assert first_loop(span * 8, repeats=8) == 8 * 10 - 1
    assert first_loop(span * 5, repeats=5) == 5 * 10 - 1


def test_a_long_span_is_found_too():
    span = list(range(500, 590))  # a paragraph of 90 tokens
    assert first_loop(span * 3, repeats=3) == 3 * 90 - 1


def test_counting_is_not_a_loop():
    # "1\n2\n...200\n" as digit and newline tokens: every line differs from the last.
    tokens = [t for n in range(1, 201) for t in [*(ord(d) for d in str(n)), 10]]
    assert first_loop(tokens, repeats=2) is None


def test_similar_lines_are_not_a_loop():
    # "- item N: the same words\n" 100 times: the number changes every line.
    line = [45, 32, 900, 901, 902, 903, 904]
    tokens = [t for n in range(100) for t in [*line, 1000 + n, 10]]
    assert first_loop(tokens, repeats=3) is None


def test_a_loop_after_varied_text_is_still_found():
    varied = list(range(2000, 2300))
    loop = [5, 6, 7, 8]
    assert first_loop(varied + loop * 30) == 300 + 12 * len(loop) - 1  # 48 tokens: the minimum length


def test_a_guard_needs_at_least_two_repeats():
    with pytest.raises(ValueError):
        LoopGuard(1)
