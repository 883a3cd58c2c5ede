"""The plan a model is loaded with: the context it gets on a machine, halved until it fits."""

from __future__ import annotations

from homellm.errors import DoesNotFitError
from homellm.hardware.types import Hardware
from homellm.models.shape import ModelShape
from homellm.planner.plan import Placement, Plan, plan

MIN_SERVING_CTX = 256


def fit_for_serving(shape: ModelShape, hardware: Hardware, ctx: int | None, default_ctx: int,
                    parallel: int = 1) -> Plan:
    """The plan to load a model with on this machine, `parallel` sequences of `ctx` tokens each.

    With `ctx` given, that context or a `DoesNotFitError` carrying what would fit; without,
    `default_ctx` capped by the model's trained context, halved until the model fits.
    """
    # A MoE model that does not fit the GPUs keeps the experts of its first layers in RAM
    # (the engine's tensor overrides, as llama-server's --n-cpu-moe).
    if ctx is not None:
        result = plan(shape, hardware, ctx, parallel=parallel)
        if not result.fits:
            raise _does_not_fit(result)
        return result
    wanted = min(default_ctx, shape.context_train or default_ctx)
    while True:
        last = wanted // 2 < MIN_SERVING_CTX
        result = plan(shape, hardware, wanted, suggest=last, parallel=parallel)
        if result.fits:
            return result
        if last:
            raise _does_not_fit(result)
        wanted //= 2


def _does_not_fit(result: Plan) -> DoesNotFitError:
    short = [f"{load.device} is {(load.total_bytes - load.available_bytes) / 1e9:.1f} GB short"
             for load in result.devices if not load.fits]
    fixes = [s.change for s in result.suggestions if s.fits]
    return DoesNotFitError(
        f"{result.model} needs {result.total_bytes / 1e9:.1f} GB at {_tokens(result.placement)} "
        "and does not "
        f"fit this machine: {', '.join(short)}",
        hint=(f"it would fit with {' or '.join(fixes)}; " if fixes else "")
        + f"homellm plan {result.model} shows the whole plan")


def _tokens(placement: Placement) -> str:
    return (f"{placement.parallel} x {placement.ctx:,} tokens" if placement.parallel > 1
            else f"{placement.ctx:,} tokens")
