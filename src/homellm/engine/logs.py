"""llama.cpp's log lines, caught while a model loads (what it placed where)."""

from __future__ import annotations

import ctypes
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import llama_cpp
from llama_cpp import _logger

_OVERRIDDEN = re.compile(r"tensor (\S+) \(.*\) buffer type overridden to (\S+)")
_ERROR = 3  # GGML_LOG_LEVEL_ERROR


@contextmanager
def placements_logged() -> Iterator[dict[str, str]]:
    """Within the block, the tensors llama.cpp reports as overridden, by name, to their buffer's name.

    llama.cpp has one process-wide log callback; loads take turns (the engine's load lock),
    so what is caught here belongs to the load in the block. Errors still reach stderr.
    """
    placed: dict[str, str] = {}

    @llama_cpp.llama_log_callback
    def catch(level: int, text: bytes, _: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", errors="replace")
        if match := _OVERRIDDEN.search(line):
            placed[match.group(1)] = match.group(2)
        elif level == _ERROR:
            print(line, end="", file=sys.stderr, flush=True)

    llama_cpp.llama_log_set(catch, ctypes.c_void_p(0))
    try:
        yield placed
    finally:
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
