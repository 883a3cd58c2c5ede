"""A plan: where a model's layers go on some hardware, whether it fits, how fast it runs, and what would fit.

Pure: a model shape and a hardware description in, a `Plan` out. Placement
follows llama.cpp's own order, so the plan is something `llama-server` flags
can reproduce: layers fill the GPUs from the last one back; a mixture-of-experts
model that does not fit keeps every layer's attention on the GPU and moves the
experts of the first N layers to system RAM (`--n-cpu-moe N`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from homellm.errors import InvalidRequestError
from homellm.hardware.types import Device, Hardware
from homellm.models.shape import ModelShape
from homellm.planner.memory import (
    N_UBATCH,
    WeightSplit,
    compute_buffer_bytes,
    device_overhead_bytes,
    kv_cache_bytes,
    kv_read_bytes,
    split_weights,
)
from homellm.planner.quants import (
    DEFAULT_QUANT,
    Quant,
    kv_label,
    kv_pair,
    quality_band,
    quant,
)
from homellm.planner.speed import (
    EXPERTS_IN_RAM_FACTOR,
    compute_seconds,
    efficiency,
    layer_seconds,
    read_seconds,
)

GB = 1e9
HOST_RESERVE_BYTES = 1 << 30  # left to the operating system and other programs
UNIFIED_GPU_SHARE = 0.75  # Apple's recommendedMaxWorkingSetSize is 65-78% of RAM
PCIE_GBS = 25.0  # host weights streamed to the GPU per prefill micro-batch (PCIe 4.0 x16, effective)
MAX_CTX = 10_000_000
SPEED_DEPTHS = (0, 4096, 16384, 32768, 65536, 131072, 262144, 524288, 1048576)
SUGGESTED_QUANTS = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "IQ4_XS", "Q3_K_M", "Q2_K")
SLOW_TPS = 5.0
FILE_QUANT = "as stored"


@dataclass(frozen=True)
class DeviceLoad:
    """What one device holds under a plan."""

    device: str
    kind: str
    layers: int
    weights_bytes: int
    kv_cache_bytes: int
    compute_bytes: int
    overhead_bytes: int
    available_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.compute_bytes + self.overhead_bytes

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.available_bytes


@dataclass(frozen=True)
class Placement:
    """llama.cpp's knobs: `-ngl`, `--n-cpu-moe`, `-c` (per sequence), `-ctk/-ctv`, `-np`."""

    gpu_layers: int
    cpu_moe_layers: int
    ctx: int
    kv_type: str
    parallel: int = 1  # sequences, each with its own KV cache of `ctx` tokens


@dataclass(frozen=True)
class Suggestion:
    """A change that would make the model fit (or run better), and the plan it gives."""

    change: str
    fits: bool
    total_bytes: int
    decode_tps: float


@dataclass(frozen=True)
class Plan:
    """Everything the planner says about one model on one machine."""

    model: str
    quant: str
    kl_mean: float | None
    quality: str
    weights_bytes: int
    kv_cache_bytes: int
    total_bytes: int
    fits: bool
    placement: Placement
    devices: tuple[DeviceLoad, ...]
    decode_tps: float
    prefill_tps: float
    speed_by_depth: tuple[tuple[int, float], ...]
    efficiency_source: str
    kl_source: str = "published"  # "measured" when a quant sweep of this model gave the KL
    warnings: tuple[str, ...] = ()
    suggestions: tuple[Suggestion, ...] = field(default=())
    explanation: str = ""


