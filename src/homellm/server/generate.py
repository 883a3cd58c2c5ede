"""What every API dialect does around a generation: the scheduler and model a request names, the
embedding-model check, and waiting for a whole answer unless the client hangs up.

Each dialect (openai.py, ollama.py, anthropic.py, responses.py) translates its request onto the
scheduler's request types and these helpers, and the scheduler's events back into its own shape.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from homellm.errors import HomellmError, InvalidRequestError, ModelNotFoundError
from homellm.generation import Failed, Finished, TextDelta
from homellm.models.gguf import ENCODER_ARCHITECTURES
from homellm.models.store import Store
from homellm.reasoning import ReasoningSplitter, Split, split_whole
from homellm.scheduler import Generation, Scheduler
from homellm.server.dialects import Dialect, error_json
from homellm.server.security import wait_for_disconnect
from homellm.tools.calling import ToolCall, ToolSetup

# nginx's status for a client that hung up; nobody reads it, but logs do.
CLIENT_CLOSED_REQUEST = 499
# A proxy in front (nginx) must pass each event on as it comes, not buffer the answer.
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def scheduler_of(request: Request) -> Scheduler:
    """The app's scheduler."""
    return request.app.state.scheduler


def client_of(request: Request) -> str:
    """Who sent the request, for the scheduler's fair queue: the client's address (as a proxy that
    uvicorn trusts reports it)."""
    return request.client.host if request.client is not None else ""


def default_model(scheduler: Scheduler) -> str:
    """The model served when a request names none: the one given at start."""
    if scheduler.default_model is None:
        raise ModelNotFoundError("no model is served", hint="start the server with --model NAME")
    return scheduler.default_model


async def for_model(scheduler: Scheduler, model: str, setup: ToolSetup | None) -> ToolSetup | None:
    """The tools offered, in the call syntax the model's template was made for (loading the model)."""
    return setup.for_model(await scheduler.call_syntax(model)) if setup is not None else None


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


@dataclass(frozen=True)
class AnswerReasoning:
    """A reasoning model's thinking, to be shown apart from the answer as it comes (it comes first)."""

    text: str


@dataclass(frozen=True)
class AnswerText:
    """Text of the answer, to be shown as it comes."""

    text: str


@dataclass(frozen=True)
class AnswerCalls:
    """The turn's tool calls, complete; they come just before the `Finished` event."""

    calls: list[ToolCall]


AnswerEvent = AnswerReasoning | AnswerText | AnswerCalls | Finished | Failed


async def answer_events(generation: Generation, tools: ToolSetup | None) -> AsyncIterator[AnswerEvent]:
    """A generation's events as a dialect streams them; ends with `Finished` or `Failed`.

    A reasoning model's thinking comes as `AnswerReasoning`, apart from the answer (`Generation.reasoning`
    says how it is marked). With tools, text that opens a call is held until the call is complete and
    comes as `AnswerCalls`; text known not to open one streams at once. Leaving early cancels the
    generation (a client that hung up).
    """
    held = ""
    is_call: bool | None = None if tools is not None else False
    splitter = ReasoningSplitter(generation.reasoning) if generation.reasoning is not None else None
    try:
        async for batch in generation.events():
            text = "".join(e.text for e in batch if isinstance(e, TextDelta))
            if splitter is not None:
                part = _split_batch(splitter, text, isinstance(batch[-1], (Finished, Failed)))
                if part.reasoning:
                    yield AnswerReasoning(part.reasoning)
                text = part.content
            if is_call is False:
                if text:
                    yield AnswerText(text)
            else:
                held += text
                is_call = tools.starts_a_call(held) if tools is not None else False
                if is_call is False:
                    yield AnswerText(held)
            last = batch[-1]
            if isinstance(last, Failed):
                yield last
                return
            if isinstance(last, Finished):
                calls = tools.parse(held) if is_call and tools is not None else None
                if calls:
                    yield AnswerCalls(calls)
                elif is_call is not False and held:
                    yield AnswerText(held)  # a call cut off by max_tokens: shown as it is
                yield last
                return
    finally:
        generation.cancel()  # a no-op once finished; stops decoding if the client left


def _split_batch(splitter: ReasoningSplitter, text: str, last: bool) -> Split:
    """One batch's text split into thinking and answer; at the end, with what the splitter held."""
    part = splitter.feed(text)
    if not last:
        return part
    rest = splitter.finish()
    return Split(part.reasoning + rest.reasoning, part.content + rest.content)


@dataclass(frozen=True)
class Answer:
    """A whole answer: its text, or its tool calls, a reasoning model's thinking, and how it ended."""

    text: str
    calls: list[ToolCall] | None
    finished: Finished
    reasoning: str = ""


async def whole_answer(request: Request, generation: Generation, tools: ToolSetup | None) -> Answer | None:
    """The whole answer, with tool calls parsed when tools were offered and a reasoning model's thinking
    apart; None if the client hung up."""
    collected = await collect_unless_disconnected(request, generation)
    if collected is None:
        return None
    text, finished = collected
    split = split_whole(generation.reasoning, text)
    return Answer(split.content, tools.parse(split.content) if tools is not None else None, finished,
                  split.reasoning)


def streamed(events: AsyncIterator[bytes], media_type: str, on_close: Callable[[], None]) -> StreamingResponse:
    """A streamed answer; however the stream ends (done, failed, the client gone), `on_close` runs:
    it cancels the work behind it (a no-op once that work is finished)."""
    async def body() -> AsyncIterator[bytes]:
        try:
            async for event in events:
                yield event
        finally:
            on_close()

    return StreamingResponse(body(), media_type=media_type, headers=STREAM_HEADERS)


def stream_error(dialect: Dialect, exc: Exception) -> dict[str, Any]:
    """An error that breaks a stream already begun, in the dialect's error shape (headers are gone)."""
    if isinstance(exc, HomellmError):
        return error_json(dialect, exc.status, exc.one_line(), exc.type, exc.code, exc.param)
    return error_json(dialect, 500, f"internal error ({type(exc).__name__}); the server log has the details",
                      "server_error", "internal_error")
