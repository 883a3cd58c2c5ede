"""Data that crosses layers on the way to and from a generation.

The server builds these from a request, the scheduler queues them, the engine
runs them. Plain dataclasses, no behaviour beyond checks of their own fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

FinishReason = Literal["stop", "length", "cancelled"]
# How a model writes a tool call: homellm's own JSON, or the syntax its chat template was made for
# (homellm.tools.call_syntax reads each back).
CallSyntax = Literal["json", "hermes", "llama3", "mistral", "gemma"]
# The first characters that open a call in each syntax (its markers, or the bare JSON left when a
# marker is a control token that detokenizes to nothing): a plain-text answer may start with none.
CALL_OPENERS: dict[str, str] = {"json": "{[", "hermes": "<{", "llama3": "{[<", "mistral": "[{", "gemma": "`"}


# The most thinking tokens a budget may allow: llama.cpp's own bound (an int32). A budget of 0 is not
# "think nothing": turning thinking off is the template's switch (think: false, reasoning_effort "none").
MAX_REASONING_BUDGET = 2**31 - 1


def check_reasoning_budget(budget: int | None) -> int | None:
    """A reasoning budget as given: None (no limit) or 1 to MAX_REASONING_BUDGET; ValueError with the rule
    otherwise (callers turn it into an error naming their field or option)."""
    if budget is None or (not isinstance(budget, bool) and 1 <= budget <= MAX_REASONING_BUDGET):
        return budget
    raise ValueError(f"a reasoning budget is 1 to {MAX_REASONING_BUDGET:,} thinking tokens (got {budget}); "
                     "to turn thinking off, ask for no thinking instead (think: false, reasoning_effort \"none\")")


@dataclass(frozen=True)
class Reasoning:
    """How a reasoning model marks its thinking in the answer's text, and how long it may think.

    The thinking is the text between `open_tag` and `close_tag` at the start of the answer; when the
    prompt already ends with `open_tag` (DeepSeek-R1's and Qwen3's templates open it), the answer starts
    inside it (`starts_inside`). With a `budget`, the decode loop writes `close_tag` itself once the model
    has spent that many tokens thinking, and the answer goes on after it.
    """

    open_tag: str = "<think>"
    close_tag: str = "</think>"
    starts_inside: bool = False
    budget: int | None = None  # thinking tokens before the loop closes the thinking; None: no limit

    def __post_init__(self) -> None:
        check_reasoning_budget(self.budget)


@dataclass(frozen=True)
class ResponseFormat:
    """What shape the output must have: free text, any JSON object, a JSON schema, or tool calls."""

    kind: Literal["text", "json_object", "json_schema", "tool_calls"] = "text"
    schema: dict[str, Any] | None = None  # for "tool_calls": the schema of a call (or a list of calls)
    text_allowed: bool = False  # for "tool_calls": the first token may choose a plain-text answer instead
    # For "tool_calls" in a model's own syntax (not "json"): `schema` is one call object's, and up to
    # `max_calls` calls are written in the syntax's markers.
    syntax: CallSyntax = "json"
    max_calls: int = 1
    # A reasoning model's thinking markers: the shape applies after the thinking, which the grammar lets
    # through first (and requires, when the prompt opened it). Set by the scheduler with SamplingParams.reasoning.
    after_thinking: Reasoning | None = None


@dataclass(frozen=True)
class SamplingDefaults:
    """The sampling a model gets for the fields a request leaves out, and which of them its file chose."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64  # tokens the repeat penalty looks back over; -1: the whole context
    from_model: frozenset[str] = frozenset()  # fields the model file recommends; the rest are homellm's

    def source(self, name: str) -> str:
        """Where a field's value comes from: "model file" or "homellm"."""
        return "model file" if name in self.from_model else "homellm"


@dataclass(frozen=True)
class Thinking:
    """What a chat request asks of a reasoning model's thinking, in any dialect's words.

    `enabled` None leaves it to the template's default; False asks for no thinking, True for thinking.
    `effort` ("low", "medium", "high") reaches templates that read it (gpt-oss). `param` names the
    request's field in errors. `strict`: asking a model that cannot think to think is refused (Ollama's
    `think: true`); when False it is ignored (clients that send it with every request: Codex, Claude Code).
    """

    enabled: bool | None = None
    effort: str | None = None
    budget: int | None = None  # thinking tokens; None: the server's --reasoning-budget, if any
    param: str = "think"
    strict: bool = True

    def __post_init__(self) -> None:
        check_reasoning_budget(self.budget)


SAMPLING_FIELDS = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "repeat_last_n")


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens and when to stop. `max_tokens=None` means: until the context is full.

    A sampling field left at None takes the model's default (`with_defaults`); a request's
    explicit value always wins, and temperature 0 picks the most likely token.
    """

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    repeat_last_n: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    response_format: ResponseFormat = field(default_factory=ResponseFormat)
    loop_guard: int = 0  # end the answer once one span of tokens repeats this many times in a row; 0: never
    cap_to_context: bool = False  # a max_tokens past the room the prompt leaves is cut to it, not refused
    # A reasoning model's thinking markers and budget, filled in by the scheduler from the chat template;
    # None for a model that does not think (and for plain completions).
    reasoning: Reasoning | None = None

    def with_defaults(self, defaults: SamplingDefaults) -> "SamplingParams":
        """These parameters with every field left out taken from the model's defaults.

        Output under a grammar (JSON, tool calls) repeats its keys and punctuation by design: it gets no
        repeat penalty unless the request asks for one (with one, the built-in model's tool calls fell
        from 33 to 21 right answers of 41).
        """
        filled = {name: getattr(defaults, name) for name in SAMPLING_FIELDS if getattr(self, name) is None}
        if self.repeat_penalty is None and self.response_format.kind != "text":
            filled["repeat_penalty"] = 1.0
        return replace(self, **filled) if filled else self


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
    looped: bool = False  # the loop guard ended it (reason "length"): it was repeating one span
    # Measured in the decode loop: from taking a slot to the first token (prompt evaluation),
    # and from the first token to the end (generation). Ollama's clients read both.
    prompt_seconds: float = 0.0
    decode_seconds: float = 0.0
    stop_string: str | None = None  # the request's stop string that ended it (reason "stop"), if one did
    reasoning_tokens: int = 0  # of the completion's tokens, those a reasoning model spent thinking


@dataclass(frozen=True)
class Failed:
    """The generation broke off on the server's side."""

    error: Exception


GenerationEvent = TextDelta | Finished | Failed
