"""Drafts for speculative decoding from the text so far (prompt lookup), with no second model.

The last NGRAM tokens are looked up where they occurred before, in the prompt or in the
answer, and the tokens that followed them there are the draft. It wins where an answer
copies: quoting a document, repeating or editing a text, JSON that repeats its keys.
"""

from __future__ import annotations

from collections.abc import Iterable

NGRAM = 3  # tokens that must match; 2 drafted too often from common pairs ("of the") in free text


class NgramDrafter:
    """A sequence's tokens with an index of where each n-gram last occurred: lookups cost O(1)."""

    def __init__(self, tokens: Iterable[int] = (), n: int = NGRAM) -> None:
        self._n = n
        self._tokens: list[int] = []
        self._next: dict[tuple[int, ...], int] = {}  # an n-gram to the position right after its latest occurrence
        self.extend(tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def extend(self, tokens: Iterable[int]) -> None:
        """Append tokens to the sequence."""
        n, seq, index = self._n, self._tokens, self._next
        for token in tokens:
            # The n-gram ending just before this token is indexed now that a token follows it; the
            # sequence's own last n-gram stays out, so a lookup never finds itself.
            if len(seq) >= n:
                index[tuple(seq[-n:])] = len(seq)
            seq.append(token)

    def propose(self, limit: int) -> list[int]:
        """Up to `limit` tokens that followed the latest earlier occurrence of the last n-gram (none if none)."""
        seq = self._tokens
        if limit <= 0 or len(seq) < self._n:
            return []
        start = self._next.get(tuple(seq[-self._n:]))
        if start is None:
            return []
        return seq[start:start + limit]
