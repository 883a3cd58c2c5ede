"""What this machine has: CPU, RAM and GPUs of every vendor, each source failing soft.

One function per source; a source that is missing (no NVIDIA driver, no sysfs,
not a Mac) adds nothing and a note, never an error. Bandwidths come from the
device database when the GPU is known there, from NVML's clock and bus width
otherwise, and from a read test for this machine's RAM.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from homellm.config import default_cache
from homellm.errors import HomellmError
from homellm.hardware.bandwidth import host_bandwidth_gbs
from homellm.hardware.specs import find_device
from homellm.hardware.types import Device, Hardware

_AMD, _INTEL, _NVIDIA = "0x1002", "0x8086", "0x10de"
UNKNOWN_GPU_GBS = 256.0
# i915 and xe give no marketing name; the PCI device id does (Intel's Arc id tables).
INTEL_ARC_IDS = {"0x56a0": "Arc A770 16GB", "0x56a1": "Arc A750", "0x56a5": "Arc A380", "0xe20b": "Arc B580",
                 "0xe20c": "Arc B570"}


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as the operating system reports it."""

    model: str
    physical_cores: int
    logical_cores: int
    flags: tuple[str, ...]  # the ones llama.cpp cares about: avx2, avx512f, avx512_vnni, amx, neon
    ghz: float | None


@dataclass(frozen=True)
class MachineReport:
    """This machine: the planner's hardware view plus what `homellm hw` shows."""

    hardware: Hardware
    cpu: CpuInfo
    ram_total_bytes: int
    ram_available_bytes: int
    notes: tuple[str, ...] = field(default=())


def detect(probe_seconds: float = 0.3) -> MachineReport:
    """Look at this machine; never raises for a missing source.

    The RAM bandwidth probe runs once per boot; its figure is kept in the user's cache.
    """
    notes: list[str] = []
    cpu = cpu_info()
    total, available = ram_bytes()
    gpus: list[Device] = []
    for source in (_nvidia_gpus, _sysfs_gpus, _apple_gpu):
        try:
            gpus.extend(source(notes))
        except Exception as exc:  # one vendor's broken driver must not hide the rest
            notes.append(f"{source.__name__.strip('_')}: {exc}")
    unified = [g for g in gpus if g.kind in ("apple", "apu")]
    if unified:
        host = unified[0]
        devices = (host, *[g for g in gpus if g is not host])
    else:
        bandwidth = host_bandwidth_gbs(probe_seconds, default_cache())
        host = Device(name=cpu.model, vendor="cpu", kind="cpu", memory_bytes=total, free_bytes=available,
                      bandwidth_gbs=round(bandwidth, 1), fp16_tflops=cpu_peak_tflops(cpu), tdp_w=None,
                      backend="cpu", source="probe")
        devices = (*gpus, host)
    return MachineReport(Hardware(devices, tuple(notes)), cpu, total, available, tuple(notes))


def cpu_info() -> CpuInfo:
    """Model, cores and ISA flags from /proc/cpuinfo (Linux) or sysctl (macOS)."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    text = _read("/proc/cpuinfo")
    if text:
        model = _first(r"^model name\s*:\s*(.+)$", text) or _first(r"^Hardware\s*:\s*(.+)$", text) or platform.processor()
        cores = {(m.group(1), m.group(2)) for m in re.finditer(
            r"physical id\s*:\s*(\d+).*?core id\s*:\s*(\d+)", text, re.S)}
        flags = set((_first(r"^(?:flags|Features)\s*:\s*(.+)$", text) or "").split())
        mhz = _first(r"^cpu MHz\s*:\s*([\d.]+)$", text)
        wanted = tuple(f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "asimd", "sve")
                       if f in flags)
        return CpuInfo(model.strip(), min(len(cores) or logical, logical), logical, wanted,
                       round(float(mhz) / 1000, 2) if mhz else None)
    model = _sysctl("machdep.cpu.brand_string") or platform.processor() or "unknown CPU"
    physical = int(_sysctl("hw.physicalcpu") or logical)
    return CpuInfo(model, physical, logical, ("neon",) if platform.machine() == "arm64" else (), None)


def ram_bytes() -> tuple[int, int]:
    """Total and available RAM."""
    text = _read("/proc/meminfo")
    if text:
        total = int(_first(r"^MemTotal:\s*(\d+) kB", text) or 0) * 1024
        available = int(_first(r"^MemAvailable:\s*(\d+) kB", text) or 0) * 1024
        return total, available or total
    total = int(_sysctl("hw.memsize") or 0) or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return total, total


def cpu_peak_tflops(cpu: CpuInfo) -> float:
    """FP32 FMA peak: cores x clock x lanes; llama.cpp's CPU prefill reaches a fraction of it."""
    per_cycle = 64 if "avx512f" in cpu.flags else 32 if "avx2" in cpu.flags else 16
    return round(cpu.physical_cores * (cpu.ghz or 2.5) * per_cycle / 1000, 3)


