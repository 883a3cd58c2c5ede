"""`homellm doctor`: checks of this machine's setup, each ok / warn / fail with the fix."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from homellm.engine.backends import BuildInfo, build_info
from homellm.errors import HomellmError
from homellm.hardware.detect import MachineReport, pci_vendors
from homellm.hardware.types import Device
from homellm.models.store import Store

LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"
# The CMake switch that builds llama.cpp's backend for each GPU vendor.
CMAKE_FLAGS = {"nvidia": "-DGGML_CUDA=on", "amd": "-DGGML_HIP=on", "intel": "-DGGML_SYCL=on",
               "apple": "-DGGML_METAL=on"}
BACKEND_NAMES = {"nvidia": "CUDA", "amd": "HIP", "intel": "SYCL", "apple": "Metal"}
MIN_FREE_DISK = 10 * 10**9
MIN_AVAILABLE_RAM = 2 * 10**9


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, how it went, and what to do about it."""

    name: str
    status: str  # ok, warn, fail
    detail: str
    fix: str = ""


def reinstall_command(vendor: str) -> str:
    """The exact command that rebuilds llama-cpp-python with the vendor's GPU backend."""
    flags = CMAKE_FLAGS.get(vendor, "-DGGML_VULKAN=on")
    if vendor == "intel":
        flags += " -DCMAKE_C_COMPILER=icx -DCMAKE_CXX_COMPILER=icpx"  # SYCL needs oneAPI's compilers
    return f'CMAKE_ARGS="{flags}" pip install --force-reinstall --no-cache-dir {LLAMA_CPP_PYTHON}'


def check_build(gpus: list[Device], build: BuildInfo) -> Check:
    """A GPU that the installed llama.cpp cannot use is the most common reason for slow local models."""
    if not gpus:
        return Check("llama.cpp build", "ok", f"built with {', '.join(build.backends)}; no GPU found, the CPU runs models")
    vendors = sorted({g.vendor for g in gpus})
    if build.gpu_offload:
        return Check("llama.cpp build", "ok", f"built with {', '.join(build.backends)} for {', '.join(g.name for g in gpus)}")
    vendor = vendors[0]
    return Check("llama.cpp build", "fail",
                 f"{', '.join(g.name for g in gpus)} found, but llama-cpp-python was built for the CPU only "
                 f"({', '.join(build.backends)}): models run several times slower than they could",
                 f"{reinstall_command(vendor)}   (or -DGGML_VULKAN=on for any vendor)")


def check_drivers(report: MachineReport, pci_vendors: set[str], nvidia_driver: bool) -> list[Check]:
    """A GPU on the PCI bus that no driver exposes."""
    checks = []
    if "0x10de" in pci_vendors and not nvidia_driver:
        checks.append(Check("NVIDIA driver", "fail", "an NVIDIA GPU is on the PCI bus but no NVIDIA driver is loaded",
                            "install the NVIDIA driver (and CUDA toolkit to build llama.cpp with CUDA)"))
    elif nvidia_driver and not any(d.vendor == "nvidia" for d in report.hardware.devices):
        checks.append(Check("NVIDIA driver", "warn", "the NVIDIA driver is loaded but homellm cannot read the GPU",
                            "pip install nvidia-ml-py"))
    elif nvidia_driver:
        checks.append(Check("NVIDIA driver", "ok", "loaded"))
    return checks


def check_ram(report: MachineReport) -> Check:
    available = report.ram_available_bytes
    status = "ok" if available >= MIN_AVAILABLE_RAM else "warn"
    return Check("RAM", status, f"{available / 1e9:.1f} GB available of {report.ram_total_bytes / 1e9:.1f} GB",
                 "" if status == "ok" else "close other programs; only the smallest models will load")


def check_cpu(report: MachineReport) -> Check:
    flags = report.cpu.flags
    if "avx2" in flags or "asimd" in flags or "neon" in flags:
        return Check("CPU", "ok", f"{report.cpu.model}, {report.cpu.physical_cores} cores, {', '.join(flags)}")
    return Check("CPU", "warn", f"{report.cpu.model} has no AVX2: llama.cpp runs far slower on it",
                 "use a GPU, or expect a few tokens per second from small models")


def check_disk(home: Path) -> Check:
    existing = next((p for p in (home, *home.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(existing).free
    status = "ok" if free >= MIN_FREE_DISK else "warn" if free >= 10**9 else "fail"
    return Check("disk", status, f"{free / 1e9:.0f} GB free for the store at {home}",
                 "" if status == "ok" else "free space, or set HOMELLM_HOME to a larger disk")


def bind_error(host: str, port: int) -> str | None:
    """Why `host:port` cannot be listened on now, or None when it can."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def check_port(host: str, port: int) -> Check:
    error = bind_error(host, port)
    if error:
        return Check("port", "warn", f"{host}:{port} is taken ({error}); another homellm may be serving",
                     "homellm serve --port PORT, or stop the other server")
    return Check("port", "ok", f"{host}:{port} is free")


def check_store(open_store: Callable[[], Store]) -> Check:
    try:
        store = open_store()
    except HomellmError as exc:
        return Check("model store", "fail", exc.message, exc.hint)
    return Check("model store", "ok", f"{len(store.list())} models in {store.home}")


def llama_build() -> BuildInfo:
    """The backends this llama.cpp build has, and whether it can offload to a GPU."""
    return build_info()


def checkup(report: MachineReport, home: Path, host: str, port: int, open_store: Callable[[], Store]) -> list[Check]:
    """Every check, in the order `homellm doctor` prints them."""
    gpus = [d for d in report.hardware.devices if d.kind in ("gpu", "apple", "apu")]
    return [
        check_build(gpus, build_info()),
        *check_drivers(report, pci_vendors(), Path("/proc/driver/nvidia").exists()),
        check_cpu(report), check_ram(report), check_disk(home), check_port(host, port), check_store(open_store),
    ]
