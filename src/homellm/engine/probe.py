"""Let llama.cpp read a model file in a child process before homellm stores or serves it.

A header that passes homellm's checks can still trip an assertion inside
llama.cpp (a vocabulary with two identical tokens, a split shard numbered with
the wrong integer type, a tensor whose shape or place lies), and an assertion
aborts the whole process. The child loads the whole model memory-mapped on the
CPU, so llama.cpp checks every tensor without reading the weights or making a
context; if it dies, the server does not.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from homellm.errors import InvalidModelFileError

PROBE_TIMEOUT_SECONDS = 120
_REASONS = ("GGML_ASSERT", "error loading model", "error:", "failed")


def probe_model_file(path: Path, label: str | None = None) -> None:
    """Refuse a file llama.cpp cannot open, with llama.cpp's own reason; `label` names it in messages."""
    label = label or path.name
    try:
        child = subprocess.run([sys.executable, "-m", "homellm.engine.probe", str(path)],
                               capture_output=True, text=True, timeout=PROBE_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise InvalidModelFileError(f"llama.cpp took over {PROBE_TIMEOUT_SECONDS} s to read {label}'s header",
                                    hint="the file may be damaged; download it again") from None
    if child.returncode == 0:
        return
    crashed = child.returncode < 0 or child.returncode == 134
    raise InvalidModelFileError(
        f"llama.cpp {'crashed reading' if crashed else 'cannot load'} {label}: {_reason(child.stderr)}",
        hint="the file is damaged or made for another llama.cpp; homellm keeps it out of the store")


def _reason(stderr: str) -> str:
    """llama.cpp's last line that says what went wrong, without the build path in front."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for marker in _REASONS:  # the most telling kind of line first
        for line in reversed(lines):
            if marker in line:
                return line.rsplit("llama.cpp/", 1)[-1]
    return lines[-1] if lines else "no message"


def _main(path: str) -> None:
    import llama_cpp  # importing it routes llama.cpp's log, and so its reason, to stderr

    # The whole model, not its vocabulary alone: llama.cpp checks every tensor's name, type, shape and
    # place in the file as it loads them, and some of those checks abort the process. Memory-mapped
    # and on the CPU, the weights are mapped rather than read, and no context is made.
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0
    params.use_mmap = True
    model = llama_cpp.llama_model_load_from_file(path.encode(), params)
    if not model:
        sys.exit(1)
    llama_cpp.llama_model_free(model)


if __name__ == "__main__":
    _main(sys.argv[1])
