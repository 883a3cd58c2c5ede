"""llama.cpp's log lines, caught while it loads or quantizes a model."""

from __future__ import annotations

import ctypes
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import llama_cpp
from llama_cpp import _logger

_OVERRIDDEN = re.compile(r"tensor (\S+) \(.*\) buffer type overridden to (\S+)")
_ERROR = 4  # GGML_LOG_LEVEL_ERROR (ggml.h: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5)


class _Catcher:
    """llama.cpp's log hook is process-wide, and other threads may log through it at any time,
    so one callback lives as long as the process; a load or quantization points it at its handler."""

    def __init__(self) -> None:
        self.handle: Callable[[str], None] | None = None
        self.callback = llama_cpp.llama_log_callback(self._catch)

    def _catch(self, level: int, text: bytes, _: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", errors="replace")
        if self.handle is not None:
            self.handle(line)
        if level == _ERROR:
            print(line, end="", file=sys.stderr, flush=True)


_CATCHER = _Catcher()


@contextmanager
def log_lines(handle: Callable[[str], None]) -> Iterator[None]:
    """Within the block, every llama.cpp log line goes to `handle`; errors also reach stderr.

    Loads and quantizations take turns (the engine's load lock), so what is caught belongs
    to the work in the block. Afterwards llama-cpp-python's own callback is back.
    """
    _CATCHER.handle = handle
    llama_cpp.llama_log_set(_CATCHER.callback, ctypes.c_void_p(0))
    try:
        yield
    finally:
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
        _CATCHER.handle = None


@contextmanager
def placements_logged() -> Iterator[dict[str, str]]:
    """Within the block, the tensors llama.cpp reports as overridden, by name, to their buffer's name."""
    placed: dict[str, str] = {}

    def note(line: str) -> None:
        if match := _OVERRIDDEN.search(line):
            placed[match.group(1)] = match.group(2)

    with log_lines(note):
        yield placed
