"""Stop strings over a stream of text pieces, without emitting any part of a stop."""

from __future__ import annotations


class StopScanner:
    """Holds back text that could still become a stop string; reports the first stop hit."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._pending = ""
        self.stopped = False
        self.matched: str | None = None  # the stop string that ended the text, once one has

    def feed(self, text: str) -> str:
        """Take new text; return the part that is safe to emit now."""
        if not self._stops:
            return text
        self._pending += text
        found = [(i, stop) for stop in self._stops if (i := self._pending.find(stop)) >= 0]
        if found:
            cut, self.matched = min(found, key=lambda hit: hit[0])
            self.stopped = True
            safe, self._pending = self._pending[:cut], ""
            return safe
        hold = self._longest_stop_prefix_suffix()
        safe = self._pending[: len(self._pending) - hold]
        self._pending = self._pending[len(safe) :]
        return safe

    def flush(self) -> str:
        """The text still held back, once generation ends without a stop."""
        rest, self._pending = self._pending, ""
        return rest

    def _longest_stop_prefix_suffix(self) -> int:
        """Length of the longest end of the pending text that begins some stop string."""
        best = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(self._pending)), best, -1):
                if self._pending.endswith(stop[:n]):
                    best = n
                    break
        return best
