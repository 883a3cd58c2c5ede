"""A split of one model over several machines, as llama.cpp's RPC workers run it (DESIGN.md "Beyond one machine").

Pure: a model shape and described machines in, a `SplitPlan` out. The first
machine serves: it holds the token embeddings and the output head; the layers
follow in order over the machines, and a token's activations cross to every
worker that holds layers and back. Layers go where decode is fastest: machines
are filled by bandwidth, fastest first, each with what its memory holds.

A described machine has a memory size and a bandwidth but no device class, so
every machine reads at the CPU's published efficiency (EFFICIENCY["cpu"], 0.50
of peak): about right for DRAM and HBM cards (0.45), low for consumer GPUs
(0.70) and Apple (0.65-0.78), so a split over such GPUs runs somewhat faster
than planned. Every machine that holds layers is charged a GPU backend's
overhead (457 MiB) and a compute buffer, which over-counts a CPU-only worker a little.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from homellm.errors import InvalidRequestError
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
from homellm.planner.plan import FILE_QUANT, MAX_CTX, _quant_of
from homellm.planner.quants import QUANTS, Quant, kv_label, kv_pair
from homellm.planner.speed import EFFICIENCY

GB = 1e9
SPLIT_EFFICIENCY = EFFICIENCY["cpu"]  # see the module docstring
OVERHEAD_BACKEND = "cuda"
ACTIVATION_BYTES = 4  # F32 activations cross each boundary between machines
# Waits on each worker per token: llama.cpp sends the input and the graph without waiting, then waits
# once, for the activations back. benchmarks/rpc_split.py, rounds interleaved: 2 ms and 5 ms of
# one-way delay added 2.4 and 4.3 ms a token (docs/performance.md).
ROUND_TRIPS = 1
TRANSFERS = 2  # per worker and token: the activations there and back
LINK_SPEEDS = (1.0, 10.0)  # Gbit/s: home Ethernet and a 10 GbE link
MAX_GB = 100_000
MAX_BANDWIDTH_GBS = 100_000
_WORKER_EXAMPLE = "e.g. --worker gpu1:24:936 (24 GB free for the model, 936 GB/s memory bandwidth)"


@dataclass(frozen=True)
class Machine:
    """A machine as the user describes it."""

    name: str
    memory_bytes: int  # free for the model
    bandwidth: float  # bytes/s of memory bandwidth


@dataclass(frozen=True)
class MachineShare:
    """What one machine holds and how long it takes per token."""

    machine: Machine
    layers: int
    weights_bytes: int
    kv_cache_bytes: int
    compute_bytes: int  # compute buffer and backend overhead
    total_bytes: int
    fits: bool
    seconds_per_token: float


@dataclass(frozen=True)
class LinkCost:
    """What the network between the machines adds, at one link speed."""

    gbit: float
    seconds_per_token: float
    prefill_seconds_per_batch: float  # one 512-token micro-batch of a prompt


@dataclass(frozen=True)
class SplitPlan:
    """One model split over several machines."""

    model: str
    quant: str
    ctx: int
    kv_type: str
    shares: tuple[MachineShare, ...]  # in llama.cpp's order: the serving machine, then the workers as given
    fits: bool
    decode_tps: float
    link: LinkCost
    link_costs: tuple[LinkCost, ...]  # at LINK_SPEEDS
    short_bytes: int
    suggestions: tuple[str, ...]
    explanation: str


def parse_worker(text: str) -> Machine:
    """`NAME:GB:BW` (memory free for the model in GB, memory bandwidth in GB/s); NAME may hold colons."""
    parts = text.rsplit(":", 2)
    if len(parts) != 3:
        raise InvalidRequestError(f"--worker {text!r} is not NAME:GB:BW", hint=_WORKER_EXAMPLE, param="worker")
    name, memory, bandwidth = (part.strip() for part in parts)
    if not name:
        raise InvalidRequestError("a --worker has no name", hint=_WORKER_EXAMPLE, param="worker")
    gb = _positive(memory, "GB of memory", name, MAX_GB)
    gbs = _positive(bandwidth, "GB/s of bandwidth", name, MAX_BANDWIDTH_GBS)
    return Machine(name, int(gb * GB), gbs * GB)


def parse_workers(texts: Sequence[str]) -> tuple[Machine, ...]:
    """Every `--worker`, in order; names must be unique."""
    if not texts:
        raise InvalidRequestError("no machines to split over", hint=_WORKER_EXAMPLE, param="worker")
    machines = tuple(parse_worker(text) for text in texts)
    seen: set[str] = set()
    for machine in machines:
        if machine.name in seen:
            raise InvalidRequestError(f"--worker {machine.name!r} is named twice",
                                      hint="give each machine its own name", param="worker")
        seen.add(machine.name)
    return machines


def _positive(value: str, what: str, name: str, limit: float) -> float:
    # The messages name the machine, not the whole NAME:GB:BW: a terminal may read ":abc:" as an emoji code.
    try:
        number = float(value)
    except ValueError:
        raise InvalidRequestError(f"--worker {name}: {value!r} is not a number of {what}",
                                  hint=_WORKER_EXAMPLE, param="worker") from None
    if not math.isfinite(number) or not 0 < number <= limit:
        raise InvalidRequestError(f"--worker {name}: {value!r} is not a possible number of {what}",
                                  hint=f"give a number above 0 and at most {limit:,}", param="worker")
    return number


def plan_split(shape: ModelShape, machines: Sequence[Machine], ctx: int, kv_type: str = "F16",
               quant_name: str | None = None, link_gbit: float = 1.0, rtt_seconds: float = 0.0002,
               suggest: bool = True) -> SplitPlan:
    """Place `shape`'s layers over `machines` (the first serves) for a context of `ctx` tokens."""
    _check(shape, machines, ctx, kv_type, link_gbit, rtt_seconds)
    kv_type = kv_label(*kv_pair(kv_type))
    info, weights = _weights_of(shape, quant_name)
    counts, _ = _place(shape, machines, weights, ctx, kv_type)
    shares = tuple(_share(shape, m, n, i == 0, weights, ctx, kv_type, info) for i, (m, n) in
                   enumerate(zip(machines, counts, strict=True)))
    workers = sum(1 for share in shares[1:] if share.layers)
    link = link_cost(shape, workers, link_gbit, rtt_seconds)
    seconds = sum(share.seconds_per_token for share in shares) + link.seconds_per_token
    short = sum(max(0, share.total_bytes - share.machine.memory_bytes) for share in shares)
    result = SplitPlan(
        model=shape.name, quant=info.name, ctx=ctx, kv_type=kv_type, shares=shares, fits=short == 0,
        decode_tps=1 / seconds if seconds > 0 else 0.0, link=link,
        link_costs=tuple(link_cost(shape, workers, gbit, rtt_seconds) for gbit in LINK_SPEEDS),
        short_bytes=short, suggestions=(), explanation="")
    if suggest and not result.fits:
        result = replace(result, suggestions=_suggestions(shape, machines, result, link_gbit, rtt_seconds))
    return replace(result, explanation=explain(result))


