"""The plan a model is loaded with: the context it gets on a machine, halved until it fits, and the KV
cache type that makes a context asked for fit."""

from __future__ import annotations

from dataclasses import replace

from homellm.errors import DoesNotFitError
from homellm.hardware.types import Hardware
from homellm.models.shape import ModelShape
from homellm.planner.plan import Placement, Plan, plan

MIN_SERVING_CTX = 256
# Tried in turn when a context asked for does not fit with the default cache: Q8_0 is close to lossless
# (measured with `homellm eval --kv-type`), Q4_0 halves it again at a cost in answers.
SMALLER_KV_TYPES = ("Q8_0", "Q4_0")


def fit_for_serving(shape: ModelShape, hardware: Hardware, ctx: int | None, default_ctx: int,
                    parallel: int = 1, kv_type: str | None = None) -> Plan:
    """The plan to load a model with on this machine, `parallel` sequences of `ctx` tokens each.

    With `ctx` given, that context or a `DoesNotFitError` carrying what would fit; without,
    `default_ctx` capped by the model's trained context, halved until the model fits.
    `kv_type` None: an F16 cache, or, when only a smaller one lets the `ctx` given fit, the
    first of SMALLER_KV_TYPES that does (said in the plan's warnings).
    """
    # A MoE model that does not fit the GPUs keeps the experts of its first layers in RAM
    # (the engine's tensor overrides, as llama-server's --n-cpu-moe).
    if ctx is not None:
        result = plan(shape, hardware, ctx, kv_type or "F16", parallel=parallel)
        if result.fits:
            return result
        for smaller in SMALLER_KV_TYPES if kv_type is None else ():
            trial = plan(shape, hardware, ctx, smaller, parallel=parallel)
            if trial.fits:
                said = (f"a {smaller} KV cache, so that {_tokens(trial.placement)} fit (an F16 cache needs "
                        f"{result.kv_cache_bytes / 1e9:.1f} GB); --kv-type f16 with a smaller --ctx keeps F16")
                if not hardware.accelerators:
                    # Measured (docs/performance.md): 0.70x of F16's decode rate at 4,096 tokens for Q8_0.
                    said += "; on a CPU a quantized cache also decodes slower at long contexts"
                return replace(trial, warnings=(said, *trial.warnings))
        raise _does_not_fit(result)
    wanted = min(default_ctx, shape.context_train or default_ctx)
    while True:
        last = wanted // 2 < MIN_SERVING_CTX
        result = plan(shape, hardware, wanted, kv_type or "F16", suggest=last, parallel=parallel)
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
