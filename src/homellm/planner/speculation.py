"""What speculative decoding gains: the planner's side, pure arithmetic on step costs.

A draft of k tokens, each accepted with probability p given the ones before it were, yields
1 + p + ... + p^k tokens for one target step of k + 1 tokens plus k draft steps. Whether that
beats a plain step depends on how much more a step of k + 1 tokens costs than one of 1: on a GPU
almost nothing (reading the weights dominates), on two CPU cores about half a step per token
(docs/performance.md). The decode loop plans from costs it measures (scheduler/speculation.py);
`homellm plan` predicts them from the speed model to say whether a stored draft model pays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

MAX_DRAFT = 16  # drafted tokens per slot and step
TYPICAL_ACCEPTANCE = 0.7  # a same-family draft on chat text, about (llama.cpp's and vLLM's reports: 0.6-0.8)
VerifySeconds = Callable[[int], float]
"""Seconds of one target decode step of n tokens of one sequence."""


def expected_tokens(rate: float, drafted: int) -> float:
    """Tokens a step yields for one slot with `drafted` tokens: its own, plus each draft while accepted."""
    return sum(rate ** i for i in range(drafted + 1))


def predicted_verify_seconds(decode_tps: float, prefill_tps: float) -> VerifySeconds:
    """A target step of n tokens from the speed model: one token's decode, and each further token at the
    prompt rate (its compute, the weights being read once for all)."""
    return lambda n: 1.0 / decode_tps + (n - 1) / prefill_tps


def measured_verify_seconds(steps: Mapping[int, float]) -> VerifySeconds:
    """A target step of n tokens from steps measured at some sizes (1 among them): linear between
    them, and on from the last two past the largest."""
    sizes = sorted(steps)
    if not sizes or sizes[0] != 1:
        raise ValueError("the measured steps must include a one-token step")

    def seconds(n: int) -> float:
        if n in steps:
            return steps[n]
        low = max((k for k in sizes if k < n), default=sizes[0])
        high = min((k for k in sizes if k > n), default=None)
        if high is None:  # past the largest: extend the last stretch
            if len(sizes) == 1:
                return steps[low]
            low, high = sizes[-2], sizes[-1]
        return steps[low] + (steps[high] - steps[low]) * (n - low) / (high - low)

    return seconds


@dataclass(frozen=True)
class SpeculationGain:
    """The best draft length at an acceptance, its gain over plain decoding, and where drafting starts to pay."""

    acceptance: float
    draft_tokens: int  # 0: drafting does not pay
    gain: float  # tokens/s with drafting over without (1.0 when it does not pay)
    break_even: float | None  # the acceptance above which some draft length pays; None: none below 1


def gain_at(acceptance: float, verify: VerifySeconds, draft_step: float, drafted: int) -> float:
    """Tokens/s drafting `drafted` tokens a step (with `draft_step` seconds per draft token) over plain steps."""
    seconds = verify(drafted + 1) + drafted * draft_step
    return expected_tokens(acceptance, drafted) / seconds * verify(1)


def speculation_gain(acceptance: float, verify: VerifySeconds, draft_step: float,
                     max_draft: int = MAX_DRAFT) -> SpeculationGain:
    """The best of drafting 0..max_draft tokens a step at `acceptance`; `draft_step` is 0 for n-grams."""
    best, tokens = 1.0, 0
    for k in range(1, max_draft + 1):
        gain = gain_at(acceptance, verify, draft_step, k)
        if gain > best:
            best, tokens = gain, k
    return SpeculationGain(acceptance, tokens, best, break_even_acceptance(verify, draft_step, max_draft))


def break_even_acceptance(verify: VerifySeconds, draft_step: float, max_draft: int = MAX_DRAFT) -> float | None:
    """The lowest acceptance at which some draft length beats plain decoding (to 0.001); None when none does
    even at an acceptance just below 1."""
    def pays(p: float) -> bool:
        return any(gain_at(p, verify, draft_step, k) > 1.0 for k in range(1, max_draft + 1))

    low, high = 0.0, 0.999
    if not pays(high):
        return None
    while high - low > 1e-3:
        mid = (low + high) / 2
        low, high = (low, mid) if pays(mid) else (mid, high)
    return round(high, 3)