def plan(shape: ModelShape, hardware: Hardware, ctx: int, kv_type: str = "F16", quant_name: str | None = None,
         suggest: bool = True, expert_offload: bool = True, parallel: int = 1,
         cpu_moe_layers: int | None = None, measured_kl: Mapping[str, float] | None = None) -> Plan:
    """Place `shape` on `hardware` at a context of `ctx` tokens and predict its speed.

    Without `expert_offload`, a MoE model that does not fit the GPUs is split by whole layers,
    as an engine without tensor overrides must load it. `parallel` sequences each get a KV
    cache of `ctx` tokens (a server's slots); speed is predicted for one sequence.
    `cpu_moe_layers` fixes the experts kept in RAM (llama-server's `--n-cpu-moe N`, every
    layer on the GPUs) instead of the smallest number that fits. `measured_kl` (by quant, from
    `homellm quant sweep` of this model) replaces the published KL of the quants it has.
    """
    _check(shape, hardware, ctx, kv_type)
    kv_type = kv_label(*kv_pair(kv_type))
    info = _quant_of(shape, quant_name)
    own_file = shape.weights_bytes is not None and info.name == (shape.quant or FILE_QUANT)
    weights = split_weights(shape, None if own_file else info.name)
    if cpu_moe_layers is not None:
        placement, loads = _place_experts(shape, hardware, weights, ctx, kv_type, parallel, cpu_moe_layers)
    else:
        placement, loads = _place(shape, hardware, weights, ctx, kv_type, expert_offload, parallel)
    fits = all(load.fits for load in loads)
    depths = tuple(d for d in SPEED_DEPTHS if d < ctx) + (ctx,)
    by_depth = tuple((d, _decode_tps(shape, hardware, weights, placement, d, info.speed_factor)) for d in depths)
    measured = (measured_kl or {}).get(info.name)
    kl_mean, kl_source = (measured, "measured") if measured is not None else (info.kl_mean, "published")
    result = Plan(
        model=shape.name, quant=info.name, kl_mean=kl_mean, quality=quality_band(kl_mean), kl_source=kl_source,
        weights_bytes=weights.total, kv_cache_bytes=kv_cache_bytes(shape, ctx * parallel, kv_type),
        total_bytes=sum(load.total_bytes for load in loads), fits=fits, placement=placement, devices=loads,
        decode_tps=by_depth[0][1], prefill_tps=_prefill_tps(shape, hardware, weights, placement),
        speed_by_depth=by_depth, efficiency_source=_efficiency_source(hardware, loads),
    )
    result = replace(result, warnings=_warnings(shape, result))
    if suggest and not fits:
        result = replace(result, suggestions=_suggestions(shape, hardware, result, expert_offload, cpu_moe_layers))
    return replace(result, explanation=explain(result, shape))


def choose_quant(shape: ModelShape, hardware: Hardware, ctx: int, kv_type: str = "F16",
                 min_decode_tps: float = 0.0, measured_kl: Mapping[str, float] | None = None) -> Plan:
    """The best-quality common quant that fits at `ctx` and decodes at least `min_decode_tps`.

    One that fits wholly on the GPUs wins over a better one that spills layers to the CPU,
    which would cost several times the speed. Quality is the measured KL where a sweep gave
    one, else the published table's.
    """
    measured = measured_kl or {}
    estimated = _on_measured_scale(measured)
    ranked = sorted(SUGGESTED_QUANTS, key=lambda name: estimated[name]) if measured else SUGGESTED_QUANTS
    plans = [plan(shape, hardware, ctx, kv_type, name, suggest=False, measured_kl=measured) for name in ranked]
    usable = [p for p in plans if p.fits and p.decode_tps >= min_decode_tps]
    on_gpus = [p for p in usable if hardware.accelerators and p.devices[-1].layers == 0
               and p.placement.cpu_moe_layers == 0]
    chosen = (on_gpus or usable or plans[-1:])[0]
    return plan(shape, hardware, ctx, kv_type, chosen.quant, measured_kl=measured)


def _on_measured_scale(measured: Mapping[str, float]) -> dict[str, float]:
    """KL of every suggested quant on this model's scale: measured where a sweep gave it, else the
    published figure times the typical measured/published ratio (a small model loses more)."""
    ratios = [measured[name] / q.kl_mean for name in measured
              if (q := quant(name)).kl_mean and measured[name] > 0]
    factor = math.exp(sum(math.log(r) for r in ratios) / len(ratios)) if ratios else 1.0
    return {name: measured.get(name, (quant(name).kl_mean or 0.0) * factor) for name in SUGGESTED_QUANTS}


