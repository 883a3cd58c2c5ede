"""Let llama.cpp read a model file in a child process before homellm stores or serves it.

A header that passes homellm's checks can still trip an assertion inside
llama.cpp (a vocabulary with two identical tokens, a split shard numbered with
the wrong integer type), and an assertion aborts the whole process. The child
loads the vocabulary and hyperparameters only (`vocab_only`), which reads every
shard's header in about a second; if it dies, the server does not.
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
    from llama_cpp import Llama

    # verbose, so that llama.cpp's reason reaches stderr instead of /dev/null
    model = Llama(path, vocab_only=True, n_gpu_layers=0, verbose=True)
    model.close()


if __name__ == "__main__":
    _main(sys.argv[1])
