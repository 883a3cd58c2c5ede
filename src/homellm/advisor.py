"""What the planner says about a named model on this machine or on described hardware (CLI and HTTP share it)."""

from __future__ import annotations

from dataclasses import dataclass

from homellm.errors import DoesNotFitError
from homellm.hardware.compose import compose_hardware
from homellm.hardware.types import Hardware
from homellm.models.resolve import resolve_shape
from homellm.models.shape import ModelShape
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


MIN_SERVING_CTX = 256


def fit_for_serving(shape: ModelShape, hardware: Hardware, ctx: int | None, default_ctx: int) -> Plan:
    """The plan to load a model with on this machine.

    With `ctx` given, that context or a `DoesNotFitError` carrying what would fit; without,
    `default_ctx` capped by the model's trained context, halved until the model fits.
    """
    # The engine cannot keep experts in RAM yet (tensor overrides come with the MoE issue),
    # so a MoE model that does not fit the GPUs is planned split by whole layers.
    if ctx is not None:
        result = plan(shape, hardware, ctx, expert_offload=False)
        if not result.fits:
            raise _does_not_fit(result)
        return result
    wanted = min(default_ctx, shape.context_train or default_ctx)
    while True:
        result = plan(shape, hardware, wanted, suggest=wanted // 2 < MIN_SERVING_CTX, expert_offload=False)
        if result.fits:
            return result
        if wanted // 2 < MIN_SERVING_CTX:
            raise _does_not_fit(result)
        wanted //= 2


def _does_not_fit(result: Plan) -> DoesNotFitError:
    short = [f"{load.device} is {(load.total_bytes - load.available_bytes) / 1e9:.1f} GB short"
             for load in result.devices if not load.fits]
    fixes = [s.change for s in result.suggestions if s.fits]
    return DoesNotFitError(
        f"{result.model} needs {result.total_bytes / 1e9:.1f} GB at {result.placement.ctx:,} tokens and does not "
        f"fit this machine: {', '.join(short)}",
        hint=(f"it would fit with {' or '.join(fixes)}; " if fixes else "")
        + f"homellm plan {result.model} shows the whole plan")
