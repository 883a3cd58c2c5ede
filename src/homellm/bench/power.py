"""Energy counters: RAPL under /sys/class/powercap (CPU package and DRAM) and NVIDIA's NVML total energy.

RAPL's `energy_uj` counts microjoules and wraps at `max_energy_range_uj`; since
Linux 5.10 it is readable by root only, so a counter that cannot be read is
skipped, and with none left the caller falls back to an estimate it labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

POWERCAP = Path("/sys/class/powercap")


@dataclass(frozen=True)
class RaplDomain:
    """One RAPL counter: a CPU package or its DRAM."""

    name: str
    path: Path
    max_range_uj: int


class EnergyMeter:
    """Reads every counter it can; `joules(before, after)` handles wrap-around."""

    def __init__(self, rapl: list[RaplDomain], nvml: Any = None, gpu_handles: tuple[Any, ...] = ()) -> None:
        self.rapl = rapl
        self._nvml = nvml
        self._gpus = gpu_handles

    @property
    def source(self) -> str:
        """What is counted, for the report; empty when nothing is."""
        parts = [f"RAPL {d.name}" for d in self.rapl] + [f"NVML GPU {i}" for i in range(len(self._gpus))]
        return ", ".join(parts)

    def read(self) -> tuple[int, ...]:
        """Raw counters: RAPL in microjoules, then NVML in millijoules."""
        values = [int(_read(d.path / "energy_uj") or 0) for d in self.rapl]
        values += [int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h)) for h in self._gpus]
        return tuple(values)

    def joules(self, before: tuple[int, ...], after: tuple[int, ...]) -> float:
        """Energy between two readings, each RAPL counter unwrapped once."""
        total = 0.0
        for index, (start, end) in enumerate(zip(before, after, strict=True)):
            if index < len(self.rapl):
                span = end - start if end >= start else end + self.rapl[index].max_range_uj - start
                total += span / 1e6
            else:
                total += (end - start) / 1e3
        return total


def rapl_domains(root: Path = POWERCAP) -> list[RaplDomain]:
    """Package and DRAM counters that this process can read (each package once, not its core subzones)."""
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
    """Every readable counter on this machine: RAPL, and NVML when nvidia-ml-py and a driver are there."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handles = tuple(pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount()))
        for handle in handles:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # Volta and newer only
    except Exception:  # no library, no driver, or a GPU without the counter: no NVML energy
        return EnergyMeter(rapl_domains(root))
    return EnergyMeter(rapl_domains(root), pynvml, handles)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
