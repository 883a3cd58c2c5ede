"""Speculative decoding's parts: n-gram drafts, the acceptance estimate, llama.cpp's passes, the plan."""

from __future__ import annotations

import pytest

from homellm.scheduler.drafting import NgramDrafter
from homellm.scheduler.speculation import (
    EXPLORE_EVERY,
    MIN_PAYOFF_STEPS,
    Acceptance,
    Candidate,
    Payoff,
    StepCosts,
    StepShape,
    acceptance_band,
    count_ubatches,
    expected_tokens,
    plan_drafts,
)


def test_drafter_proposes_what_followed_the_last_ngram_before():
    drafter = NgramDrafter([1, 2, 3, 4, 5, 6, 9, 1, 2, 3])
    assert drafter.propose(3) == [4, 5, 6]
    assert drafter.propose(10) == [4, 5, 6, 9, 1, 2, 3]  # up to the end of what is known


def test_drafter_takes_the_latest_occurrence_and_grows_with_the_answer():
    drafter = NgramDrafter([7, 8, 9, 1, 0, 7, 8, 9, 2, 0])
    assert drafter.propose(4) == []  # "2 0" then nothing: the last three tokens never occurred before
    drafter.extend([7, 8, 9])
    assert drafter.propose(2) == [2, 0]  # the later of the two earlier "7 8 9"


def test_drafter_never_matches_its_own_end():
    drafter = NgramDrafter([5, 6, 7])
    assert drafter.propose(4) == []
    assert NgramDrafter([1, 2]).propose(4) == []
    assert NgramDrafter([1, 2, 3, 1, 2, 3]).propose(0) == []


def test_drafter_built_at_once_equals_built_token_by_token():
    tokens = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4, 6, 2, 6, 4, 3, 3, 8, 3, 2, 7, 9, 5]
    whole, grown = NgramDrafter(tokens), NgramDrafter()
    for token in tokens:
        grown.extend([token])
    assert whole.propose(8) == grown.propose(8)
    assert len(whole) == len(grown) == len(tokens)


def test_expected_tokens_is_the_geometric_sum():
    assert expected_tokens(0.5, 0) == 1
    assert expected_tokens(0.5, 2) == pytest.approx(1.75)
    assert expected_tokens(1.0, 4) == 5
    assert expected_tokens(0.0, 8) == 1


def test_acceptance_follows_recent_rounds():
    acceptance = Acceptance()
    assert acceptance.rate == 0.5
    for _ in range(20):
        acceptance.record(8, False)
    assert acceptance.rate > 0.95
    for _ in range(40):
        acceptance.record(0, True)
    assert acceptance.rate < 0.3


@pytest.mark.parametrize(("runs", "passes"), [
    ([(0, 1), (1, 1), (2, 1)], 1),  # one token each, consecutive sequences: one pass
    ([(0, 9), (1, 9)], 1),
    ([(0, 9), (1, 1)], 2),  # unequal drafts: the longer one's rest takes a pass of its own
    ([(0, 1), (2, 1)], 2),  # a gap in the sequence numbers splits the batch
    ([(0, 3), (1, 1), (2, 3)], 3),
    ([], 0),
])
def test_count_ubatches_follows_llama_cpp_equal_split(runs, passes):
    assert count_ubatches(runs) == passes


def _costs(per_pass: float, per_token: float) -> StepCosts:
    costs = StepCosts()
    for tokens in (1, 2, 4, 8, 16, 17, 1, 9, 5, 3):
        for _ in range(4):
            costs.observe(StepShape(1, tokens, tokens), per_pass + per_token * tokens)
    return costs


def test_step_costs_learn_seconds_per_token_from_the_steps():
    costs = _costs(0.010, 0.002)
    assert costs.predict(StepShape(1, 12, 12)) == pytest.approx(0.010 + 0.024, rel=0.1)  # never measured
    assert costs.predict(StepShape(2, 12, 12)) > costs.predict(StepShape(1, 12, 12))  # a second pass costs


def test_nothing_is_drafted_before_a_one_token_step_was_timed():
    assert plan_drafts([Candidate(0, tuple(range(16)), 0.99)], StepCosts()) == {}


def test_cheap_verification_and_good_drafts_draft_long():
    plan = plan_drafts([Candidate(0, tuple(range(16)), 0.95)], _costs(0.010, 0.0002))
    assert plan[0] >= 8


def test_costly_verification_or_bad_drafts_draft_nothing():
    assert plan_drafts([Candidate(0, tuple(range(16)), 0.95)], _costs(0.001, 0.010)) == {}
    assert plan_drafts([Candidate(0, tuple(range(16)), 0.05)], _costs(0.010, 0.001)) == {}
    assert plan_drafts([Candidate(0, (), 0.99)], _costs(0.010, 0.0)) == {}


def test_a_minimum_draft_is_drafted_whatever_it_costs():
    candidates = [Candidate(0, tuple(range(16)), 0.05), Candidate(1, (7, 8), 0.05), Candidate(2, (), 0.9)]
    assert plan_drafts(candidates, StepCosts(), at_least=4) == {0: 4, 1: 2}


def test_a_plan_never_drafts_past_the_proposal():
    plan = plan_drafts([Candidate(0, (4, 5, 6), 0.99), Candidate(1, (), 0.5)], _costs(0.010, 0.0001))
    assert 0 < plan[0] <= 3 and 1 not in plan


def test_payoff_holds_drafting_back_while_it_yields_less_and_tries_again_now_and_then():
    payoff = Payoff()
    for _ in range(MIN_PAYOFF_STEPS):
        assert payoff.allows(8, 0)
        payoff.record(8, 0, 9, 0.10)  # 90 tokens/s drafting with poor acceptance
        payoff.record(8, None, 8, 0.06)  # 133 without drafts
    allowed = [payoff.allows(8, 0) for _ in range(3 * EXPLORE_EVERY)]
    assert allowed.count(True) == 3  # one step in EXPLORE_EVERY drafts again
    assert payoff.allows(8, 2) and payoff.allows(1, 0)  # good drafts, and other slot counts, have their own record
    for _ in range(10):
        payoff.record(8, 0, 20, 0.10)  # drafting pays now
    assert all(payoff.allows(8, 0) for _ in range(5))


def test_acceptance_bands():
    assert [acceptance_band(rate) for rate in (0.1, 0.5, 0.79, 0.8, 0.99)] == [0, 1, 1, 2, 2]