def pci_vendors(root: Path = Path("/sys/bus/pci/devices")) -> set[str]:
    """Vendor ids of display controllers (PCI class 0x03xxxx) on the bus, driver or not."""
    vendors = set()
    for device in root.glob("*"):
        if _read(device / "class").startswith("0x03"):
            vendors.add(_read(device / "vendor").strip())
    return vendors


def _nvidia_gpus(notes: list[str]) -> list[Device]:
    try:
        import pynvml  # nvidia-ml-py, installed with CUDA setups
    except ImportError:
        if Path("/proc/driver/nvidia").exists():
            notes.append("an NVIDIA driver is loaded but nvidia-ml-py is not installed: pip install nvidia-ml-py")
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    found = []
    try:
        for index in range(pynvml.nvmlDeviceGetCount()):
            try:
                found.append(_nvidia_gpu(pynvml, index))
            except pynvml.NVMLError as exc:  # one GPU's unsupported query must not hide the others
                notes.append(f"NVIDIA GPU {index}: {exc}")
    finally:
        pynvml.nvmlShutdown()
    return found


def _nvidia_gpu(pynvml: Any, index: int) -> Device:
    """One NVIDIA GPU; bandwidth from NVML's memory clock and bus width (two transfers per clock)."""
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    name = pynvml.nvmlDeviceGetName(handle)
    name = name.decode() if isinstance(name, bytes) else name
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    clock = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM)
    bus = pynvml.nvmlDeviceGetMemoryBusWidth(handle)
    return _known_or(name, "nvidia", "cuda", int(memory.total), int(memory.free), 2 * clock * bus / 8 / 1000)


def _sysfs_gpus(notes: list[str], root: Path = Path("/sys/class/drm")) -> list[Device]:
    """AMD and Intel GPUs from /sys/class/drm (amdgpu's mem_info_*, i915's lmem, xe's tiles)."""
    found = []
    for card in sorted(c for c in root.glob("card*") if re.fullmatch(r"card\d+", c.name)):
        device = card / "device"
        vendor = _read(device / "vendor").strip()
        if vendor == _AMD:
            total = int(_read(device / "mem_info_vram_total") or 0)
            used = int(_read(device / "mem_info_vram_used") or 0)
            name = _read(device / "product_name").strip() or f"AMD GPU {_read(device / 'device').strip()}"
            if total:
                found.append(_known_or(name, "amd", "rocm", total, total - used, None))
        elif vendor == _INTEL:
            total = int(_read(card / "lmem_total_bytes") or _read(device / "tile0" / "physical_vram_size_bytes") or 0)
            if total:  # an integrated GPU has none and shares system RAM
                pci_id = _read(device / "device").strip()
                found.append(_known_or(INTEL_ARC_IDS.get(pci_id, f"Intel GPU {pci_id}"), "intel", "sycl", total,
                                       None, None))
    return found


def _apple_gpu(notes: list[str]) -> list[Device]:
    if platform.system() != "Darwin" or platform.machine() != "arm64":
        return []
    chip = (_sysctl("machdep.cpu.brand_string") or "Apple Silicon").removeprefix("Apple ").strip()
    total = int(_sysctl("hw.memsize") or 0)
    try:
        known = _apple_chip(chip)
    except HomellmError:
        notes.append(f"{chip} is not in the device database; its bandwidth is unknown")
        return [Device(chip, "apple", "apple", total, 100.0, None, None, "metal", source="detected")]
    return [Device(known.name, "apple", "apple", total, known.bandwidth_gbs, known.fp16_tflops, known.tdp_w, "metal",
                   source=known.source)]


def _apple_chip(chip: str) -> Device:
    """M3 Max and M4 Max come with two GPU sizes and two bandwidths: the core count tells them apart."""
    try:
        return find_device(chip)
    except HomellmError:
        cores = _first(r"Total Number of Cores:\s*(\d+)", _command(["system_profiler", "SPDisplaysDataType"]) or "")
        if not cores:
            raise
        return find_device(f"{chip} {cores}-core GPU")


def _known_or(name: str, vendor: str, backend: str, total: int, free: int | None,
              bandwidth: float | None) -> Device:
    """A detected GPU with the database's figures when it knows the name."""
    try:
        known = find_device(name)
    except HomellmError:
        # Unknown to the database: the driver's figure, or a mid-range one said to be assumed: a mid-range figure, said to be assumed.
        source = "detected" if bandwidth else f"detected; bandwidth unknown, {UNKNOWN_GPU_GBS:.0f} GB/s assumed"
        return Device(name, vendor, "gpu", total, bandwidth or UNKNOWN_GPU_GBS, None, None, backend, free,
                      source=source)
    # The driver's bus-width figure wins: one marketing name covers cards of two memory buses (RTX 3060).
    return Device(known.name, vendor, known.kind, total, bandwidth or known.bandwidth_gbs, known.fp16_tflops,
                  known.tdp_w, known.backend, free, source=known.source)


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _first(pattern: str, text: str) -> str | None:
    match = re.search(pattern, text, re.M)
    return match.group(1) if match else None


def _sysctl(name: str) -> str | None:
    return _command(["sysctl", "-n", name])


def _command(args: list[str]) -> str | None:
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (result.stdout.strip() or None) if result.returncode == 0 else None
