"""Which ggml backends the installed llama-cpp-python was built with."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class BuildInfo:
    """The llama.cpp build under homellm."""

    backends: tuple[str, ...]  # "CPU", "CUDA", "Metal", "Vulkan", "HIP"/"ROCm", "SYCL", "RPC", ...
    gpu_offload: bool
    system_info: str


def build_info() -> BuildInfo:
    """Ask llama.cpp itself: its system info names each compiled backend before a colon."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    names = tuple(dict.fromkeys(m.group(1) for m in re.finditer(r"(?:^|\|)\s*([A-Za-z][\w-]*) : ", info)))
    backends = tuple(n for n in names if n.isupper() or n in ("Metal", "Vulkan", "BLAS"))
    return BuildInfo(backends or ("CPU",), bool(llama_cpp.llama_supports_gpu_offload()), info.strip())
