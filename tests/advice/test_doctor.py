"""`homellm doctor`: each check on described situations, and the command on this machine."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import HOMELLM, generation_timeout

from homellm.advice import doctor
from homellm.engine.backends import BuildInfo
from homellm.hardware.specs import find_device

CPU_ONLY = BuildInfo(("CPU",), False, "CPU : AVX2 = 1 |")
CUDA_BUILD = BuildInfo(("CUDA", "CPU"), True, "CUDA : ARCHS = 890 | CPU : AVX2 = 1 |")


@pytest.mark.parametrize("gpu, flag", [("RTX 4090", "-DGGML_CUDA=on"), ("RX 7900 XTX", "-DGGML_HIP=on"),
                                       ("Arc A770", "-DGGML_SYCL=on"), ("M2 Max", "-DGGML_METAL=on")])
def test_a_gpu_with_a_cpu_only_build_fails_with_the_reinstall_command(gpu: str, flag: str):
    check = doctor.check_build([find_device(gpu)], CPU_ONLY)
    assert check.status == "fail" and gpu in check.detail
    assert f'CMAKE_ARGS="{flag}' in check.fix and "llama-cpp-python==0.3.36" in check.fix


def test_a_gpu_build_with_a_gpu_is_ok():
    assert doctor.check_build([find_device("RTX 4090")], CUDA_BUILD).status == "ok"


def test_no_gpu_with_a_cpu_build_is_ok():
    assert doctor.check_build([], CPU_ONLY).status == "ok"


def test_a_taken_port_is_a_warning():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        check = doctor.check_port("127.0.0.1", taken.getsockname()[1])
    assert check.status == "warn" and "--port" in check.fix


def test_disk_check_reads_the_nearest_existing_folder(tmp_path: Path):
    check = doctor.check_disk(tmp_path / "not" / "yet")
    assert check.status in ("ok", "warn", "fail") and "GB free" in check.detail


def run_doctor(home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOMELLM_HOME": str(home), "HOMELLM_PORT": "8435"}
    return subprocess.run([HOMELLM, "doctor", "--json"], capture_output=True, text=True, timeout=generation_timeout(0), env=env)


def test_doctor_on_this_machine(tmp_path: Path):
    result = run_doctor(tmp_path / "home")
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert {"llama.cpp build", "CPU", "RAM", "disk", "port", "model store"} <= set(checks)
    assert checks["model store"]["status"] == "ok" and checks["llama.cpp build"]["status"] == "ok"
    assert result.returncode == 0


def test_doctor_fails_on_a_damaged_store(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "store.db").write_bytes(b"not a database" * 100)
    result = run_doctor(home)
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert checks["model store"]["status"] == "fail" and result.returncode == 1