def link_cost(shape: ModelShape, workers: int, gbit: float, rtt_seconds: float) -> LinkCost:
    """Round trips and activation transfers to `workers` machines holding layers, at `gbit` Gbit/s."""
    transfer = shape.embedding * ACTIVATION_BYTES * 8 / (gbit * GB)
    token = workers * (ROUND_TRIPS * rtt_seconds + TRANSFERS * transfer)
    batch = workers * (ROUND_TRIPS * rtt_seconds + TRANSFERS * N_UBATCH * transfer)
    return LinkCost(gbit, token, batch)


def _check(shape: ModelShape, machines: Sequence[Machine], ctx: int, kv_type: str, link_gbit: float,
           rtt_seconds: float) -> None:
    if not machines:
        raise InvalidRequestError("no machines to split over", hint=_WORKER_EXAMPLE, param="worker")
    if not 1 <= ctx <= MAX_CTX:
        raise InvalidRequestError(f"a context of {ctx} tokens is not possible",
                                  hint=f"give a context between 1 and {MAX_CTX:,} tokens", param="ctx")
    kv_pair(kv_type)
    if not (math.isfinite(link_gbit) and link_gbit > 0):
        raise InvalidRequestError(f"a link of {link_gbit:g} Gbit/s is not possible",
                                  hint="give the network speed in Gbit/s, e.g. --link 1 or --link 10", param="link")
    if not (math.isfinite(rtt_seconds) and rtt_seconds >= 0):
        raise InvalidRequestError(f"a round trip of {rtt_seconds:g} s is not possible", hint="give 0 or more")
    for machine in machines:
        if machine.memory_bytes < 0 or not (math.isfinite(machine.bandwidth) and machine.bandwidth > 0):
            raise InvalidRequestError(f"{machine.name} has no usable memory or bandwidth",
                                      hint="give positive sizes", param="worker")
    if shape.layers < 1:
        raise InvalidRequestError(f"{shape.name} has no layers", hint="the model's metadata is incomplete")


def _weights_of(shape: ModelShape, quant_name: str | None) -> tuple[Quant, WeightSplit]:
    """The quant planned and the weights at it: the file's own bytes when it is the file's quant (as `plan` does)."""
    info = _quant_of(shape, quant_name)
    own_file = shape.weights_bytes is not None and info.name == (shape.quant or FILE_QUANT)
    return info, split_weights(shape, None if own_file else info.name)


