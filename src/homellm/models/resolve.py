"""Turn what a user typed (a stored model's name or a GGUF path) into a file to load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from homellm.errors import ModelNotFoundError
from homellm.models.builtin import BUILTIN_NAME, builtin_model_path
from homellm.models.catalog import find_model
from homellm.models.gguf import ModelFacts, read_header, read_model_facts
from homellm.models.shape import ModelShape, shape_from_facts
from homellm.models.store import BUILTIN_ALIASES, Store


@dataclass(frozen=True)
class ModelRef:
    """A model as the server names it, and the file it is loaded from."""

    name: str
    path: Path


def resolve_model(name: str | None, store: Store | None = None) -> ModelRef:
    """The built-in model when no name is given; else a .gguf path or a name in the store.

    A path's header is checked before anything loads it; stored files were checked when stored.
    """
    if not name or name in (BUILTIN_NAME, "smollm2", *BUILTIN_ALIASES):
        return ModelRef(BUILTIN_NAME, builtin_model_path())
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"no GGUF file at {path}", hint="check the path")
        read_header(path)
        return ModelRef(path.stem, path.resolve())
    if store is None:
        raise ModelNotFoundError(f"model {name!r} not found",
                                 hint=f"use {BUILTIN_NAME} (built in) or the path to a .gguf file")
    model = store.get(name)
    return ModelRef(model.name, model.path)


def facts_of(ref: ModelRef, store: Store) -> tuple[ModelFacts, str]:
    """A model's facts and content digest: from the store when it holds the model, else from its file."""
    if store.exists(ref.name):
        model = store.get(ref.name)
        return model.facts, model.digests[0] if model.digests else f"file:{ref.path}"
    return read_model_facts(ref.path), f"file:{ref.path}"


def stored_model_ref(store: Store, name: str) -> ModelRef:
    """A stored model by name only: what the server accepts from clients, who must not name paths."""
    model = store.get(name)
    return ModelRef(model.name, model.path)


def resolve_shape(name: str, store: Store | None, allow_paths: bool = True) -> ModelShape:
    """What the planner plans: a .gguf file's or a stored model's own metadata, else the catalog's entry."""
    if allow_paths and name.lower().endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"no GGUF file at {path}", hint="check the path")
        return shape_from_facts(path.stem, read_model_facts(path))
    if store is not None:
        try:
            model = store.get(name)
        except ModelNotFoundError:
            pass
        else:
            return shape_from_facts(model.name, model.facts)
    return find_model(name)
