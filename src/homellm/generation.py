"""Data that crosses layers on the way to and from a generation.

The server builds these from a request, the scheduler queues them, the engine
runs them. Plain dataclasses, no behaviour beyond checks of their own fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class ResponseFormat:
    """What shape the output must have: free text, any JSON object, a JSON schema, or a grammar (tool calls)."""

    kind: Literal["text", "json_object", "json_schema", "grammar"] = "text"
    schema: dict[str, Any] | None = None
    gbnf: str | None = None  # for kind "grammar": GBNF text with a `root` rule


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens and when to stop. `max_tokens=None` means: until the context is full."""

    max_tokens: int | None = None
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    response_format: ResponseFormat = field(default_factory=ResponseFormat)


@dataclass(frozen=True)
class TextDelta:
    """New text of the answer, valid UTF-8, never part of a stop string."""

    text: str


@dataclass(frozen=True)
class Finished:
    """The last event of a generation, with true token counts."""

    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # prompt tokens found in the cache, not evaluated again


@dataclass(frozen=True)
class Failed:
    """The generation broke off on the server's side."""

    error: Exception


GenerationEvent = TextDelta | Finished | Failed
