"""What every API dialect does around a generation: the scheduler and model a request names, the
embedding-model check, and waiting for a whole answer unless the client hangs up.

Each dialect (openai.py, ollama.py, anthropic.py, responses.py) translates its request onto the
scheduler's request types and these helpers, and the scheduler's events back into its own shape.
"""

from __future__ import annotations

import asyncio

from fastapi import Request

from homellm.embed.registry import ENCODER_ARCHITECTURES
from homellm.errors import InvalidRequestError, ModelNotFoundError
from homellm.generation import Finished
from homellm.models.store import Store
from homellm.scheduler import Generation, Scheduler
from homellm.server.security import wait_for_disconnect

# nginx's status for a client that hung up; nobody reads it, but logs do.
CLIENT_CLOSED_REQUEST = 499


def scheduler_of(request: Request) -> Scheduler:
    """The app's scheduler."""
    return request.app.state.scheduler


def default_model(scheduler: Scheduler) -> str:
    """The model served when a request names none: the one given at start."""
    if scheduler.default_model is None:
        raise ModelNotFoundError("no model is served", hint="start the server with --model NAME")
    return scheduler.default_model


def refuse_embedding_model(request: Request, model: str) -> None:
    """An embedding model cannot chat; say so before loading it as if it could."""
    store: Store | None = request.app.state.store
    if store is None or any(s.name == model for s in scheduler_of(request).statuses()):
        return
    try:
        stored = store.get(model)
    except ModelNotFoundError:
        return  # the scheduler says so, in its own words
    if stored.facts.architecture in ENCODER_ARCHITECTURES:
        raise InvalidRequestError(f"{stored.name} is an embedding model; it cannot chat",
                                  hint="use it with POST /v1/embeddings, and pick a chat model here",
                                  param="model")


async def collect_unless_disconnected(request: Request,
                                      generation: Generation) -> tuple[str, Finished] | None:
    """Wait for the whole answer; a client that hangs up cancels it (and gets None)."""
    answer = asyncio.ensure_future(generation.collect())
    hangup = asyncio.ensure_future(wait_for_disconnect(request.receive))
    done = False
    try:
        await asyncio.wait({answer, hangup}, return_when=asyncio.FIRST_COMPLETED)
        done = answer.done()
    finally:  # also when this handler is cancelled, at shutdown
        hangup.cancel()
        if not done:
            generation.cancel()
            answer.cancel()
    return answer.result() if done else None