def _quant_of(shape: ModelShape, quant_name: str | None) -> Quant:
    """The quant asked for, or the file's own: known to the table, or described by the file's bytes."""
    own = quant_name in (None, FILE_QUANT) or (shape.quant is not None and quant_name.upper() == shape.quant.upper())
    if own and shape.weights_bytes is not None:
        try:
            return quant(shape.quant or "")
        except InvalidRequestError:  # IQ2_XS, TQ1_0, a file with no file type: its bytes say enough
            bits = shape.weights_bytes * 8 / max(shape.parameters, 1)
            return Quant(shape.quant or FILE_QUANT, round(bits, 2), None, 1.0)
    return quant(quant_name or DEFAULT_QUANT)


def _check(shape: ModelShape, hardware: Hardware, ctx: int, kv_type: str) -> None:
    if not 1 <= ctx <= MAX_CTX:
        raise InvalidRequestError(f"a context of {ctx} tokens is not possible",
                                  hint=f"give a context between 1 and {MAX_CTX:,} tokens", param="ctx")
    kv_pair(kv_type)
    for device in hardware.devices:
        if device.memory_bytes < 0:
            raise InvalidRequestError(f"{device.name} has negative memory", hint="give a positive size", param="ram")
    if shape.layers < 1:
        raise InvalidRequestError(f"{shape.name} has no layers", hint="the model's metadata is incomplete")


def _place(shape: ModelShape, hardware: Hardware, weights: WeightSplit, ctx: int,
           kv_type: str, expert_offload: bool, parallel: int) -> tuple[Placement, tuple[DeviceLoad, ...]]:
    gpus = [d for d in hardware.accelerators]
    kv_layer = kv_cache_bytes(shape, ctx * parallel, kv_type) / shape.layers
    full = _fill(shape, hardware, gpus, weights, kv_layer, shape.layers if gpus else 0, 0)
    # When the GPUs hold everything, a short host is the host's problem: moving layers to it cannot help.
    if all(load.fits for load in full[:-1]) or not gpus:
        return Placement(shape.layers if gpus else 0, 0, ctx, kv_type, parallel), full
    if expert_offload and shape.is_moe and weights.experts_per_layer:
        for n_cpu_moe in range(1, shape.layers + 1):
            loads = _fill(shape, hardware, gpus, weights, kv_layer, shape.layers, n_cpu_moe)
            if all(load.fits for load in loads[:-1]):
                return Placement(shape.layers, n_cpu_moe, ctx, kv_type, parallel), loads
    for gpu_layers in range(shape.layers - 1, -1, -1):
        loads = _fill(shape, hardware, gpus, weights, kv_layer, gpu_layers, 0)
        if all(load.fits for load in loads[:-1]):
            return Placement(gpu_layers, 0, ctx, kv_type, parallel), loads
    return Placement(0, 0, ctx, kv_type, parallel), _fill(shape, hardware, gpus, weights, kv_layer, 0, 0)


def _place_experts(shape: ModelShape, hardware: Hardware, weights: WeightSplit, ctx: int, kv_type: str,
                   parallel: int, cpu_moe_layers: int) -> tuple[Placement, tuple[DeviceLoad, ...]]:
    """Every layer on the GPUs with the experts of the first `cpu_moe_layers` layers in RAM."""
    if not shape.is_moe and cpu_moe_layers:
        raise InvalidRequestError(f"{shape.name} has no experts to keep in RAM",
                                  hint="leave out --n-cpu-moe for a dense model", param="n_cpu_moe")
    if not 0 <= cpu_moe_layers <= shape.layers:
        raise InvalidRequestError(f"--n-cpu-moe {cpu_moe_layers} is outside 0 to {shape.layers} layers",
                                  hint=f"give at most {shape.layers}", param="n_cpu_moe")
    gpus = list(hardware.accelerators)
    layers = shape.layers if gpus else 0
    kv_layer = kv_cache_bytes(shape, ctx * parallel, kv_type) / shape.layers
    loads = _fill(shape, hardware, gpus, weights, kv_layer, layers, cpu_moe_layers if gpus else 0)
    return Placement(layers, cpu_moe_layers if gpus else 0, ctx, kv_type, parallel), loads


