"""Energy counters: RAPL under /sys/class/powercap (CPU package and DRAM), NVIDIA's NVML and AMD's amdsmi.

RAPL's `energy_uj` counts microjoules and wraps at `max_energy_range_uj`; since
Linux 5.10 it is readable by root only, so a counter that cannot be read is
skipped, and with none left the caller falls back to an estimate it labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POWERCAP = Path("/sys/class/powercap")


@dataclass(frozen=True)
class Counter:
    """One energy counter: how to read it, what one unit is in joules, and where it wraps (if it does)."""

    name: str
    read: Callable[[], float]
    joules_per_unit: float
    wraps_at: float | None = None


@dataclass(frozen=True)
class RaplDomain:
    """One RAPL zone: a CPU package or its DRAM."""

    name: str
    path: Path
    max_range_uj: int

    def counter(self) -> Counter:
        return Counter(f"RAPL {self.name}", lambda: float(_read(self.path / "energy_uj") or 0), 1e-6,
                       float(self.max_range_uj))


class EnergyMeter:
    """Reads every counter it was given; `joules(before, after)` handles wrap-around."""

    def __init__(self, counters: list[Counter]) -> None:
        self.counters = counters

    @property
    def source(self) -> str:
        """What is counted, for the report; empty when nothing is."""
        return ", ".join(c.name for c in self.counters)

    def read(self) -> tuple[float, ...]:
        return tuple(c.read() for c in self.counters)

    def joules(self, before: tuple[float, ...], after: tuple[float, ...]) -> float:
        """Energy between two readings, each wrapping counter unwrapped once."""
        total = 0.0
        for counter, start, end in zip(self.counters, before, after, strict=True):
            span = end - start
            if span < 0 and counter.wraps_at:
                span += counter.wraps_at
            total += span * counter.joules_per_unit
        return total


def rapl_domains(root: Path = POWERCAP) -> list[RaplDomain]:
    """Package and DRAM zones this process can read (each package once, not its core subzones)."""
    domains = []
    for zone in sorted(root.glob("intel-rapl:*")):
        name = _read(zone / "name").strip()
        if not (name.startswith("package") or name == "dram"):
            continue
        if _read(zone / "energy_uj") == "":
            continue  # root-only since Linux 5.10
        domains.append(RaplDomain(name, zone, int(_read(zone / "max_energy_range_uj") or 2**32)))
    return domains


def open_meter(root: Path = POWERCAP) -> EnergyMeter:
    """Every readable counter on this machine: RAPL, NVML and amdsmi where their libraries and drivers are."""
    counters = [d.counter() for d in rapl_domains(root)]
    for source in (_nvml_counters, _amdsmi_counters):
        try:
            counters += source()
        except Exception:  # no library, no driver, or a GPU without the counter: nothing from it
            continue
    return EnergyMeter(counters)


def _nvml_counters() -> list[Counter]:
    import pynvml

    pynvml.nvmlInit()
    counters = []
    for index in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # Volta and newer only: raises before that
        counters.append(Counter(f"NVML GPU {index}", _nvml_reader(pynvml, handle), 1e-3))
    return counters


def _nvml_reader(pynvml: Any, handle: Any) -> Callable[[], float]:
    return lambda: float(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))  # millijoules


def _amdsmi_counters() -> list[Counter]:
    import amdsmi  # ROCm's Python binding, where installed

    amdsmi.amdsmi_init()
    counters = []
    for index, handle in enumerate(amdsmi.amdsmi_get_processor_handles()):
        resolution = float(amdsmi.amdsmi_get_energy_count(handle)["counter_resolution"])  # microjoules per count
        counters.append(Counter(f"amdsmi GPU {index}", _amdsmi_reader(amdsmi, handle), resolution * 1e-6))
    return counters


def _amdsmi_reader(amdsmi: Any, handle: Any) -> Callable[[], float]:
    def read() -> float:
        energy = amdsmi.amdsmi_get_energy_count(handle)
        # Older bindings name the accumulator "power"
        return float(energy.get("energy_accumulator", energy.get("power", 0)))
    return read


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