def _fixed_bytes(shape: ModelShape, serves: bool, weights: WeightSplit) -> int:
    """What a machine holds beyond its layers: compute buffer, overhead, and on the serving one embeddings and head."""
    extra = weights.token_embd + weights.output if serves else 0
    return compute_buffer_bytes(shape) + device_overhead_bytes(OVERHEAD_BACKEND) + extra


def _layers_bytes(shape: ModelShape, layers: int, weights: WeightSplit, ctx: int, kv_type: str) -> int:
    return layers * weights.per_layer + kv_cache_bytes(shape, ctx, kv_type, layers)


def _layers_that_fit(shape: ModelShape, capacity: int, limit: int, weights: WeightSplit, ctx: int,
                     kv_type: str) -> int:
    """The most layers (up to `limit`) whose weights and KV cache fit in `capacity` bytes."""
    low, high = 0, limit
    while low < high:
        mid = (low + high + 1) // 2
        if _layers_bytes(shape, mid, weights, ctx, kv_type) <= capacity:
            low = mid
        else:
            high = mid - 1
    return low


def _place(shape: ModelShape, machines: Sequence[Machine], weights: WeightSplit, ctx: int,
           kv_type: str) -> tuple[list[int], int]:
    """Layers per machine (in the order given), fastest machines filled first; what fits nowhere
    goes to the slowest machine. Also returns how many layers fit nowhere."""
    counts = [0] * len(machines)
    left = shape.layers
    by_speed = sorted(range(len(machines)), key=lambda i: -machines[i].bandwidth)
    for i in by_speed:
        capacity = machines[i].memory_bytes - _fixed_bytes(shape, i == 0, weights)
        counts[i] = _layers_that_fit(shape, capacity, left, weights, ctx, kv_type)
        left -= counts[i]
    counts[by_speed[-1]] += left
    return counts, left


