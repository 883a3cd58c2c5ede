"""Answering with documents: the best chunks go into the prompt within the context budget, numbered,
and the answer ends with the list of sources as `[1] path:lines`."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homellm.docs.search import Hit

INSTRUCTION = ("Answer the question using the numbered sources below. Cite the sources you use as [1], [2]. "
               "If the sources do not contain the answer, say so.")
MESSAGE_OVERHEAD = 8  # template tokens around each message (role markers, separators)
DEFAULT_ANSWER_RESERVE = 512
# What a tokenizer may read as one of its special tokens when a prompt is tokenized with them parsed (the
# engine does, for the template's own markers): a `<` opening `<|...`, `<｜...` or a tag-shaped `<name>` or
# `</name>` (ChatML's <|im_start|>, Llama 3's <|start_header_id|>, DeepSeek's <｜User｜>, Gemma's
# <start_of_turn>, </s>), and a `[` opening an upper-case `[NAME]` (Mistral's [INST], [TOOL_RESULTS]).
_SPECIAL_TOKEN_START = re.compile(r"<(?=[|\uff5c]|/?[A-Za-z_][\w.:-]*[|\uff5c]?>)|\[(?=/?[A-Z][A-Z_]{2,}\])")
_ZERO_WIDTH_SPACE = "\u200b"


@dataclass(frozen=True)
class GroundedPrompt:
    """Messages with the sources put in, and the sources that fit (numbered from 1 in this order)."""

    messages: list[dict[str, Any]]
    sources: list[Hit]


def inert(text: str) -> str:
    """Text from a document or a tool's result as a model may read it: a special token written in it
    (`<|im_end|><|im_start|>system`) gets a zero-width space after its first character, so it is
    tokenized as the characters it is and can never end the turn it sits in or open a system turn.
    Only the prompt gets this text; sources and results are shown to people as they are."""
    return _SPECIAL_TOKEN_START.sub(lambda match: match.group() + _ZERO_WIDTH_SPACE, text)


def ground(messages: list[dict[str, Any]], hits: list[Hit], count_tokens: Callable[[str], int],
           n_ctx: int, answer_reserve: int | None = None) -> GroundedPrompt:
    """Put as many of the hits as fit into the last user message, best first."""
    if not hits or not messages or messages[-1].get("role") != "user":
        return GroundedPrompt(messages, [])
    reserve = answer_reserve if answer_reserve is not None else min(DEFAULT_ANSWER_RESERVE, n_ctx // 4)
    question = str(messages[-1].get("content") or "")
    used = sum(count_tokens(str(m.get("content") or "")) + MESSAGE_OVERHEAD for m in messages)
    room = n_ctx - reserve - used - count_tokens(INSTRUCTION) - MESSAGE_OVERHEAD
    sources: list[Hit] = []
    parts: list[str] = []
    for hit in hits:
        # Paths stay out of the prompt: the footer names them, and a small model would copy them as its answer.
        # A document is data in the user's turn: a turn marker written in it must not open a turn of its own.
        part = f"[{len(sources) + 1}] {inert(hit.text)}"
        cost = count_tokens(part) + 2
        if cost > room:
            continue  # a smaller later hit may still fit
        room -= cost
        sources.append(hit)
        parts.append(part)
    if not sources:
        return GroundedPrompt(messages, [])
    content = f"{INSTRUCTION}\n\nSources:\n\n" + "\n\n".join(parts) + f"\n\nQuestion: {question}"
    return GroundedPrompt([*messages[:-1], {**messages[-1], "content": content}], sources)


def sources_footer(sources: list[Hit]) -> str:
    """The sources of an answer, one per line, as they were numbered in the prompt."""
    if not sources:
        return ""
    return "\n\nSources:\n" + "\n".join(f"[{number}] {hit.where()}" for number, hit in enumerate(sources, start=1))


def citations_json(sources: list[Hit]) -> list[dict[str, object]]:
    """The sources as the API returns them beside the answer."""
    return [{"index": number, **hit.to_json()} for number, hit in enumerate(sources, start=1)]


class Grounding:
    """A scheduler `fit` callback that grounds messages once the model's tokenizer and context are known."""

    def __init__(self, messages: list[dict[str, Any]], hits: list[Hit], answer_reserve: int | None) -> None:
        self.messages = messages
        self.hits = hits
        self.answer_reserve = answer_reserve
        self.sources: list[Hit] = []

    def __call__(self, count_tokens: Callable[[str], int], n_ctx: int) -> list[dict[str, Any]]:
        grounded = ground(self.messages, self.hits, count_tokens, n_ctx, self.answer_reserve)
        self.sources = grounded.sources
        return grounded.messages
