"""Popular models by Ollama-style name (`catalog.csv`, one published config per row), for planning before a download."""

from __future__ import annotations

import csv
import difflib
import functools
from importlib import resources

from homellm.errors import ModelNotFoundError
from homellm.models.shape import SWA_PATTERNS, ModelShape

BILLION = 1_000_000_000


@functools.cache
def catalog() -> dict[str, ModelShape]:
    """Every catalog model by its name and aliases, lower case."""
    text = resources.files("homellm.models").joinpath("catalog.csv").read_text(encoding="utf-8")
    index: dict[str, ModelShape] = {}
    for row in csv.DictReader(text.splitlines()):
        shape = _shape(row)
        for name in (row["name"], *(row.get("aliases") or "").split("|")):
            if name.strip():
                index.setdefault(name.strip().lower(), shape)
    return index


def find_model(name: str) -> ModelShape:
    """A catalog model by name (`llama3.1:8b`); an unknown one is refused with the closest names."""
    key = name.strip().lower()
    models = catalog()
    if key in models:
        return models[key]
    names = sorted({shape.name for shape in models.values()})
    family = [n for n in names if n.split(":")[0] == key.split(":")[0]]
    close = family or difflib.get_close_matches(key, names, n=4, cutoff=0.5)
    raise ModelNotFoundError(f"{name!r} is neither a stored model nor in the planner's catalog",
                             hint=f"did you mean {', '.join(close)}?" if close else
                             "homellm ls lists stored models; give a .gguf path to plan a file", param="model")


def _shape(row: dict[str, str]) -> ModelShape:
    def number(key: str) -> float:
        value = (row.get(key) or "").strip()
        return float(value) if value else 0.0

    heads = int(number("heads")) or 1
    embedding = int(number("embedding"))
    head_dim = int(number("head_dim")) or embedding // heads
    params = int(number("parameters_b") * BILLION)
    window = int(number("sliding_window"))
    return ModelShape(
        name=row["name"].strip(), architecture=row["architecture"].strip(), parameters=params,
        active_parameters=int(number("active_parameters_b") * BILLION) or params, layers=int(number("layers")),
        embedding=embedding, heads=heads, kv_heads=int(number("kv_heads")) or heads, head_dim_k=head_dim,
        head_dim_v=head_dim, vocab=int(number("vocab")), context_train=int(number("context")),
        experts=int(number("experts")), experts_used=int(number("experts_used")), sliding_window=window,
        swa_pattern=(int(number("swa_pattern")) or SWA_PATTERNS.get(row["architecture"].strip(), 1)) if window else 0,
        kv_lora_rank=int(number("kv_lora_rank")), rope_dim=int(number("rope_dim")),
    )
