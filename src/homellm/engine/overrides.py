"""Tensor buffer-type overrides handed to llama.cpp: which weights it keeps in which memory.

llama-cpp-python leaves `llama_model_params.tensor_buft_overrides` as an untyped pointer;
this module builds the NULL-terminated array of (pattern, buffer type) that llama.cpp
reads while it loads, and owns it until the model is loaded.
"""

from __future__ import annotations

import ctypes
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import llama_cpp

from homellm.errors import InvalidRequestError
from homellm.planner.overrides import CPU, TensorOverride


def unmatched(overrides: Iterable[TensorOverride], tensor_names: Sequence[str]) -> list[str]:
    """The patterns that match none of `tensor_names` (for a load: the tensors llama.cpp reports overridden)."""
    return [o.pattern for o in overrides if not any(re.search(o.pattern, name) for name in tensor_names)]


class _Override(ctypes.Structure):
    # struct llama_model_tensor_buft_override { const char * pattern; ggml_backend_buffer_type_t buft; }
    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


class OverrideArray:
    """The NULL-terminated override array llama.cpp reads while loading; keeps its strings alive."""

    def __init__(self, overrides: Sequence[TensorOverride]) -> None:
        if len(overrides) >= llama_cpp.llama_max_tensor_buft_overrides():
            raise InvalidRequestError(f"{len(overrides)} tensor overrides are more than llama.cpp takes",
                                      hint="join patterns with | into fewer overrides")
        self._patterns = [o.pattern.encode() for o in overrides]
        self._array = (_Override * (len(overrides) + 1))()
        for i, (override, pattern) in enumerate(zip(overrides, self._patterns)):
            self._array[i].pattern = pattern
            self._array[i].buft = buffer_type(override.device)
        self._array[len(overrides)].pattern = None  # the terminator
        self._array[len(overrides)].buft = None

    @property
    def pointer(self) -> int:
        """The address for `llama_model_params.tensor_buft_overrides`."""
        return ctypes.addressof(self._array)


def buffer_type(device: str) -> int:
    """The ggml buffer type of a device named as llama.cpp names it: CPU, CUDA0, Vulkan0, Metal, ..."""
    ggml = _ggml()
    if device.upper() == CPU:
        return ggml.base.ggml_backend_cpu_buffer_type()
    dev = ggml.registry.ggml_backend_dev_by_name(device.encode())
    if not dev:
        raise InvalidRequestError(f"llama.cpp has no device named {device!r}",
                                  hint=f"devices of this build: {', '.join(device_names())}",
                                  param="override_tensor")
    return ggml.base.ggml_backend_dev_buffer_type(dev)


def device_names() -> list[str]:
    """The devices of this llama.cpp build (CPU always among them)."""
    ggml = _ggml()
    count = ggml.registry.ggml_backend_dev_count()
    return [ggml.base.ggml_backend_dev_name(ggml.registry.ggml_backend_dev_get(i)).decode() for i in range(count)]


def buffer_name(buft: int) -> str:
    """The name llama.cpp gives a buffer type (CPU, CUDA0, CPU_REPACK, ...)."""
    return _ggml().base.ggml_backend_buft_name(buft).decode()


@dataclass(frozen=True)
class _Ggml:
    base: ctypes.CDLL
    registry: ctypes.CDLL


@cache
def _ggml() -> _Ggml:
    """ggml's device registry from the libraries llama-cpp-python loaded (the same copies, not new ones)."""
    folder = Path(llama_cpp.llama_cpp._lib._name).parent
    suffix = {"darwin": ".dylib", "win32": ".dll"}.get(sys.platform, ".so")
    prefix = "" if sys.platform == "win32" else "lib"
    base = ctypes.CDLL(str(folder / f"{prefix}ggml-base{suffix}"))
    registry = ctypes.CDLL(str(folder / f"{prefix}ggml{suffix}"))
    for name, args, result, lib in (
        ("ggml_backend_cpu_buffer_type", [], ctypes.c_void_p, base),
        ("ggml_backend_dev_buffer_type", [ctypes.c_void_p], ctypes.c_void_p, base),
        ("ggml_backend_dev_name", [ctypes.c_void_p], ctypes.c_char_p, base),
        ("ggml_backend_buft_name", [ctypes.c_void_p], ctypes.c_char_p, base),
        ("ggml_backend_dev_by_name", [ctypes.c_char_p], ctypes.c_void_p, registry),
        ("ggml_backend_dev_count", [], ctypes.c_size_t, registry),
        ("ggml_backend_dev_get", [ctypes.c_size_t], ctypes.c_void_p, registry),
    ):
        function = getattr(lib, name)
        function.argtypes, function.restype = args, result
    return _Ggml(base, registry)
