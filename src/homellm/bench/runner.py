"""`homellm bench`: prefill and decode rates at several context depths, beside the planner's prediction.

Like `llama-bench -d`, each depth is measured as a prompt of `n_prompt` tokens
evaluated on top of `depth` cached tokens, and `n_gen` one-token decode steps
after `depth` tokens. Medians over repeats; the spread is the min and max.
"""

from __future__ import annotations

import hashlib
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from homellm.bench.power import EnergyMeter, open_meter
from homellm.engine.llama import EngineOptions, LlamaEngine
from homellm.errors import InvalidRequestError
from homellm.hardware.detect import MachineReport
from homellm.hardware.types import ASSUMED_CPU_WATTS, Hardware
from homellm.models.shape import ModelShape
from homellm.planner.overrides import TensorOverride
from homellm.planner.plan import plan
from homellm.planner.speed import efficiency

MAX_DEPTH = 1 << 20
FILLER = " ".join(str(i % 1000) for i in range(4000))  # numbers tokenize to many tokens, deterministically


@dataclass(frozen=True)
class BenchSettings:
    """What to measure."""

    depths: tuple[int, ...] = (0, 512, 2048)
    n_prompt: int = 512
    n_gen: int = 128
    repeat: int = 3
    n_threads: int | None = None
    tensor_overrides: tuple[TensorOverride, ...] = ()  # --cpu-moe, --n-cpu-moe, --override-tensor

    @property
    def n_ctx(self) -> int:
        return max(self.depths) + max(self.n_prompt, self.n_gen) + 16


@dataclass(frozen=True)
class DepthResult:
    """Rates at one context depth: measured (median, min, max) and predicted."""

    depth: int
    prefill_tps: float
    prefill_range: tuple[float, float]
    decode_tps: float
    decode_range: tuple[float, float]
    predicted_prefill_tps: float
    predicted_decode_tps: float
    decode_joules_per_token: float | None = None  # from energy counters; None when none was readable


@dataclass(frozen=True)
class BenchResult:
    """One bench run, with what is needed to compare it with later ones."""

    model: str
    model_digest: str
    machine_fingerprint: str
    device: str  # the device that did the work, whose efficiency this run measured
    llama_cpp_version: str
    settings: BenchSettings
    load_seconds: float
    peak_rss_bytes: int
    depths: tuple[DepthResult, ...]
    planned_efficiency: float  # what the prediction beside it used (published, or an earlier measurement)
    measured_efficiency: float
    energy_source: str = ""  # the counters read, or how the estimate below was made
    estimated_watts: float | None = None  # board power used for the estimate when no counter was readable
    created: float = field(default_factory=time.time)


def check_settings(settings: BenchSettings) -> None:
    """Refuse settings that cannot be measured."""
    if not settings.depths or any(d < 0 or d > MAX_DEPTH for d in settings.depths):
        raise InvalidRequestError(f"depths {list(settings.depths)} are not usable",
                                  hint=f"give depths between 0 and {MAX_DEPTH:,}, such as 0,512,2048", param="depths")
    for value, name in ((settings.n_prompt, "n_prompt"), (settings.n_gen, "n_gen"), (settings.repeat, "repeat")):
        if value < 1:
            raise InvalidRequestError(f"{name.replace('_', '-')} must be at least 1", hint="give a positive count",
                                      param=name)


