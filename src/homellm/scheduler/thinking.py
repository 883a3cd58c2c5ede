"""The reasoning budget: counting a reasoning model's thinking tokens, and saying when to close them.

A reasoning model thinks between an open and a close tag at the start of its answer (the prompt may
have opened it already). Past the budget the decode loop writes the close tag itself, and the model
answers after it, as llama.cpp's `--reasoning-budget` does.
"""

from __future__ import annotations

from homellm.generation import Reasoning

TAIL = 64  # characters of the thinking kept to find a close tag split across tokens


class ThinkingBudget:
    """One answer's thinking: where it is (before, inside, done) and how many tokens it took."""

    def __init__(self, reasoning: Reasoning) -> None:
        self._reasoning = reasoning
        self._state = "inside" if reasoning.starts_inside else "before"
        self._text = ""  # the answer so far while before the open tag; the thinking's tail while inside
        self.spent = 0  # thinking tokens so far

    @property
    def thinking(self) -> bool:
        """Whether the answer is inside its thinking now."""
        return self._state == "inside"

    def feed(self, text: str) -> bool:
        """One generated token's text; True when it spent the budget and the thinking must be closed now."""
        reasoning = self._reasoning
        if self._state == "before":
            self._text += text
            head = self._text.lstrip()
            if head.startswith(reasoning.open_tag):
                self._state, self._text = "inside", head[len(reasoning.open_tag):]
                self._closed_in(self._text)
            elif not reasoning.open_tag.startswith(head):  # the answer does not open with thinking
                self._state = "done"
            return False
        if self._state != "inside":
            return False
        self.spent += 1
        if self._closed_in(self._text + text):
            return False
        if reasoning.budget is not None and self.spent >= reasoning.budget:
            self._state = "done"
            return True
        return False

    def _closed_in(self, text: str) -> bool:
        """Whether `text` (the thinking's tail) holds the close tag; keeps the tail for the next token."""
        if self._reasoning.close_tag in text:
            self._state = "done"
            return True
        self._text = text[-(len(self._reasoning.close_tag) + TAIL):]
        return False