def _share(shape: ModelShape, machine: Machine, layers: int, serves: bool, weights: WeightSplit, ctx: int,
           kv_type: str, info: Quant) -> MachineShare:
    used = serves or layers > 0
    head = weights.token_embd + weights.output if serves else 0
    layer_weights = layers * weights.per_layer + head
    kv = kv_cache_bytes(shape, ctx, kv_type, layers)
    compute = _fixed_bytes(shape, False, weights) if used else 0
    total = layer_weights + kv + compute
    used_share = shape.experts_used / shape.experts if shape.is_moe else 1.0
    read_layer = weights.dense_per_layer + weights.experts_per_layer * used_share
    read = (layers * read_layer + (weights.output if serves else 0)
            + kv_read_bytes(shape, ctx // 2, kv_type, layers))
    seconds = read / (machine.bandwidth * SPLIT_EFFICIENCY * info.speed_factor)
    return MachineShare(machine, layers, layer_weights, kv, compute, total, total <= machine.memory_bytes, seconds)


def _suggestions(shape: ModelShape, machines: Sequence[Machine], current: SplitPlan, link_gbit: float,
                 rtt_seconds: float) -> tuple[str, ...]:
    """What would fit, each checked by planning it: a Q8_0 KV cache, a shorter context, a smaller quant, a machine more."""
    def trial(ctx: int = current.ctx, kv_type: str = current.kv_type, quant_name: str = current.quant,
              over: Sequence[Machine] = machines) -> SplitPlan:
        return plan_split(shape, over, ctx, kv_type, quant_name, link_gbit, rtt_seconds, suggest=False)

    found: list[str] = []
    if current.kv_type == "F16" and (t := trial(kv_type="Q8_0")).fits:
        found.append(f"a Q8_0 KV cache (--kv-type q8_0): about {t.decode_tps:.1f} tokens/s")
    for ctx in (c for c in (current.ctx // 2, current.ctx // 4, current.ctx // 8, 8192, 4096, 2048)
                if 2048 <= c < current.ctx):
        if (t := trial(ctx=ctx)).fits:
            found.append(f"a context of {ctx:,} tokens (--ctx {ctx}): about {t.decode_tps:.1f} tokens/s")
            break
    if smaller := _smaller_quant(shape, current, trial):
        found.append(smaller)
    if added := _added_machine(shape, machines, current, trial):
        found.append(added)
    return tuple(found)


def _smaller_quant(shape: ModelShape, current: SplitPlan, trial: Any) -> str | None:
    """The best-quality smaller quant the planner knows that fits."""
    bits = _quant_of(shape, current.quant).bits_per_weight
    for q in QUANTS:
        if q.bits_per_weight >= bits or (q.name.endswith("_MOE") and not shape.is_moe):
            continue
        if (t := trial(quant_name=q.name)).fits:
            weights = sum(share.weights_bytes for share in t.shares)
            return (f"a {q.name} file (--quant {q.name}, {weights / GB:.0f} GB of weights): "
                    f"about {t.decode_tps:.1f} tokens/s")
    return None


def _added_machine(shape: ModelShape, machines: Sequence[Machine], current: SplitPlan, trial: Any) -> str | None:
    """The smallest whole-GB machine, as fast as the slowest given one, that makes the split fit."""
    _, weights = _weights_of(shape, current.quant)
    _, left = _place(shape, machines, weights, current.ctx, current.kv_type)
    if not left:  # the serving machine is short of its own embeddings and head: another machine cannot help
        return None
    needed = _layers_bytes(shape, left, weights, current.ctx, current.kv_type) + _fixed_bytes(shape, False, weights)
    bandwidth = min(m.bandwidth for m in machines)
    name = _new_name(machines)
    for gb in range(math.ceil(needed / GB), math.ceil(needed / GB) + 4):
        if (t := trial(over=(*machines, Machine(name, int(gb * GB), bandwidth)))).fits:
            return (f"another machine with at least {gb} GB free (--worker {name}:{gb}:{bandwidth / GB:g}, "
                    f"as fast as the slowest here): about {t.decode_tps:.1f} tokens/s")
    return None


def _new_name(machines: Sequence[Machine]) -> str:
    names = {m.name for m in machines}
    return next(name for i in range(len(names) + 1) if (name := f"new{i or ''}") not in names)


def explain(result: SplitPlan) -> str:
    """Two or three sentences: what goes where, the speed, and what the network costs."""
    first, *workers = result.shares
    where = (f"{first.machine.name} serves, holding the token embeddings, the output head and "
             f"{_layers(first.layers)}")
    where += "".join(f"; {s.machine.name} holds {_layers(s.layers)}" for s in workers)
    text = f"{result.model} at {result.quant} with {result.ctx:,} tokens of context: {where}. "
    if not result.fits:
        short = ", ".join(f"{s.machine.name} is {(s.total_bytes - s.machine.memory_bytes) / GB:.1f} GB short"
                          for s in result.shares if not s.fits)
        fixes = "; or ".join(result.suggestions)
        return text + f"It does not fit: {short}. " + (f"It would fit with {fixes}." if fixes else
                                                        "No single change tried here makes it fit.")
    text += f"Decode about {result.decode_tps:.1f} tokens/s. "
    if not any(s.layers for s in workers):
        return text + "No worker holds layers, so the network costs nothing."
    slow, fast = result.link_costs[0], result.link_costs[-1]
    return text + (f"The network adds {slow.seconds_per_token * 1e3:.1f} ms a token and "
                   f"{slow.prefill_seconds_per_batch:.2f} s per {N_UBATCH}-token prompt batch at {slow.gbit:g} "
                   f"Gbit/s, {fast.seconds_per_token * 1e3:.1f} ms and {fast.prefill_seconds_per_batch:.2f} s at "
                   f"{fast.gbit:g} Gbit/s.")


def _layers(count: int) -> str:
    return "no layers" if count == 0 else "1 layer" if count == 1 else f"{count} layers"


def split_dict(result: SplitPlan) -> dict[str, Any]:
    """A split plan as JSON-able data (`homellm plan --worker --json`)."""
    return {
        "model": result.model, "quant": result.quant, "ctx": result.ctx, "kv_type": result.kv_type,
        "fits": result.fits, "decode_tps": round(result.decode_tps, 2), "short_bytes": result.short_bytes,
        "machines": [{
            "name": s.machine.name, "memory_bytes": s.machine.memory_bytes,
            "bandwidth_gbs": round(s.machine.bandwidth / GB, 3), "serves": i == 0, "layers": s.layers,
            "weights_bytes": s.weights_bytes, "kv_cache_bytes": s.kv_cache_bytes, "compute_bytes": s.compute_bytes,
            "total_bytes": s.total_bytes, "fits": s.fits, "seconds_per_token": s.seconds_per_token,
        } for i, s in enumerate(result.shares)],
        "link": _link_dict(result.link), "link_costs": [_link_dict(c) for c in result.link_costs],
        "efficiency": SPLIT_EFFICIENCY, "suggestions": list(result.suggestions), "explanation": result.explanation,
    }


def _link_dict(cost: LinkCost) -> dict[str, float]:
    return {"gbit": cost.gbit, "seconds_per_token": cost.seconds_per_token,
            "prefill_seconds_per_batch": cost.prefill_seconds_per_batch}
