"""Reasoning models: which chat templates think, and their answers split as they stream into the
thinking and the answer proper.

The model writes its thinking between an open and a close tag (`<think>...</think>`, or gpt-oss's
analysis channel) before the answer; every API dialect shows the two apart (OpenAI's
`reasoning_content`, Ollama's `thinking`, Anthropic's thinking blocks). Text arrives in deltas that
may cut a tag anywhere, so a delta that may be the start of a tag is held until the next one says.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from homellm.errors import InvalidRequestError
from homellm.generation import Reasoning, SamplingParams, Thinking

_State = Literal["before", "thinking", "after_close", "content"]


@dataclass(frozen=True)
class ThinkingStyle:
    """How a reasoning model's template marks thinking, and which of the switches it reads."""

    open_tag: str
    close_tag: str
    switch: bool  # the template reads `enable_thinking`: thinking can be turned on and off
    effort: bool  # the template reads `reasoning_effort` (gpt-oss: low, medium, high)

    def reasoning(self, prompt: str, budget: int | None = None) -> Reasoning:
        """The markers of an answer to `prompt` (rendered by this template), and its thinking budget.

        A prompt that ends with the open tag (and blank space) has the answer start inside the
        thinking; one that ends with a closed, empty thought (Qwen3 with thinking off) does not.
        """
        starts_inside = prompt.rstrip().endswith(self.open_tag)
        return Reasoning(self.open_tag, self.close_tag, starts_inside, budget)


# gpt-oss's harmony format: the thinking is the analysis channel, the answer the final channel.
_HARMONY_OPEN = "<|channel|>analysis<|message|>"
_HARMONY_CLOSE = "<|end|><|start|>assistant<|channel|>final<|message|>"


def thinking_style_of(source: str | None) -> ThinkingStyle | None:
    """Whether a chat template's model thinks before answering, told by what its Jinja source mentions
    (`<think>`, `enable_thinking`, `reasoning_effort`, gpt-oss's analysis channel); None when it does not."""
    if not source:
        return None
    switch = "enable_thinking" in source
    effort = "reasoning_effort" in source
    if "<|channel|>" in source and "analysis" in source:
        return ThinkingStyle(_HARMONY_OPEN, _HARMONY_CLOSE, switch, effort)
    if "<think>" in source or switch or effort:
        return ThinkingStyle("<think>", "</think>", switch, effort)
    return None


@dataclass(frozen=True)
class Split:
    """What one delta (or the end) adds to the thinking and to the answer; either may be empty."""

    reasoning: str = ""
    content: str = ""


class ReasoningSplitter:
    """Feed it a generation's text deltas in order; each call says what is now known to be thinking
    and what is answer. `finish` gives back what was held at the end.

    Thinking is recognised only at the start of the answer (after blank space), as llama.cpp does:
    a tag later in the answer is the answer's own text. Blank space right after the open tag, before
    the close tag and right after it is the markup's, not the text's, and is dropped.
    """

    def __init__(self, reasoning: Reasoning) -> None:
        self._open = reasoning.open_tag
        self._close = reasoning.close_tag
        self._state: _State = "thinking" if reasoning.starts_inside else "before"
        self._held = ""  # text not yet known to be thinking or answer
        self._thought = False  # some thinking text was given out (blank space before it is dropped)

    def feed(self, text: str) -> Split:
        """The thinking and answer text that `text` makes certain."""
        self._held += text
        reasoning: list[str] = []
        content: list[str] = []
        while self._held:
            before = (self._state, self._held)
            self._step(reasoning, content)
            if (self._state, self._held) == before:  # waiting for more text
                break
        return Split("".join(reasoning), "".join(content))

    def finish(self) -> Split:
        """What was held when the generation ended: an unclosed thought stays thinking, a partial tag is text."""
        held, self._held = self._held, ""
        if self._state == "thinking":
            text = held.rstrip()
            return Split(text if self._thought else text.lstrip(), "")
        if self._state == "after_close":
            return Split("", held.lstrip())
        return Split("", held)

    @property
    def thinking(self) -> bool:
        """Whether the answer is inside its thinking now."""
        return self._state == "thinking"

    def _step(self, reasoning: list[str], content: list[str]) -> None:
        if self._state == "before":
            self._step_before(content)
        elif self._state == "thinking":
            self._step_thinking(reasoning)
        elif self._state == "after_close":
            stripped = self._held.lstrip()
            if stripped:
                self._state, self._held = "content", stripped
            else:
                self._held = ""
        else:
            content.append(self._held)
            self._held = ""

    def _step_before(self, content: list[str]) -> None:
        """At the start: blank space, then the open tag (thinking) or anything else (the answer)."""
        stripped = self._held.lstrip()
        if stripped.startswith(self._open):
            self._state, self._held = "thinking", stripped[len(self._open):]
        elif stripped and not self._open.startswith(stripped):
            self._state = "content"
            content.append(self._held)
            self._held = ""

    def _step_thinking(self, reasoning: list[str]) -> None:
        """Inside the thinking: give out what cannot be part of the close tag, or the blank space before it."""
        end = self._held.find(self._close)
        if end >= 0:
            text = self._held[:end].rstrip()
            reasoning.append(text if self._thought else text.lstrip())
            self._state, self._held = "after_close", self._held[end + len(self._close):]
            return
        keep = _partial_tag_at_end(self._held, self._close)
        body, tail = self._held[:len(self._held) - keep], self._held[len(self._held) - keep:]
        # Blank space may be the markup's (before the close tag): held until text follows it.
        text = body.rstrip()
        if not self._thought:
            text = text.lstrip()
            body = body.lstrip()
        if text:
            reasoning.append(text)
            self._thought = True
        self._held = body[len(text):] + tail if text else body + tail


