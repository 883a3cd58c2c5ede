"""The OpenAI-compatible routes: models, chat completions, completions, health."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from homellm.docs.answer import Grounding, citations_json, sources_footer
from homellm.docs.search import Hit
from homellm.errors import InvalidRequestError, ModelNotFoundError
from homellm.generation import Failed, Finished, TextDelta
from homellm.models.gguf import ENCODER_ARCHITECTURES
from homellm.models.store import Store
from homellm.reasoning import split_whole
from homellm.scheduler import Generation
from homellm.server.docs import library
from homellm.server.generate import (
    CLIENT_CLOSED_REQUEST,
    AnswerCalls,
    AnswerReasoning,
    AnswerText,
    answer_events,
    client_of,
    collect_unless_disconnected,
    default_model,
    for_model,
    refuse_embedding_model,
    scheduler_of,
    stream_error,
    streamed,
)
from homellm.server.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    chat_chunk,
    chat_completion,
    model_card,
    new_id,
    null_usage,
    text_completion,
    tool_calls_completion,
    usage,
    usage_chunk,
)
from homellm.tools.calling import ToolSetup

router = APIRouter()

@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """200 when no model is loading or failed; 503 while one loads or after a failed load.

    A model split across RPC workers counts until its first load is done; a worker lost later
    fails requests, not the server's health.
    """
    split = request.app.state.split
    if split is not None and not split.loaded_once:
        body = {"status": "error", "errors": [split.load_error]} if split.load_error else {"status": "loading"}
        return JSONResponse(body, status_code=503)
    statuses = scheduler_of(request).statuses()
    if all(s.state == "ready" for s in statuses):
        return JSONResponse({"status": "ok"})
    failed = [s.error for s in statuses if s.state == "failed"]
    body = {"status": "error", "errors": failed} if failed else {"status": "loading"}
    return JSONResponse(body, status_code=503)


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    """The models this server serves: those loaded, the rest of the store, then the upstreams' as NAME/MODEL."""
    return {"object": "list", "data": _model_cards(request) + await _upstream_cards(request)}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    """One model, loaded, stored or upstream."""
    for card in _model_cards(request) + await _upstream_cards(request):
        if card["id"] == model_id:
            return card
    raise ModelNotFoundError(f"the model {model_id!r} does not exist or is not served here",
                             hint="GET /v1/models lists the served models", param="model")


async def _upstream_cards(request: Request) -> list[dict[str, Any]]:
    upstreams = request.app.state.upstreams
    if upstreams is None:
        return []
    upstreams.refresh()
    return await upstreams.models()


def _model_cards(request: Request) -> list[dict[str, Any]]:
    created = {s.name: s.created for s in scheduler_of(request).statuses()}
    store: Store | None = request.app.state.store
    kinds: dict[str, str] = {}
    for model in store.list() if store else []:
        created.setdefault(model.name, int(model.created))
        kinds[model.name] = "embedding" if model.facts.architecture in ENCODER_ARCHITECTURES else "chat"
    return [model_card(name, when, kinds.get(name, "chat")) for name, when in created.items()]


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    """Chat: the model's own template, then a streamed or whole answer."""
    scheduler = scheduler_of(request)
    model = body.model or default_model(scheduler)
    refuse_embedding_model(request, model)
    # A bad request is refused before a model is loaded for it.
    body.to_messages(body.tool_setup), body.to_sampling(body.tool_setup)
    thinking = body.thinking()
    setup = await for_model(scheduler, model, body.tool_setup)
    messages = body.to_messages(setup)
    sampling = body.to_sampling(setup)
    grounding = await _grounding(request, body, messages, sampling.max_tokens)
    generation = await scheduler.chat(model, messages, sampling, body.keep_alive_seconds(), fit=grounding,
                                      tools=setup.template_tools() if setup else None, client=client_of(request),
                                      thinking=thinking)
    cid = new_id("chatcmpl")
    created = int(time.time())
    sources = grounding.sources if grounding else []
    # A JSON answer must stay JSON: its sources travel only in `homellm.citations`.
    footer = sources_footer(sources) if sampling.response_format.kind == "text" else ""
    if body.stream and (setup is not None or generation.reasoning is not None):
        return _sse(generation, _answer_chat_stream(generation, setup, cid, created, model, body.include_usage(),
                                                    sources, footer))
    if body.stream:
        return _sse(generation, _chat_stream(generation, cid, created, model, body.include_usage(), sources, footer))

    def build(text: str, reason: str, use: dict[str, Any]) -> dict[str, Any]:
        split = split_whole(generation.reasoning, text)
        calls = setup.parse(split.content) if setup is not None else None
        if calls:
            return tool_calls_completion(cid, created, model, calls, use, split.reasoning)
        return _with_citations(chat_completion(cid, created, model, split.content + footer, reason, use,
                                               split.reasoning), sources)

    return await _whole_answer(request, generation, build)


