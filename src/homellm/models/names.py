"""Model names: Ollama's `family:tag`, checked by one pattern so a name is never a path."""

from __future__ import annotations

import re

from homellm.errors import InvalidModelNameError

MAX_NAME_LENGTH = 100
DEFAULT_TAG = "latest"
# Letters, digits and . _ - only: no separators, no control characters, no spaces.
_PART = r"[a-z0-9][a-z0-9._-]*"
_NAME = re.compile(rf"{_PART}(?::{_PART})?")
_QUANT_SUFFIX = re.compile(r"[._-](i?q\d[a-z0-9_]*|f16|bf16|f32)$")
_SPLIT_SUFFIX = re.compile(r"-\d{5}-of-\d{5}$")


def normalize_name(name: str) -> str:
    """The stored form of a name: lower case, with `:latest` when no tag is given.

    Anything that could leave the store (`/`, `\\`, `..`, NUL and other control
    characters, over 100 characters) is refused with `InvalidModelNameError`.
    """
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidModelNameError(
            f"the model name is {len(name)} characters long; at most {MAX_NAME_LENGTH} are allowed",
            hint="pick a shorter name such as llama3.2:1b", param="model")
    lowered = name.strip().lower()
    if not _NAME.fullmatch(lowered) or ".." in lowered:
        raise InvalidModelNameError(
            f"{name!r} is not a valid model name",
            hint="use family:tag with letters, digits, '.', '_' and '-' (for example llama3.2:1b-q4_k_m)",
            param="model")
    return lowered if ":" in lowered else f"{lowered}:{DEFAULT_TAG}"


def name_from_filename(stem: str, tag: str | None = None) -> str:
    """A valid name made from a file or repository name: `Qwen3-1.7B-Q4_K_M` becomes `qwen3-1.7b:q4_k_m`."""
    family = re.sub(r"[^a-z0-9._-]+", "-", _SPLIT_SUFFIX.sub("", stem.lower())).strip("._-")
    family = re.sub(r"\.{2,}", ".", family).removesuffix("-gguf")
    if tag is None and (match := _QUANT_SUFFIX.search(family)):
        tag = match.group(1)
        family = family[:match.start()]
    family = (family or "model")[:MAX_NAME_LENGTH - 20].strip("._-") or "model"
    tag = re.sub(r"[^a-z0-9._-]+", "-", (tag or DEFAULT_TAG).lower()).strip("._-") or DEFAULT_TAG
    return normalize_name(f"{family}:{tag[:19]}")
