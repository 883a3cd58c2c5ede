"""Which stored models could draft for the model being planned, and what drafting would gain here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from homellm.advice.advisor import PlanQuestion
from homellm.errors import HomellmError
from homellm.hardware.types import Hardware
from homellm.models.drafts import draft_refusal
from homellm.models.gguf import ModelFacts, read_model_facts
from homellm.models.shape import shape_from_facts
from homellm.models.store import Store
from homellm.planner.plan import Plan, plan
from homellm.planner.speculation import (
    TYPICAL_ACCEPTANCE,
    SpeculationGain,
    predicted_verify_seconds,
    speculation_gain,
)

MAX_SUGGESTIONS = 3


@dataclass(frozen=True)
class DraftSuggestion:
    """A stored model that can draft for the planned one: its predicted speed and what it gains."""

    model: str
    decode_tps: float  # the draft model's own decode rate, predicted here
    typical: SpeculationGain  # at TYPICAL_ACCEPTANCE
    break_even: float | None  # the acceptance above which it pays; None: it never does here


def suggest_drafts(question: PlanQuestion, target: Plan, hardware: Hardware, store: Store | None) -> list[DraftSuggestion]:
    """Stored models smaller than the planned one with its tokenizer, best first (none for a catalog model,
    whose tokenizer is not known here)."""
    facts = _target_facts(question.model, store)
    if facts is None or store is None:
        return []
    verify = predicted_verify_seconds(target.decode_tps, target.prefill_tps)
    found = []
    for stored in store.list():
        draft = stored.facts
        if draft.tensor_bytes >= facts.tensor_bytes or draft_refusal(facts, draft, question.ctx) is not None:
            continue
        planned = plan(shape_from_facts(stored.name, draft), hardware, question.ctx, question.kv_type, suggest=False)
        if not planned.fits or planned.decode_tps <= 0:
            continue
        gain = speculation_gain(TYPICAL_ACCEPTANCE, verify, 1.0 / planned.decode_tps)
        found.append(DraftSuggestion(stored.name, planned.decode_tps, gain, gain.break_even))
    found.sort(key=lambda s: -s.typical.gain)
    return found[:MAX_SUGGESTIONS]


def _target_facts(model: str, store: Store | None) -> ModelFacts | None:
    try:
        if model.lower().endswith(".gguf"):
            return read_model_facts(Path(model).expanduser())
        if store is not None and store.exists(model):
            return store.get(model).facts
    except HomellmError:  # the plan itself says what is wrong with the model
        return None
    return None
