"""Detection on this machine, and GPUs read from a sysfs tree laid out as amdgpu and i915 lay it out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from homellm.hardware import bandwidth
from homellm.hardware.bandwidth import host_bandwidth_gbs, probe_bandwidth_gbs
from homellm.hardware.detect import (
    _sysfs_gpus,
    cpu_info,
    cpu_peak_tflops,
    detect,
    ram_bytes,
)


def test_this_machine_has_a_cpu_host_with_measured_bandwidth():
    report = detect(probe_seconds=0.1)
    host = report.hardware.host
    assert host.kind == "cpu" and host.source == "probe" and host.bandwidth_gbs > 1
    assert host.memory_bytes == report.ram_total_bytes and 0 < report.ram_available_bytes <= report.ram_total_bytes


def test_cpu_info_reads_cores_and_flags():
    cpu = cpu_info()
    assert 1 <= cpu.physical_cores <= cpu.logical_cores
    text = Path("/proc/cpuinfo").read_text()
    assert ("avx2" in cpu.flags) == (" avx2" in text)
    assert cpu_peak_tflops(cpu) > 0


def test_ram_matches_meminfo():
    total, available = ram_bytes()
    first = Path("/proc/meminfo").read_text().splitlines()[0]
    assert total == int(first.split()[1]) * 1024 and available <= total


def test_probe_measures_something_plausible():
    assert 0.5 < probe_bandwidth_gbs(0.05) < 2000


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_amd_and_intel_gpus_from_sysfs(tmp_path: Path):
    amd = tmp_path / "card0" / "device"
    write(amd / "vendor", "0x1002\n")
    write(amd / "mem_info_vram_total", str(24 << 30))
    write(amd / "mem_info_vram_used", str(1 << 30))
    write(amd / "product_name", "AMD Radeon RX 7900 XTX\n")
    intel = tmp_path / "card1"
    write(intel / "device" / "vendor", "0x8086\n")
    write(intel / "device" / "device", "0x56a0\n")
    write(intel / "lmem_total_bytes", str(16 << 30))
    integrated = tmp_path / "card2" / "device"
    write(integrated / "vendor", "0x8086\n")  # no local memory: shares RAM, not a GPU to offload to
    found = _sysfs_gpus([], tmp_path)
    assert [(d.vendor, d.memory_bytes) for d in found] == [("amd", 24 << 30), ("intel", 16 << 30)]
    radeon, arc = found
    assert radeon.name == "RX 7900 XTX" and radeon.bandwidth_gbs == 960 and radeon.free_bytes == 23 << 30
    assert arc.name == "Arc A770 16GB" and arc.bandwidth_gbs == 560, "named by its PCI id"


def test_the_bandwidth_probe_runs_once_per_boot(tmp_path, monkeypatch):
    boot = tmp_path / "boot_id"
    boot.write_text("first-boot\n")
    monkeypatch.setattr(bandwidth, "BOOT_ID", boot)
    measured = host_bandwidth_gbs(0.05, tmp_path / "cache")
    assert 0.5 < measured < 2000
    saved = tmp_path / "cache" / bandwidth.CACHE_FILE
    saved.write_text(json.dumps({"boot": "first-boot", "gbs": 12345.0}))
    assert host_bandwidth_gbs(0.05, tmp_path / "cache") == 12345.0, "read back, not probed again"
    boot.write_text("second-boot\n")
    assert host_bandwidth_gbs(0.05, tmp_path / "cache") < 2000, "a new boot probes again"
    assert json.loads(saved.read_text())["boot"] == "second-boot"


@pytest.mark.parametrize("content", ["not json", "[]", '{"boot": "b", "gbs": "fast"}', '{"boot": "b", "gbs": -3}',
                                     '{"boot": "b", "gbs": true}'])
def test_a_damaged_bandwidth_cache_is_probed_over(tmp_path, monkeypatch, content):
    boot = tmp_path / "boot_id"
    boot.write_text("b")
    monkeypatch.setattr(bandwidth, "BOOT_ID", boot)
    (tmp_path / bandwidth.CACHE_FILE).write_text(content)
    assert 0.5 < host_bandwidth_gbs(0.05, tmp_path) < 2000
    assert json.loads((tmp_path / bandwidth.CACHE_FILE).read_text())["boot"] == "b"


def test_without_a_boot_id_the_probe_runs_and_nothing_is_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(bandwidth, "BOOT_ID", tmp_path / "absent")
    assert 0.5 < host_bandwidth_gbs(0.05, tmp_path) < 2000
    assert not (tmp_path / bandwidth.CACHE_FILE).exists()