def machine_fingerprint(report: MachineReport) -> str:
    """Stable across runs on one machine: CPU, core count, RAM size and accelerators."""
    parts = [report.cpu.model, str(report.cpu.physical_cores), str(round(report.ram_total_bytes / 2**30)),
             *sorted(d.name for d in report.hardware.accelerators)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def run_bench(path: Path, name: str, digest: str, shape: ModelShape, report: MachineReport, settings: BenchSettings,
              step: Callable[[str], None] = lambda _: None, meter: EnergyMeter | None = None) -> BenchResult:
    """Load the model, measure every depth `repeat` times, and set the measurement beside the plan."""
    check_settings(settings)
    meter = meter if meter is not None else open_meter()
    started = time.perf_counter()
    engine = LlamaEngine(path, EngineOptions(n_ctx=settings.n_ctx, n_threads=settings.n_threads,
                                          tensor_overrides=settings.tensor_overrides,
                                          # as llama-server's -ngl 99 --n-cpu-moe N: the rest on the GPU
                                          n_gpu_layers=-1 if settings.tensor_overrides else 0))
    load_seconds = time.perf_counter() - started
    try:
        tokens = _filler_tokens(engine, max(settings.depths) + settings.n_prompt)
        measured = [_measure_depth(engine, tokens, depth, settings, step, meter) for depth in settings.depths]
    finally:
        engine.close()
    hardware = report.hardware
    results = tuple(_with_prediction(m, shape, hardware, settings) for m in measured)
    worker = _working_device(shape, hardware, settings)
    device = next(d for d in hardware.devices if d.name == worker)
    planned = efficiency(device).value
    first = results[0]
    watts = None if meter.source else (device.tdp_w or ASSUMED_CPU_WATTS)
    energy = (f"counters: {meter.source}" if meter.source else
              f"no energy counter readable here; estimate: {watts:.0f} W board power / decode rate"
              + ("" if device.tdp_w else " (CPU power unknown, 65 W assumed)"))
    return BenchResult(
        model=name, model_digest=digest, machine_fingerprint=machine_fingerprint(report), device=worker,
        llama_cpp_version=_llama_cpp_version(), settings=settings, load_seconds=load_seconds,
        peak_rss_bytes=_peak_rss(), depths=results, planned_efficiency=planned,
        # Decode time is bytes over bandwidth x efficiency: the efficiency that would have predicted
        # the measured rate at the shallowest depth.
        measured_efficiency=round(planned * first.decode_tps / first.predicted_decode_tps, 4),
        energy_source=energy, estimated_watts=watts)


def _measure_depth(engine: LlamaEngine, tokens: list[int], depth: int, settings: BenchSettings,
                   step: Callable[[str], None], meter: EnergyMeter) -> DepthResult:
    prefill, decode, joules = [], [], []
    context = tokens[: max(depth, 1)]
    for _ in range(settings.repeat):
        step(f"depth {depth}: prompt")
        engine.fill(tokens[:depth])  # a prompt on top of `depth` cached tokens
        prefill.append(settings.n_prompt / engine.time_eval(tokens[depth: depth + settings.n_prompt]))
        step(f"depth {depth}: decode")
        engine.fill(context)
        before = meter.read()
        decode.append(settings.n_gen / engine.time_steps(context[-1], settings.n_gen))
        joules.append(meter.joules(before, meter.read()) / settings.n_gen)
    per_token = statistics.median(joules) if meter.source else None
    return DepthResult(depth, statistics.median(prefill), (min(prefill), max(prefill)), statistics.median(decode),
                       (min(decode), max(decode)), 0.0, 0.0, per_token)


def _with_prediction(measured: DepthResult, shape: ModelShape, hardware: Hardware,
                     settings: BenchSettings) -> DepthResult:
    planned = plan(shape, hardware, max(measured.depth, 1), suggest=False, expert_offload=False)
    return replace(measured, predicted_prefill_tps=planned.prefill_tps,
                   predicted_decode_tps=planned.speed_by_depth[-1][1])


def _working_device(shape: ModelShape, hardware: Hardware, settings: BenchSettings) -> str:
    planned = plan(shape, hardware, settings.n_ctx, suggest=False, expert_offload=False)
    working = [load for load in planned.devices if load.layers]
    return max(working, key=lambda load: load.layers).device if working else hardware.host.name


def _filler_tokens(engine: LlamaEngine, count: int) -> list[int]:
    tokens = engine.tokenize(FILLER)
    while len(tokens) < count:
        tokens += tokens
    return tokens[:count]


def _peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def _llama_cpp_version() -> str:
    from importlib.metadata import version

    return f"llama-cpp-python {version('llama_cpp_python')}"