@dataclass(frozen=True)
class _GpuShare:
    """The layers one GPU holds under a placement."""

    device: Device
    layers: int
    experts_off: int  # of those layers, how many keep their experts in system RAM
    holds_output: bool


def _gpu_shares(shape: ModelShape, gpus: list[Device], gpu_layers: int, n_cpu_moe: int) -> list[_GpuShare]:
    """The last `gpu_layers` layers spread over the GPUs by memory; the output goes with the last layer."""
    start = shape.layers - gpu_layers
    shares = []
    for index, (gpu, count) in enumerate(zip(gpus, _layer_shares(gpus, gpu_layers), strict=True)):
        experts_off = sum(1 for i in range(start, start + count) if i < n_cpu_moe)
        shares.append(_GpuShare(gpu, count, experts_off, gpu_layers == shape.layers and index == len(gpus) - 1))
        start += count
    return shares


def _fill(shape: ModelShape, hardware: Hardware, gpus: list[Device], weights: WeightSplit, kv_layer: float,
          gpu_layers: int, n_cpu_moe: int) -> tuple[DeviceLoad, ...]:
    """Loads with `gpu_layers` (the last ones) spread over the GPUs by free memory, the rest on the host."""
    host = hardware.host
    shares = _gpu_shares(shape, gpus, gpu_layers, n_cpu_moe)
    loads: list[DeviceLoad] = []
    for share in shares:
        gpu = share.device
        used = share.layers > 0 or share.holds_output
        loads.append(DeviceLoad(
            device=gpu.name, kind=gpu.kind, layers=share.layers,
            weights_bytes=share.layers * weights.per_layer - share.experts_off * weights.experts_per_layer
            + (weights.output if share.holds_output else 0),
            kv_cache_bytes=int(kv_layer * share.layers),
            compute_bytes=compute_buffer_bytes(shape) if used else 0,
            overhead_bytes=device_overhead_bytes(gpu.backend) if used else 0,
            available_bytes=int(gpu.available_bytes * UNIFIED_GPU_SHARE) if gpu.kind in ("apple", "apu")
            else gpu.available_bytes))
    host_layers = shape.layers - gpu_layers
    host_weights = (weights.token_embd + host_layers * weights.per_layer
                    + sum(s.experts_off for s in shares) * weights.experts_per_layer
                    + (0 if any(s.holds_output for s in shares) else weights.output))
    host_load = DeviceLoad(
        device=host.name, kind=host.kind, layers=host_layers, weights_bytes=host_weights,
        kv_cache_bytes=int(kv_layer * host_layers),
        compute_bytes=compute_buffer_bytes(shape) if host_layers or not gpus else 0, overhead_bytes=0,
        available_bytes=max(0, host.available_bytes - HOST_RESERVE_BYTES))
    unified = [load for load in loads if load.kind in ("apple", "apu")]
    if unified:
        # One pool: what the GPU part takes is not there for the rest.
        host_load = replace(host_load, available_bytes=max(0, host_load.available_bytes - unified[0].total_bytes))
    return (*loads, host_load)


def _layer_shares(gpus: list[Device], layers: int) -> list[int]:
    """Layers per GPU in proportion to its memory, as llama.cpp's default tensor split does."""
    if not gpus:
        return []
    sizes = [max(g.available_bytes, 1) for g in gpus]
    shares = [int(layers * s / sum(sizes)) for s in sizes]
    shares[-1] += layers - sum(shares)
    return shares