async def _grounding(request: Request, body: ChatCompletionRequest, messages: list[dict[str, Any]],
                     max_tokens: int | None) -> Grounding | None:
    """The collections' best chunks for the last user message, ready to go into the prompt."""
    extras = body.homellm
    if extras is None or not extras.collections:
        return None
    question = str(messages[-1].get("content") or "") if messages[-1].get("role") == "user" else ""
    if not question.strip():
        raise InvalidRequestError("answering from collections needs the last message to be the user's question",
                                  hint="end the messages with a user message", param="messages")
    return await run_in_threadpool(library(request).grounding, extras.collections, messages, question, extras.k,
                                   max_tokens)


def _with_citations(response: dict[str, Any], sources: list[Hit]) -> dict[str, Any]:
    if sources:
        response["homellm"] = {"citations": citations_json(sources)}
    return response


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request) -> Any:
    """Plain completion of a prompt, no template."""
    scheduler = scheduler_of(request)
    model = body.model or default_model(scheduler)
    generation = await scheduler.complete(model, body.prompt_text(), body.to_sampling(), body.keep_alive_seconds(),
                                          client=client_of(request))
    cid = new_id("cmpl")
    created = int(time.time())
    if body.stream:
        return _sse(generation, _completion_stream(generation, cid, created, model, body.include_usage()))
    return await _whole_answer(request, generation,
                               lambda text, reason, use: text_completion(cid, created, model, text, reason, use))


async def _whole_answer(request: Request, generation: Generation,
                        build: Callable[[str, str, dict[str, Any]], dict[str, Any]]) -> Any:
    """The response body built from the whole answer, or an empty 499 if the client left."""
    answer = await collect_unless_disconnected(request, generation)
    if answer is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    text, finished = answer
    use = usage(finished)
    return _marked_loop(build(text, finished.reason, use), finished)


def _marked_loop(response: dict[str, Any], finished: Finished) -> dict[str, Any]:
    """An answer the loop guard ended says so beside its finish reason "length" (`homellm.loop_guard`)."""
    if finished.looped:
        response.setdefault("homellm", {})["loop_guard"] = True
    return response


def _sse(generation: Generation, events: AsyncIterator[bytes]) -> StreamingResponse:
    async def with_done() -> AsyncIterator[bytes]:
        async for event in events:
            yield event
        yield b"data: [DONE]\n\n"

    return streamed(with_done(), "text/event-stream", generation.cancel)


