"""Speed: decode is bound by memory bandwidth, prefill by compute; each device has its own efficiency.

Decode time per token is the sum over devices of the bytes each reads (its
layers' weights, only the used experts' share for MoE, plus the KV cache at the
current depth) over its bandwidth times its efficiency. One fixed efficiency
is the most common error of existing estimators; published decode fractions
run from 0.32 to 0.93 of peak by device class (../shared/research/planners.md
§4, defaults from §4.9). A measured efficiency (`homellm bench`) replaces them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from homellm.hardware.types import Device

# Decode efficiency by device class, Q4-class weights (planners.md §4.9, with the consumer and
# workstation GPUs of §4.2-4.4 at 0.70: the RTX 3090, 4090 and 5090 reach 0.65, 0.71 and 0.62 on
# llama.cpp's CUDA scoreboard, so their rates scale with their bandwidth).
EFFICIENCY = {
    "gpu": 0.70,
    "gpu-hbm": 0.45,  # A100, H100, H200, MI2xx/3xx: 0.32-0.53 with small models
    "intel-gpu": 0.45,
    "apple": 0.78,
    "apple-max": 0.65,
    "apple-ultra": 0.50,
    "apu": 0.78,
    "cpu": 0.50,  # of theoretical DRAM bandwidth
    # of the one-thread numpy read test (hardware/bandwidth.py): llama.cpp's decode on the 2-core CI
    # machine reads 10-14 GB/s against the test's 29 (benchmarks/plan_vs_measured.py)
    "cpu-probed": 0.40,
}
# Experts kept in RAM beside a GPU (--n-cpu-moe) are read at this share of the host's efficiency:
# the used experts are scattered through RAM and the CPU computes them while the GPU waits.
# Derived from llmfit PR #755 (Qwen3-30B-A3B Q4_K_M, RTX 2080 + 102 GB/s DDR4, --n-cpu-moe 36:
# 36.7 tok/s, about 0.83 GB of experts a token in 23 ms = 0.35 of bandwidth) against the 0.50 above;
# tests/planner/test_moe_published.py holds it against three published runs.
EXPERTS_IN_RAM_FACTOR = 0.70
# Share of a device's FP16 throughput that prefill reaches (planners.md §4.6: CUDA's int8 paths
# reach the FP16 datasheet figure; Metal about 0.6 of it).
COMPUTE_EFFICIENCY = {"cuda": 0.9, "rocm": 0.6, "vulkan": 0.5, "sycl": 0.4, "metal": 0.6, "cpu": 0.25}
# Fixed time per layer per token beyond reading bytes (thread synchronisation, kernel launches).
# CPU: fitted with the read efficiency above to the built-in model's decode at depths 0 and 1,536 on
# the 2-core CI machine. GPUs: May-2024 builds fitted 0.1 ms (planners.md §4.4); CUDA graphs have
# cut it since, and the 2025 scoreboard's RTX 5090 / 3090 ratio (1.83, bandwidth 1.91) leaves
# room for about 15 us.
LAYER_SECONDS = {"cpu": 30e-6, "cuda": 15e-6, "rocm": 15e-6, "vulkan": 15e-6, "sycl": 15e-6, "metal": 15e-6}
# Datacenter cards with HBM, whose small-model decode reaches far less of their peak.
_HBM = re.compile(r"\b(A100|H100|H200|H20|B200|GH200|GB200|V100|A800|H800|MI\d{3}\w*)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Efficiency:
    """The share of peak bandwidth decode reaches on a device, and where the figure comes from."""

    value: float
    source: str  # "measured" or "published"
    device_class: str


def efficiency(device: Device) -> Efficiency:
    """The device's measured efficiency if there is one, else its class's published default."""
    device_class = device_class_of(device)
    if device.efficiency is not None:
        return Efficiency(device.efficiency, "measured", device_class)
    return Efficiency(EFFICIENCY[device_class], "published", device_class)


def device_class_of(device: Device) -> str:
    """Which published efficiency applies."""
    name = device.name.lower()
    if device.kind == "cpu":
        return "cpu-probed" if device.source == "probe" else "cpu"
    if device.kind == "apple":
        return "apple-ultra" if "ultra" in name else "apple-max" if "max" in name else "apple"
    if device.kind == "apu":
        return "apu"
    if device.vendor == "intel":
        return "intel-gpu"
    return "gpu-hbm" if _HBM.search(device.name) else "gpu"


def read_seconds(device: Device, nbytes: float, quant_speed_factor: float = 1.0) -> float:
    """Time for `device` to stream `nbytes` during decode."""
    if nbytes <= 0:
        return 0.0
    rate = device.bandwidth_gbs * 1e9 * efficiency(device).value * quant_speed_factor
    return nbytes / rate if rate > 0 else float("inf")


def layer_seconds(device: Device, layers: int) -> float:
    """The per-layer overhead of decoding one token over `layers` layers on `device`."""
    return layers * LAYER_SECONDS.get(device.backend, 0.0)


def compute_seconds(device: Device, flops: float) -> float:
    """Time for `device` to do `flops` of prefill matrix work."""
    if flops <= 0:
        return 0.0
    tflops = device.fp16_tflops or 1.0
    return flops / (tflops * 1e12 * COMPUTE_EFFICIENCY.get(device.backend, 0.5))
