"""Turn what a user typed (a model name or a GGUF path) into a file to load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from homellm.errors import ModelNotFoundError
from homellm.models.builtin import BUILTIN_NAME, builtin_model_path


@dataclass(frozen=True)
class ModelRef:
    """A model as the server names it, and the file it is loaded from."""

    name: str
    path: Path


def resolve_model(name: str | None) -> ModelRef:
    """The built-in model when no name is given; else a known name or a .gguf path."""
    if not name or name in (BUILTIN_NAME, "smollm2", "smollm2:latest"):
        return ModelRef(BUILTIN_NAME, builtin_model_path())
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf":
        if path.is_file():
            return ModelRef(path.stem, path.resolve())
        raise ModelNotFoundError(f"no GGUF file at {path}", hint="check the path")
    raise ModelNotFoundError(
        f"model {name!r} not found",
        hint=f"use {BUILTIN_NAME} (built in) or the path to a .gguf file",
    )