def _decode_tps(shape: ModelShape, hardware: Hardware, weights: WeightSplit, placement: Placement,
                depth: int, speed_factor: float) -> float:
    used_share = shape.experts_used / shape.experts if shape.is_moe else 1.0
    read_layer = weights.dense_per_layer + weights.experts_per_layer * used_share
    read_experts = weights.experts_per_layer * used_share
    shares = _gpu_shares(shape, list(hardware.accelerators), placement.gpu_layers, placement.cpu_moe_layers)
    seconds = 0.0
    for share in shares:
        nbytes = (share.layers * read_layer - share.experts_off * read_experts
                  + (weights.output if share.holds_output else 0)
                  + kv_read_bytes(shape, depth, placement.kv_type, share.layers))
        seconds += read_seconds(share.device, nbytes, speed_factor) + layer_seconds(share.device, share.layers)
    host_layers = shape.layers - placement.gpu_layers
    host_bytes = (host_layers * read_layer + (0 if any(s.holds_output for s in shares) else weights.output)
                  + kv_read_bytes(shape, depth, placement.kv_type, host_layers))
    experts_in_ram = sum(s.experts_off for s in shares) * read_experts
    seconds += (read_seconds(hardware.host, host_bytes, speed_factor) + layer_seconds(hardware.host, host_layers)
                + read_seconds(hardware.host, experts_in_ram, speed_factor * EXPERTS_IN_RAM_FACTOR))
    return 1 / seconds if seconds > 0 else 0.0


def _prefill_tps(shape: ModelShape, hardware: Hardware, weights: WeightSplit, placement: Placement) -> float:
    """Tokens per second over one micro-batch: compute-bound, on the GPU when there is one."""
    flops = 2 * shape.active_parameters * N_UBATCH
    gpus = list(hardware.accelerators)
    if not gpus or placement.gpu_layers == 0:
        seconds = compute_seconds(hardware.host, flops)
    else:
        fastest = max(gpus, key=lambda g: g.fp16_tflops or 0)
        host_weights = (shape.layers - placement.gpu_layers) * weights.per_layer \
            + placement.cpu_moe_layers * weights.experts_per_layer
        # llama.cpp streams host-resident weights to the GPU for each large batch.
        seconds = compute_seconds(fastest, flops) + (host_weights / (PCIE_GBS * GB) if fastest.kind == "gpu" else 0)
    return N_UBATCH / seconds if seconds > 0 else 0.0


def _efficiency_source(hardware: Hardware, loads: tuple[DeviceLoad, ...]) -> str:
    # The devices whose layers are read for every token; the host's embedding rows do not count.
    used = {load.device for load in loads if load.layers} or {loads[-1].device}
    sources = {efficiency(d).source for d in hardware.devices if d.name in used}
    return "measured" if sources == {"measured"} else "published"


def _warnings(shape: ModelShape, result: Plan) -> tuple[str, ...]:
    warnings = []
    ctx = result.placement.ctx
    if shape.context_train and ctx > shape.context_train:
        factor = ctx / shape.context_train
        warnings.append(f"{ctx:,} tokens is beyond the {shape.context_train:,} the model was trained on: "
                        f"it needs RoPE scaling (YaRN factor {factor:.2g}) and answers may get worse")
    if result.quality in ("noticeable", "degraded"):
        warnings.append(f"{result.quant} loses {result.quality}ly against F16 (mean KL {result.kl_mean} on "
                        "Llama-3-8B); prefer Q4_K_M or better when it fits")
    if set(kv_pair(result.placement.kv_type)) & {"Q4_0", "Q4_1", "IQ4_NL"}:
        warnings.append("a 4-bit KV cache degrades answers; Q8_0 is close to lossless")
    host_layers = next(load.layers for load in reversed(result.devices))
    if host_layers and len(result.devices) > 1:
        warnings.append(f"{host_layers} of {shape.layers} layers run on the CPU, which bounds decode speed")
    if result.fits and result.decode_tps < SLOW_TPS:
        warnings.append(f"slow: about {result.decode_tps:.1f} tokens/s")
    return tuple(warnings)