def _partial_tag_at_end(text: str, tag: str) -> int:
    """The length of the longest end of `text` that is a beginning of `tag` (0 when none is)."""
    for length in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-length:]):
            return length
    return 0


def split_whole(reasoning: Reasoning | None, text: str) -> Split:
    """A whole answer's thinking and answer; all answer for a model that does not think."""
    if reasoning is None:
        return Split("", text)
    splitter = ReasoningSplitter(reasoning)
    first, last = splitter.feed(text), splitter.finish()
    return Split(first.reasoning + last.reasoning, first.content + last.content)


def refuse_thinking_without_style(model: str, style: ThinkingStyle | None, thinking: Thinking) -> None:
    """Asking a model that cannot think to think is refused when the request is `strict` (Ollama answers
    so); otherwise it is ignored."""
    if style is None and thinking.enabled and thinking.strict:
        raise InvalidRequestError(f"{model} does not support thinking",
                                  hint=f"leave {thinking.param} out, or pick a reasoning model", param=thinking.param)


def refuse_thinking_off(model: str, style: ThinkingStyle, thinking: Thinking, reasoning: Reasoning) -> None:
    """Asking a model that always thinks not to is refused when the request is `strict`: its template has no
    `enable_thinking`, and its prompt opens the thought (a template that leaves opening it to the model
    may not think at all). Otherwise it thinks all the same, for the caller to leave the thinking out."""
    if thinking.enabled is False and thinking.strict and not style.switch and reasoning.starts_inside:
        raise InvalidRequestError(f"{model} always thinks: its chat template has no switch to turn thinking off",
                                  hint=f"leave {thinking.param} out (a reasoning budget limits how long it thinks)",
                                  param=thinking.param)


def style_switches(style: ThinkingStyle | None, thinking: Thinking) -> dict[str, Any]:
    """What a reasoning model's template is given: `enable_thinking` and `reasoning_effort`, where it reads them."""
    if style is None:
        return {}
    switches: dict[str, Any] = {}
    if style.switch and thinking.enabled is not None:
        switches["enable_thinking"] = thinking.enabled
    if style.effort and thinking.effort is not None:
        switches["reasoning_effort"] = thinking.effort
    return switches


def with_reasoning(params: SamplingParams, reasoning: Reasoning) -> SamplingParams:
    """The request's parameters with the answer's thinking markers, in the grammar's shape too."""
    fmt = params.response_format
    if fmt.kind != "text":
        fmt = replace(fmt, after_thinking=reasoning)
    return replace(params, reasoning=reasoning, response_format=fmt)
