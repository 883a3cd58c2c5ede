"""llama.cpp's quantizer (`llama_model_quantize`): one GGUF file in, another type out."""

from __future__ import annotations

import ctypes
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import numpy as np

from homellm.engine.llama import default_threads
from homellm.engine.loading import LOAD_LOCK
from homellm.engine.logs import log_lines
from homellm.errors import EngineError

_TENSOR_LINE = re.compile(r"\[\s*(\d+)\s*/\s*(\d+)\s*\]")
Progress = Callable[[int, int], None]  # tensors done, tensors in all


def file_types() -> dict[str, int]:
    """Every type llama.cpp's quantizer can write, by name (Q4_K_M, Q8_0, F16, ...)."""
    types = {"F32": llama_cpp.LLAMA_FTYPE_ALL_F32}
    for name in dir(llama_cpp):
        if name.startswith("LLAMA_FTYPE_MOSTLY_"):
            types[name.removeprefix("LLAMA_FTYPE_MOSTLY_")] = getattr(llama_cpp, name)
    return types


@dataclass(frozen=True)
class QuantizeReport:
    """What llama.cpp said it did."""

    tensors: int
    fallbacks: int  # tensors written in another type, their rows not a multiple of the type's block


class _ImatrixArray:
    """The NULL-terminated importance data llama.cpp copies at the start of a quantization."""

    def __init__(self, matrix: Mapping[str, np.ndarray]) -> None:
        self._names = [name.encode() for name in matrix]
        self._data = [np.ascontiguousarray(values, dtype=np.float32) for values in matrix.values()]
        self._array = (llama_cpp.llama_model_imatrix_data * (len(matrix) + 1))()
        for i, (name, values) in enumerate(zip(self._names, self._data)):
            self._array[i].name = name
            self._array[i].data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            self._array[i].size = values.size

    @property
    def pointer(self) -> ctypes._Pointer:
        return ctypes.cast(self._array, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))


def quantize_file(source: Path, target: Path, file_type: str, allow_requantize: bool,
                  threads: int | None = None, progress: Progress | None = None,
                  imatrix: Mapping[str, np.ndarray] | None = None) -> QuantizeReport:
    """Write `source` quantized to `file_type` at `target`; an `EngineError` if llama.cpp refuses.

    Blocks until llama.cpp returns; run it on a thread to stay interruptible. `progress`
    hears each tensor llama.cpp reports; `imatrix` (tensor name -> importance per column)
    guides the low-bit types.
    """
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = file_types()[file_type]
    params.allow_requantize = allow_requantize
    params.nthread = threads or default_threads()
    importance = _ImatrixArray(imatrix) if imatrix else None
    if importance is not None:
        params.imatrix = importance.pointer

    counts = {"tensors": 0, "fallbacks": 0}

    def note(line: str) -> None:
        if match := _TENSOR_LINE.search(line):
            counts["tensors"] = int(match.group(2))
            if progress:
                progress(int(match.group(1)), int(match.group(2)))
        elif "falling back to" in line:
            counts["fallbacks"] += 1

    with LOAD_LOCK, log_lines(note):
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    if status != 0:
        raise EngineError(f"llama.cpp could not quantize {source.name} to {file_type}",
                          hint="the log above says why; IQ1-IQ3 types need an importance matrix (--imatrix)")
    return QuantizeReport(counts["tensors"], counts["fallbacks"])
