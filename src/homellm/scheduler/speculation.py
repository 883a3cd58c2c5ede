"""When speculative decoding pays: each slot's measured acceptance against each step's measured cost.

A draft of k tokens is verified in the same decode as the slot's next token. It pays when the
tokens it is expected to yield, 1 + p + p^2 + ... + p^k for a per-token acceptance p, grow faster
than the step's time. On a GPU verifying a few more tokens is nearly free; on two CPU cores each
costs about a third of a one-token step (llama-server's draft model measured 0.81x here), so the
decision is made per step from what this loop measured: acceptance per slot (also while not
drafting, by checking what the draft would have been) and seconds per step shape.

llama.cpp decodes a batch as ubatches; with a KV cache per sequence (not unified) each ubatch takes
the same number of tokens from a run of consecutive sequences, so slots with unequal drafts cost
one more pass over the weights per difference. The cost model counts passes (ubatches), tokens and
output rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from homellm.planner.speculation import expected_tokens

DRAFT_SIZES = (1, 2, 3, 4, 6, 8, 12, 16)
MIN_GAIN = 1.05  # a plan must beat no drafting by this much: estimates are noisy, a wrong draft costs
DECAY = 0.9  # per round: acceptance follows the text (a quote, then free text again)
COST_DECAY = 0.995  # per step: the machine's load changes
MAX_FIT_TOKENS = 128  # steps larger than this (long prompt chunks) tell little about a draft's cost
PRIOR_STEPS = 4.0  # the prior weighs as much as this many steps
MIN_SHAPE_STEPS = 3  # steps of one shape measured before its own average is trusted over the fit
RECENT = 10  # values a running mean is taken over, about: the newest weighs 1/RECENT once that many came
MIN_PAYOFF_STEPS = 5  # steps of each kind before drafting may be held back
EXPLORE_EVERY = 16  # while held back, one step in this many drafts again, to see whether it pays now
EXPLORE_SHARE = 0.02  # a draft model measures again at most this share of the decode time
ACCEPTANCE_BANDS = (0.5, 0.8)  # drafting steps are told apart by their drafts' acceptance: below, between, above


@dataclass
class Acceptance:
    """How often a slot's drafted tokens are the ones the model samples, recent rounds weighing more."""

    accepted: float = 1.0  # a prior of one in two
    rejected: float = 1.0

    def record(self, accepted: int, rejected: bool) -> None:
        """A round: `accepted` tokens in a row were right, then one was wrong (`rejected`) or the draft ended."""
        self.accepted = self.accepted * DECAY + accepted
        self.rejected = self.rejected * DECAY + rejected

    @property
    def rate(self) -> float:
        """The chance that a drafted token is accepted, given the ones before it were."""
        return self.accepted / (self.accepted + self.rejected)

    def carried(self) -> Acceptance:
        """A new slot's prior: this rate, weighing as much as the default prior (two rounds)."""
        return Acceptance(2 * self.rate, 2 * (1 - self.rate))


def count_ubatches(runs: Sequence[tuple[int, int]]) -> int:
    """How many passes llama.cpp makes over a batch of (sequence, tokens) runs, in batch order, with a
    KV cache per sequence: each pass takes the same count from the first sequence left and the ones
    numbered right after it (llama_batch_allocr::split_equal, sequential)."""
    left = [[seq, n] for seq, n in runs if n > 0]
    passes = 0
    while left:
        group = [left[0]]
        for run in left[1:]:
            if run[0] == group[-1][0] + 1:
                group.append(run)
        take = min(run[1] for run in group)
        for run in group:
            run[1] -= take
        left = [run for run in left if run[1] > 0]
        passes += 1
    return passes


@dataclass(frozen=True)
class StepShape:
    """What a decode step's time depends on: passes over the weights, tokens, rows of logits."""

    passes: int
    tokens: int
    outputs: int

    def features(self) -> np.ndarray:
        return np.array([self.passes, self.tokens, self.outputs], dtype=np.float64)


@dataclass
class StepCosts:
    """Seconds per decode step, measured: an average per shape seen often, else a linear fit
    (seconds per pass, per token, per output row) over recent steps, drawn toward a prior
    where the steps have not varied enough to tell."""

    _xtx: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))
    _xty: np.ndarray = field(default_factory=lambda: np.zeros(3))
    _by_shape: dict[StepShape, tuple[float, float]] = field(default_factory=dict)  # shape: (weight, mean seconds)
    _single: float | None = None  # a one-token step's seconds: the prior's scale
    _fit: np.ndarray | None = None

    def observe(self, shape: StepShape, seconds: float) -> None:
        """A decode step of this shape took `seconds`."""
        if shape.tokens > MAX_FIT_TOKENS or seconds <= 0:
            return
        x = shape.features()
        self._xtx = self._xtx * COST_DECAY + np.outer(x, x)
        self._xty = self._xty * COST_DECAY + x * seconds
        self._by_shape[shape] = recent_mean(self._by_shape.get(shape), seconds)  # about the last ten of this shape
        if shape == StepShape(1, 1, 1):
            self._single = self._by_shape[shape][1]
        self._fit = None

    @property
    def ready(self) -> bool:
        """Whether a one-token step has been measured: nothing can be predicted before."""
        return self._single is not None

    def predict(self, shape: StepShape) -> float:
        """Seconds a step of this shape is expected to take."""
        weight, mean = self._by_shape.get(shape, (0.0, 0.0))
        if weight >= MIN_SHAPE_STEPS:
            return mean
        return float(self._coefficients() @ shape.features())

    def _coefficients(self) -> np.ndarray:
        if self._fit is None:
            assert self._single is not None
            single = self._single
            # The prior: a pass is the whole of a one-token step (reading the weights); a token costs
            # half of that again and an output row a tenth, which is pessimistic for a GPU and about
            # right for two CPU cores. The steps measured move it.
            prior = np.array([single, single * 0.5, single * 0.1])
            strength = np.eye(3) * PRIOR_STEPS
            self._fit = np.linalg.solve(self._xtx + strength, self._xty + strength @ prior)
        return self._fit


