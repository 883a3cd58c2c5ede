"""What the planner says about a named model on this machine or on described hardware (CLI and HTTP share it)."""

from __future__ import annotations

from dataclasses import dataclass

from homellm.hardware.compose import compose_hardware
from homellm.hardware.types import Hardware
from homellm.models.resolve import resolve_shape
from homellm.models.store import Store
from homellm.planner.plan import Plan, choose_quant, plan


@dataclass(frozen=True)
class PlanQuestion:
    """A plan request as a user phrases it."""

    model: str
    quant: str | None = None
    gpus: tuple[str, ...] = ()
    ram_gb: float | None = None
    memory: str | None = None
    ctx: int = 4096
    kv_type: str = "F16"


def advise(question: PlanQuestion, machine: Hardware | None, store: Store | None,
           allow_paths: bool = True) -> tuple[Plan, Hardware]:
    """The plan for the question; a catalog model without a quant gets the best quant that fits."""
    shape = resolve_shape(question.model, store, allow_paths)
    hardware = compose_hardware(machine, list(question.gpus), question.ram_gb, question.memory)
    if question.quant is None and shape.quant is None:
        return choose_quant(shape, hardware, question.ctx, question.kv_type), hardware
    return plan(shape, hardware, question.ctx, question.kv_type, question.quant), hardware
