"""The planner's speculative-decoding arithmetic: expected tokens, the best draft length, break-even acceptance."""

from __future__ import annotations

import pytest

from homellm.planner.speculation import (
    break_even_acceptance,
    expected_tokens,
    gain_at,
    measured_verify_seconds,
    predicted_verify_seconds,
    speculation_gain,
)

# One sequence's decode step with 1, 2, 3, 5, 9 and 17 tokens on the built-in model, two CPU cores
# (docs/performance.md, "Speculative decoding"), relative to a one-token step.
cpu_verify = measured_verify_seconds({1: 1.00, 2: 1.56, 3: 2.22, 5: 3.11, 9: 5.35, 17: 9.76})


def test_expected_tokens_count_each_draft_while_accepted():
    assert expected_tokens(0.5, 0) == 1
    assert expected_tokens(0.5, 2) == pytest.approx(1.75)
    assert expected_tokens(1.0, 4) == 5


def test_free_verification_gains_what_the_drafts_yield():
    # A GPU reads the weights once for 1 or 17 tokens: the gain is the tokens a step yields.
    gain = speculation_gain(0.8, lambda n: 1.0, draft_step=0.0)
    assert gain.draft_tokens == 16 and gain.gain == pytest.approx(expected_tokens(0.8, 16))
    assert gain.break_even == pytest.approx(0.0, abs=0.002)


def test_on_two_cpu_cores_ngrams_at_the_measured_acceptance_gain_little():
    # docs/performance.md: "at the measured acceptance of 0.77 the best a draft can give is ... (1.13x)".
    gain = speculation_gain(0.77, cpu_verify, draft_step=0.0)
    assert gain.draft_tokens == 1 and gain.gain == pytest.approx(1.77 / 1.56, rel=1e-3)
    assert 0.5 < gain.break_even < 0.6  # 1 + p must beat 1.56


def test_a_draft_as_costly_as_its_target_never_pays_on_a_cpu():
    assert break_even_acceptance(cpu_verify, draft_step=1.0) is None
    assert speculation_gain(0.95, cpu_verify, draft_step=1.0).draft_tokens == 0


def test_gain_grows_with_acceptance_and_shrinks_with_the_draft_cost():
    verify = predicted_verify_seconds(decode_tps=40.0, prefill_tps=400.0)
    gains = [speculation_gain(p, verify, 0.002).gain for p in (0.3, 0.5, 0.7, 0.9)]
    assert gains == sorted(gains) and gains[-1] > 2
    costs = [gain_at(0.8, verify, step, 3) for step in (0.0, 0.005, 0.02)]
    assert costs == sorted(costs, reverse=True)


def test_the_speed_model_prices_further_tokens_at_the_prompt_rate():
    verify = predicted_verify_seconds(decode_tps=50.0, prefill_tps=500.0)
    assert verify(1) == pytest.approx(0.02) and verify(11) == pytest.approx(0.04)


def test_measured_steps_are_read_between_and_past_the_sizes_measured():
    assert cpu_verify(2) == 1.56 and cpu_verify(4) == pytest.approx((2.22 + 3.11) / 2)
    assert cpu_verify(21) == pytest.approx(9.76 + (9.76 - 5.35) / 8 * 4)
    with pytest.raises(ValueError):
        measured_verify_seconds({2: 1.0})
