"""Loading a GGUF file into llama.cpp: one load at a time, and a file it cannot load as ModelLoadError."""

from __future__ import annotations

import logging
import threading
from contextlib import nullcontext
from pathlib import Path

import llama_cpp
from llama_cpp._internals import LlamaModel

from homellm.engine.logs import placements_logged
from homellm.errors import ModelLoadError

# With verbose=False, llama-cpp-python points file descriptors 1 and 2 at /dev/null
# while it loads, for the whole process. Two loads at once would restore them in the
# wrong order and leave the process mute, so loads take turns. Quantizations take
# turns with them too: both point llama.cpp's log at a handler of their own.
LOAD_LOCK = threading.Lock()

MODEL_HINT = "check that the file is a complete GGUF model"


def load_model(path: Path, params: llama_cpp.llama_model_params, *, hint: str = MODEL_HINT,
               placed: dict[str, str] | None = None) -> LlamaModel:
    """`path` loaded by llama.cpp with `params`, under the load lock.

    A file llama.cpp cannot load raises ModelLoadError, naming the file and llama.cpp's
    reason, with `hint`. With `placed`, the tensors llama.cpp reports as overridden are
    added to it, by name, to the buffer it put them in.
    """
    path = Path(path)
    # llama-cpp-python prints llama.cpp's log lines at or above this logger's level.
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    watch = placements_logged() if placed is not None else nullcontext({})
    try:
        with LOAD_LOCK, watch as seen:
            model = LlamaModel(path_model=str(path), params=params, verbose=False)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelLoadError(f"llama.cpp could not load {path.name}: {exc}", hint=hint) from None
    if placed is not None:
        placed.update(seen)
    return model
