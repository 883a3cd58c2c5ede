"""RAPL counters read from a directory laid out as /sys/class/powercap is, wrap-around included."""

from __future__ import annotations

from pathlib import Path

import pytest

from homellm.bench.power import POWERCAP, Counter, EnergyMeter, open_meter, rapl_domains

MAX = 262_143_328_850


def zone(root: Path, name: str, label: str, energy: int) -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "name").write_text(f"{label}\n")
    (path / "energy_uj").write_text(f"{energy}\n")
    (path / "max_energy_range_uj").write_text(f"{MAX}\n")
    return path


def test_package_and_dram_are_read_and_cores_are_not(tmp_path: Path):
    zone(tmp_path, "intel-rapl:0", "package-0", 1_000_000)
    zone(tmp_path, "intel-rapl:0:0", "core", 5)
    zone(tmp_path, "intel-rapl:0:1", "dram", 2_000_000)
    zone(tmp_path, "intel-rapl:1", "package-1", 3_000_000)
    assert [d.name for d in rapl_domains(tmp_path)] == ["package-0", "dram", "package-1"]


def test_energy_between_readings_with_a_wrapped_counter(tmp_path: Path):
    package = zone(tmp_path, "intel-rapl:0", "package-0", MAX - 1_000_000)
    dram = zone(tmp_path, "intel-rapl:0:1", "dram", 10_000_000)
    meter = EnergyMeter([d.counter() for d in rapl_domains(tmp_path)])
    before = meter.read()
    (package / "energy_uj").write_text("2000000\n")  # wrapped past MAX: 3 J in all
    (dram / "energy_uj").write_text("11500000\n")  # 1.5 J
    assert meter.joules(before, meter.read()) == pytest.approx(4.5)
    assert meter.source == "RAPL package-0, RAPL dram"


def test_an_unreadable_counter_is_skipped(tmp_path: Path):
    path = zone(tmp_path, "intel-rapl:0", "package-0", 1)
    (path / "energy_uj").unlink()  # as a non-root user sees it on Linux 5.10 and later
    assert rapl_domains(tmp_path) == [] and EnergyMeter([]).source == ""


def test_the_real_powercap_is_read_when_present():
    meter = open_meter()
    if POWERCAP.exists() and rapl_domains():
        before = meter.read()
        assert meter.joules(before, meter.read()) >= 0
    else:
        assert "RAPL" not in meter.source


def test_counters_of_other_units_add_up():
    readings = iter([(5_000.0, 100.0), (7_500.0, 150.0)])
    values = {"mj": 0.0, "count": 0.0}

    def next_reading() -> None:
        values["mj"], values["count"] = next(readings)

    meter = EnergyMeter([Counter("NVML GPU 0", lambda: values["mj"], 1e-3),
                         Counter("amdsmi GPU 0", lambda: values["count"], 15.3e-6)])
    next_reading()
    before = meter.read()
    next_reading()
    # 2,500 mJ plus 50 counts of 15.3 uJ
    assert meter.joules(before, meter.read()) == pytest.approx(2.5 + 50 * 15.3e-6)