def _event(chunk: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"


class _TextEvents:
    """SSE events for text deltas, from a chunk serialised once around a placeholder.

    Per token only the text is JSON-encoded; the rest of the chunk is fixed bytes.
    """

    MARK = "\x00text\x00"

    def __init__(self, chunk_with_placeholder: dict[str, Any]) -> None:
        encoded = _event(chunk_with_placeholder)
        marker = json.dumps(self.MARK).encode()
        self._prefix, _, self._suffix = encoded.partition(marker)

    def encode(self, text: str) -> bytes:
        """The SSE event carrying this text."""
        return self._prefix + json.dumps(text, ensure_ascii=False).encode() + self._suffix


async def _stream_events(generation: Generation, text_events: _TextEvents,
                         final_chunk: Callable[[str], dict[str, Any]],
                         usage_chunk_of: Callable[[dict[str, Any]], dict[str, Any]] | None,
                         tail: str = "") -> AsyncIterator[bytes]:
    """Turn engine events into SSE events; text arriving together goes out as one event.

    `tail` is text of our own (the sources) sent after the model's last token.
    """
    async for batch in generation.events():
        text = "".join(e.text for e in batch if isinstance(e, TextDelta))
        if text:
            yield text_events.encode(text)
        last = batch[-1]
        if isinstance(last, Failed):
            yield _event(_stream_error(last.error))
            return
        if isinstance(last, Finished):
            if tail:
                yield text_events.encode(tail)
            yield _event(_marked_loop(final_chunk(last.reason), last))
            if usage_chunk_of is not None:
                yield _event(usage_chunk_of(usage(last)))


async def _chat_stream(generation: Generation, cid: str, created: int, model: str,
                       include_usage: bool, sources: list[Hit], footer: str) -> AsyncIterator[bytes]:
    def chunk(delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        return null_usage(chat_chunk(cid, created, model, delta, reason), include_usage)

    yield _event(chunk({"role": "assistant", "content": ""}))
    async for event in _stream_events(
        generation,
        _TextEvents(chunk({"content": _TextEvents.MARK})),
        lambda reason: _with_citations(chunk({}, reason), sources),
        (lambda use: usage_chunk(cid, created, model, "chat.completion.chunk", use)) if include_usage else None,
        footer,
    ):
        yield event


async def _answer_chat_stream(generation: Generation, setup: ToolSetup | None, cid: str, created: int, model: str,
                              include_usage: bool, sources: list[Hit], footer: str) -> AsyncIterator[bytes]:
    """A streamed turn that may be tool calls or start with a reasoning model's thinking: thinking streams
    as `reasoning_content` (and `reasoning`) deltas; text streams as soon as it is known not to open a call;
    a call is sent whole when it is complete, as a name delta and an arguments delta per call."""
    def chunk(delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        return null_usage(chat_chunk(cid, created, model, delta, reason), include_usage)

    yield _event(chunk({"role": "assistant", "content": None if setup is not None else ""}))
    called = False
    async for event in answer_events(generation, setup):
        if isinstance(event, AnswerReasoning):
            yield _event(chunk({"reasoning_content": event.text, "reasoning": event.text}))
        elif isinstance(event, AnswerText):
            yield _event(chunk({"content": event.text}))
        elif isinstance(event, AnswerCalls):
            called = True
            for index, call in enumerate(event.calls):
                named = {"index": index, "id": call.id, "type": "function",
                         "function": {"name": call.name, "arguments": ""}}
                yield _event(chunk({"tool_calls": [named]}))
                yield _event(chunk({"tool_calls": [{"index": index, "function": {"arguments": call.arguments}}]}))
        elif isinstance(event, Failed):
            yield _event(_stream_error(event.error))
        else:
            if footer and not called:
                yield _event(chunk({"content": footer}))
            final = chunk({}, "tool_calls" if called else event.reason)
            yield _event(_marked_loop(final if called else _with_citations(final, sources), event))
            if include_usage:
                use = usage(event)
                yield _event(usage_chunk(cid, created, model, "chat.completion.chunk", use))


async def _completion_stream(generation: Generation, cid: str, created: int, model: str,
                             include_usage: bool) -> AsyncIterator[bytes]:
    def chunk(text: str, reason: str | None = None) -> dict[str, Any]:
        return null_usage(text_completion(cid, created, model, text, reason), include_usage)

    async for event in _stream_events(
        generation,
        _TextEvents(chunk(_TextEvents.MARK)),
        lambda reason: chunk("", reason),
        (lambda use: usage_chunk(cid, created, model, "text_completion", use)) if include_usage else None,
    ):
        yield event


def _stream_error(exc: Exception) -> dict[str, Any]:
    # Headers are gone once a stream has begun; the error travels as an event, as OpenAI's does.
    return stream_error("openai", exc)
