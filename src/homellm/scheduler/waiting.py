"""The requests waiting for a model's slots, kept per client so that one client cannot crowd out the rest.

A client (the address a request came from; "" for the process's own callers) gets a line of its
own. A free slot goes to the oldest request of the client with the fewest requests running (in
turn among equals), so a client with one request waits for one slot to free, however many another
has queued. When the queue is full, a client with fewer requests waiting than the busiest one
still gets in: the busiest client's newest request is refused in its place (it has waited least).
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Mapping

from homellm.scheduler.slots import Request


class WaitingRequests:
    """Waiting requests in one line per client, taken in turn; not thread-safe (the loop holds a lock)."""

    def __init__(self) -> None:
        # Insertion-ordered: the first client is the next to be served, and goes to the back after.
        self._lines: dict[str, collections.deque[Request]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Request]:
        for line in self._lines.values():
            yield from line

    def push(self, request: Request) -> None:
        """Queue a request at the back of its client's line."""
        self._lines.setdefault(request.client, collections.deque()).append(request)
        self._size += 1

    def pop(self, running: Mapping[str, int]) -> Request | None:
        """The oldest request of the client with the fewest `running` (the first in turn among equals; it
        goes to the back of the turn); None when empty."""
        if not self._lines:
            return None
        client = min(self._lines, key=lambda name: running.get(name, 0))  # min keeps the first of equals
        line = self._lines.pop(client)
        request = line.popleft()
        if line:
            self._lines[client] = line
        self._size -= 1
        return request

    def count(self, client: str) -> int:
        """How many requests of this client are waiting."""
        line = self._lines.get(client)
        return len(line) if line is not None else 0

    def busiest_above(self, client: str) -> str | None:
        """The client with the most requests waiting, if it has at least two more than `client` (so that
        giving one of its places to `client` still leaves it with as many): None otherwise."""
        if not self._lines:
            return None
        busiest = max(self._lines, key=lambda name: len(self._lines[name]))
        if busiest == client or len(self._lines[busiest]) < self.count(client) + 2:
            return None
        return busiest

    def drop_newest(self, client: str) -> Request:
        """Take the newest waiting request of this client out of the queue."""
        line = self._lines[client]
        request = line.pop()
        if not line:
            del self._lines[client]
        self._size -= 1
        return request

    def drain(self) -> list[Request]:
        """Every waiting request, the queue left empty."""
        requests = list(self)
        self._lines.clear()
        self._size = 0
        return requests