def _suggestions(shape: ModelShape, hardware: Hardware, current: Plan, expert_offload: bool,
                 cpu_moe_layers: int | None = None) -> tuple[Suggestion, ...]:
    """What would fit: a quantized KV cache, a shorter context, a smaller quant, more memory."""
    ctx, kv_type, quant_name = current.placement.ctx, current.placement.kv_type, current.quant
    parallel = current.placement.parallel
    candidates: list[tuple[str, Plan]] = []
    if kv_type == "F16":
        trial = plan(shape, hardware, ctx, "Q8_0", quant_name, False, expert_offload, parallel,
                     cpu_moe_layers=cpu_moe_layers)
        candidates.append(("a Q8_0 KV cache (--kv-type q8_0)", trial))
    for shorter in (c for c in (ctx // 2, ctx // 4, ctx // 8, 8192, 4096, 2048) if 2048 <= c < ctx):
        trial = plan(shape, hardware, shorter, kv_type, quant_name, False, expert_offload, parallel,
                     cpu_moe_layers=cpu_moe_layers)
        if trial.fits:
            candidates.append((f"a context of {shorter:,} tokens (--ctx {shorter})", trial))
            break
    bits = _quant_of(shape, quant_name).bits_per_weight
    smaller = [q for q in SUGGESTED_QUANTS if quant(q).bits_per_weight < bits]
    for name in smaller:
        trial = plan(shape, hardware, ctx, kv_type, name, False, expert_offload, parallel,
                     cpu_moe_layers=cpu_moe_layers)
        if trial.fits:
            candidates.append((f"a {name} file ({trial.weights_bytes / GB:.0f} GB of weights)", trial))
            break
    host_load = current.devices[-1]
    missing = host_load.total_bytes - host_load.available_bytes
    gpu_missing = sum(max(0, load.total_bytes - load.available_bytes) for load in current.devices[:-1])
    if missing > 0 and not gpu_missing:
        ram = (hardware.host.memory_bytes + missing) / GB
        bigger = Hardware(tuple(d.with_memory(int(ram * GB) + HOST_RESERVE_BYTES) if d is hardware.host else d
                                for d in hardware.devices))
        trial = plan(shape, bigger, ctx, kv_type, quant_name, False, expert_offload, parallel,
                     cpu_moe_layers=cpu_moe_layers)
        candidates.append((f"{_round_up_ram(ram)} GB of RAM", trial))
    return tuple(Suggestion(change, trial.fits, trial.total_bytes, trial.decode_tps) for change, trial in candidates)


def _round_up_ram(gb: float) -> int:
    for size in (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048):
        if size >= gb:
            return size
    return int(gb) + 1


def explain(result: Plan, shape: ModelShape) -> str:
    """One paragraph a person can read."""
    p = result.placement
    gpu_loads = [load for load in result.devices[:-1] if load.layers or load.weights_bytes]
    where = "; ".join(f"{load.layers} layers on {load.device}" for load in gpu_loads) or "all on the CPU"
    if p.cpu_moe_layers:
        where += (f", with the experts of the first {p.cpu_moe_layers} layers in system RAM "
                  f"(--n-cpu-moe {p.cpu_moe_layers})")
    text = (f"{result.model} at {result.quant} needs {result.weights_bytes / GB:.1f} GB of weights and "
            f"{result.kv_cache_bytes / GB:.1f} GB of KV cache for {p.ctx:,} tokens ({p.kv_type})"
            + (f" in each of {p.parallel} sequences, " if p.parallel > 1 else ", ")
            + f"{result.total_bytes / GB:.1f} GB in all. ")
    if result.fits:
        text += (f"It fits: {where}. Decode about {result.decode_tps:.0f} tokens/s at the start of a "
                 f"conversation and {result.speed_by_depth[-1][1]:.0f} tokens/s at {p.ctx:,} tokens; prompt "
                 f"processing about {result.prefill_tps:,.0f} tokens/s. ")
    else:
        short = [f"{load.device} ({(load.total_bytes - load.available_bytes) / GB:.1f} GB short)"
                 for load in result.devices if not load.fits]
        text += f"It does not fit: {', '.join(short)}. "
        fixes = [s.change for s in result.suggestions if s.fits]
        text += f"It would fit with {' or '.join(fixes)}. " if fixes else "No single change makes it fit. "
    text += f"Speeds use {result.efficiency_source} bandwidth efficiencies per device."
    return text
