"""The loop guard: spots an answer caught repeating one span of tokens over and over.

Small models at low temperature fall into loops ("Luna_Aurora_Luna_Aurora_...") that
run until the context is full. The guard watches the token ids, not the text: an
answer whose last tokens are one span said `repeats` times in a row, and at least
`MIN_LOOP_TOKENS` tokens long, is in a loop. Counting 1 to 200 or a list of similar
lines never is: each line differs from the one before it.
"""

from __future__ import annotations

import numpy as np

MAX_SPAN = 128  # longest repeated span looked for, in tokens (a sentence or two)
MIN_LOOP_TOKENS = 48  # "!!!!" or "\n\n\n" a few times is text; this many tokens of one span is a loop
MAX_REPEATS = 1000  # the most repeats a request or the CLI may set the guard to


def check_repeats(repeats: int) -> int:
    """A loop guard setting as given: 0 (off) or 2 to MAX_REPEATS; ValueError with the rule otherwise."""
    if repeats == 0 or 2 <= repeats <= MAX_REPEATS:
        return repeats
    raise ValueError(f"a loop is a span said at least twice: give 2 to {MAX_REPEATS}, or 0 for no guard")


class LoopGuard:
    """Watches one answer's tokens; `feed` says when its tail became a loop."""

    def __init__(self, repeats: int, max_span: int = MAX_SPAN, min_tokens: int = MIN_LOOP_TOKENS) -> None:
        if check_repeats(repeats) == 0:
            raise ValueError("a guard that is off needs no LoopGuard")
        spans = np.arange(1, max_span + 1)
        # A span of p tokens said `repeats` times: the last (repeats - 1) * p tokens each equal the
        # token p before them, and all the copies together are at least min_tokens long.
        self._needed = np.maximum((repeats - 1) * spans, min_tokens - spans)
        self._recent = np.full(max_span, -1, dtype=np.int64)  # recent[k]: the token k + 1 steps back
        self._runs = np.zeros(max_span, dtype=np.int64)  # runs[p - 1]: latest tokens equal to the one p back
        self.span = 0  # the looping span's length, once found

    def feed(self, token: int) -> bool:
        """Take the answer's next token; True once the answer is in a loop."""
        same = self._recent == token
        self._runs += 1
        self._runs *= same
        self._recent[1:] = self._recent[:-1]
        self._recent[0] = token
        looping = np.flatnonzero(self._runs >= self._needed)
        if looping.size:
            self.span = int(looping[0]) + 1
            return True
        return False
