"""Devices as the planner sees them: memory, bandwidth, compute, power."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

GIB = 1 << 30
ASSUMED_CPU_WATTS = 65.0  # a desktop CPU package under load, when a host's power is unknown


@dataclass(frozen=True)
class Device:
    """A place model data can live and be computed on: a GPU, or the host's RAM and CPU."""

    name: str
    vendor: str  # nvidia, amd, intel, apple, cpu
    kind: str  # gpu (discrete), apple and apu (unified memory), cpu (the host)
    memory_bytes: int
    bandwidth_gbs: float
    fp16_tflops: float | None = None
    tdp_w: float | None = None
    backend: str = "cpu"  # the llama.cpp backend that runs it: cuda, rocm, vulkan, sycl, metal, cpu
    free_bytes: int | None = None  # free now, on this machine; None when described, not detected
    efficiency: float | None = None  # measured share of peak bandwidth reached by decode
    source: str = ""  # where the figures come from: a URL, "detected" or "probe" (bandwidth measured here)
    aliases: tuple[str, ...] = ()

    @property
    def is_host(self) -> bool:
        """The CPU and system RAM, where whatever does not fit elsewhere goes."""
        return self.kind == "cpu"

    @property
    def available_bytes(self) -> int:
        """What the planner may fill: free memory when known, else all of it."""
        return self.free_bytes if self.free_bytes is not None else self.memory_bytes

    def with_memory(self, memory_bytes: int) -> "Device":
        """The same device with another amount of memory (a RAM size given by the user)."""
        return replace(self, memory_bytes=memory_bytes, free_bytes=None)


@dataclass(frozen=True)
class Hardware:
    """The devices of one machine; exactly one is the host (CPU and RAM)."""

    devices: tuple[Device, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def host(self) -> Device:
        """The CPU and its RAM (for Apple Silicon, the unified memory device)."""
        for device in self.devices:
            if device.kind in ("cpu", "apple", "apu"):
                return device
        raise ValueError("hardware without a host device")

    @property
    def accelerators(self) -> tuple[Device, ...]:
        """The devices that hold offloaded layers: discrete GPUs, or unified-memory GPUs."""
        return tuple(d for d in self.devices if d.kind != "cpu")
