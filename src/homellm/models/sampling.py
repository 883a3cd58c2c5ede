"""The sampling a model recommends in its GGUF file (llama.cpp's `general.sampling.*` keys).

A converter may write the sampling a model's authors published into the file; the
fields it leaves out keep homellm's defaults, which are Ollama's (temperature 0.8,
top_k 40, top_p 0.9, a repeat penalty of 1.1 over the last 64 tokens) with
llama.cpp's min_p of 0.05, except the penalty: a recipe that names none means none.
The file is untrusted input: a value out of its range is ignored, not used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from homellm.generation import SamplingDefaults


def recommended_sampling(metadata: Mapping[str, Any]) -> SamplingDefaults:
    """The model's sampling defaults: its file's recommendation where it has one, else homellm's.

    `metadata` may hold typed values (read from the header) or llama.cpp's strings.
    """
    chosen: dict[str, float | int] = {}
    for name, (key, parse) in _KEYS.items():
        value = parse(metadata.get(key))
        if value is not None:
            chosen[name] = value
    if chosen and "repeat_penalty" not in chosen:
        # A recipe that names no penalty means none, as llama.cpp reads it; homellm's 1.1 is for files with no recipe.
        return SamplingDefaults(**chosen, repeat_penalty=1.0, from_model=frozenset(chosen) | {"repeat_penalty"})  # type: ignore[arg-type]
    return SamplingDefaults(**chosen, from_model=frozenset(chosen))  # type: ignore[arg-type]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _in_range(low: float, high: float, *, low_open: bool = False) -> Callable[[Any], float | None]:
    def parse(value: Any) -> float | None:
        number = _number(value)
        if number is None or number > high or number < low or (low_open and number == low):
            return None
        return number
    return parse


def _whole(low: int, high: int) -> Callable[[Any], int | None]:
    def parse(value: Any) -> int | None:
        number = _number(value)
        if number is None or not number.is_integer() or not low <= number <= high:
            return None
        return int(number)
    return parse


# SamplingDefaults field -> (GGUF key, parser that returns None for a value out of range)
_KEYS: dict[str, tuple[str, Callable[[Any], float | int | None]]] = {
    "temperature": ("general.sampling.temp", _in_range(0.0, 2.0)),
    "top_k": ("general.sampling.top_k", _whole(0, 1_000_000)),
    "top_p": ("general.sampling.top_p", _in_range(0.0, 1.0, low_open=True)),
    "min_p": ("general.sampling.min_p", _in_range(0.0, 1.0)),
    "repeat_penalty": ("general.sampling.penalty_repeat", _in_range(0.0, 10.0, low_open=True)),
    "repeat_last_n": ("general.sampling.penalty_last_n", _whole(-1, 1_000_000)),
}
