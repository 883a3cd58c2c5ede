"""One request's generation as the asyncio side sees it: a stream of events and a cancel switch."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

from homellm.generation import Failed, Finished, GenerationEvent, Reasoning, TextDelta


class Generation:
    """Events pushed by a worker thread, read by one coroutine."""

    def __init__(self, loop: asyncio.AbstractEventLoop, prompt_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.loop = loop
        # A reasoning model's thinking markers, when the answer may start with thinking: readers split
        # the text with them (homellm.reasoning). None for models that do not think.
        self.reasoning: Reasoning | None = None
        self._events: asyncio.Queue[GenerationEvent] = asyncio.Queue()
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Stop generating at the next token (or skip the request if it has not started)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        """Whether the reader has given up on this generation."""
        return self._cancel.is_set()

    def deliver(self, event: GenerationEvent) -> None:
        """Hand an event to the reader; called on the reader's event loop."""
        self._events.put_nowait(event)

    async def events(self) -> AsyncIterator[list[GenerationEvent]]:
        """Batches of events as they arrive: everything pending is taken at once."""
        while True:
            batch = [await self._events.get()]
            while not self._events.empty():
                batch.append(self._events.get_nowait())
            yield batch
            if isinstance(batch[-1], (Finished, Failed)):
                return

    async def collect(self) -> tuple[str, Finished]:
        """The whole answer and how it finished; raises what the worker raised."""
        parts: list[str] = []
        async for batch in self.events():
            for event in batch:
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                elif isinstance(event, Failed):
                    raise event.error
                else:
                    return "".join(parts), event
        raise RuntimeError("generation ended without a Finished event")  # pragma: no cover