@dataclass(frozen=True)
class Candidate:
    """A generating slot's chance to draft: its sequence, its proposed tokens, its acceptance rate."""

    seq: int
    proposal: tuple[int, ...]
    rate: float


DraftSeconds = Callable[[Sequence[tuple[int, int]]], float]
"""Seconds to make drafts of these sizes, as (sequence, tokens): a draft model's decodes."""


def plan_drafts(candidates: Sequence[Candidate], costs: StepCosts, at_least: int = 0,
                drafting: DraftSeconds | None = None) -> dict[int, int]:
    """How many tokens each slot (by sequence) drafts this step, for the most tokens per second;
    slots not named draft none. `drafting` prices making the drafts (a draft model; n-grams are free).
    Nothing drafts until a one-token step has been measured, except that a slot with a proposal
    drafts `at_least` of it (or all of a shorter one) whatever it costs."""
    planned = _fastest_plan(candidates, costs, drafting)
    if at_least > 0:
        for c in candidates:
            if c.proposal:
                planned[c.seq] = max(planned.get(c.seq, 0), min(at_least, len(c.proposal)))
    return planned


def _fastest_plan(candidates: Sequence[Candidate], costs: StepCosts, drafting: DraftSeconds | None) -> dict[int, int]:
    if not costs.ready or not any(c.proposal for c in candidates):
        return {}
    order = sorted(candidates, key=lambda c: c.seq)
    drafts = {c.seq: 0 for c in order}

    def rate_of(plan: dict[int, int]) -> float:
        runs = [(seq, 1 + k) for seq, k in plan.items()]
        tokens = sum(n for _, n in runs)
        shape = StepShape(count_ubatches(runs), tokens, tokens)
        expected = sum(expected_tokens(c.rate, plan[c.seq]) for c in order)
        made = drafting([(seq, k) for seq, k in plan.items() if k]) if drafting is not None else 0.0
        return expected / max(costs.predict(shape) + made, 1e-9)

    base = best = rate_of(drafts)
    for candidate in sorted(order, key=lambda c: -c.rate):
        for size in DRAFT_SIZES:
            if size > len(candidate.proposal):
                break
            trial = {**drafts, candidate.seq: size}
            rate = rate_of(trial)
            if rate > best:
                best, drafts = rate, trial
    if best < base * MIN_GAIN:
        return {}
    return {seq: k for seq, k in drafts.items() if k}


def explore_every(explore_seconds: float, step_seconds: float, least: int) -> int:
    """Steps between a draft model's measuring drafts, so that they take at most EXPLORE_SHARE of the
    decode time (and never fewer than `least`): each costs a catch-up that plain steps do not."""
    if step_seconds <= 0:
        return least
    return max(least, math.ceil(explore_seconds / (EXPLORE_SHARE * step_seconds)))


def recent_mean(entry: tuple[float, float] | None, value: float) -> tuple[float, float]:
    """A (count, mean) entry with `value` taken in: the plain mean of the first RECENT values, then
    each new one weighing 1/RECENT."""
    count, mean = entry or (0.0, 0.0)
    count = min(count + 1, RECENT)
    return count, mean + (value - mean) / count


def acceptance_band(rate: float) -> int:
    """0, 1 or 2: which of ACCEPTANCE_BANDS' ranges a drafting step's acceptance falls in."""
    return sum(rate >= edge for edge in ACCEPTANCE_BANDS)


@dataclass
class Payoff:
    """Tokens per second that whole steps yielded, plain and drafting, by how many slots were generating
    (and drafting steps by their drafts' acceptance band: quoting and free text differ). It checks the
    plan against the outcome, which also holds what the plan's estimates leave out (sampling every
    drafted position, Python, llama.cpp's passes for unequal drafts): while drafting steps of a band
    yield less than plain ones, that band waits, trying again now and then."""

    # (slots, band or None for plain steps): (steps, mean tokens/s)
    _rates: dict[tuple[int, int | None], tuple[float, float]] = field(default_factory=dict)
    _held: dict[tuple[int, int], int] = field(default_factory=dict)  # steps held back since that band last drafted

    def record(self, slots: int, band: int | None, tokens: int, seconds: float) -> None:
        """A step of `slots` generating slots (drafts in acceptance `band`, None: no drafts) yielded `tokens`
        in `seconds`."""
        if seconds <= 0:
            return
        self._rates[(slots, band)] = recent_mean(self._rates.get((slots, band)), tokens / seconds)

    def allows(self, slots: int, band: int) -> bool:
        """Whether a step with `slots` generating may draft drafts in acceptance `band`."""
        drafted, plain = self._rates.get((slots, band)), self._rates.get((slots, None))
        if drafted is None or plain is None or min(drafted[0], plain[0]) < MIN_PAYOFF_STEPS or drafted[1] >= plain[1]:
            return True
        held = self._held.get((slots, band), 0) + 1
        self._held[(slots, band)] = held % EXPLORE_EVERY
        return held % EXPLORE_EVERY == 0

