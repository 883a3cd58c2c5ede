"""Ollama's generation routes (docs/api.md in ollama/ollama): /api/chat, /api/generate, /api/embed, /api/embeddings.

A thin translation onto the scheduler's requests and `answer_events`: NDJSON streams (the default) or one
JSON object, durations in nanoseconds measured here and in the decode loop, tool calls with arguments as
objects. Errors leave in Ollama's `{"error": "..."}` shape through errors.py; one that breaks a stream
already begun is its last line.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from homellm.config import parse_keep_alive
from homellm.embed.registry import EmbeddingModels
from homellm.errors import HomellmError, InvalidRequestError, ModelNotFoundError
from homellm.generation import (
    Failed,
    Finished,
    ResponseFormat,
    SamplingParams,
    Thinking,
)
from homellm.json_schema import check_schema
from homellm.scheduler import Generation
from homellm.server.dialects import OLLAMA_PREFIX
from homellm.server.generate import (
    CLIENT_CLOSED_REQUEST,
    AnswerCalls,
    AnswerReasoning,
    AnswerText,
    answer_events,
    client_of,
    for_model,
    refuse_embedding_model,
    scheduler_of,
    stream_error,
    streamed,
    whole_answer,
)
from homellm.server.schemas import (
    MAX_TOP_LOGPROBS,
    EmbeddingRequest,
    StopList,
    StopText,
)
from homellm.server.tool_schemas import OllamaTool
from homellm.tools.calling import (
    ToolCall,
    ToolChoice,
    ToolSetup,
    parse_tools,
    plain_history,
)

log = logging.getLogger(__name__)
router = APIRouter()

INT64_MAX = 2**63 - 1
NO_VISION = "images are not supported yet (no vision models)"
NDJSON = "application/x-ndjson"
THINK_LEVELS = ("low", "medium", "high")


# Request bodies (unknown fields are ignored: clients send many that have no meaning here)

class OllamaOptions(BaseModel):
    """`options`: the Modelfile parameters that mean something here; the rest (num_gpu, mirostat...) are ignored."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    temperature: float | None = Field(default=None, ge=0.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0, le=2**31 - 1)  # llama.cpp's int32
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=-INT64_MAX - 1, le=INT64_MAX)  # Go's int, as Ollama reads it
    stop: StopText | StopList | None = None
    # -1 and -2: until the context is full; 0 too, as Ollama's runner reads it (it stops only at a positive count).
    num_predict: int | None = Field(default=None, ge=-2, le=INT64_MAX)
    num_ctx: int | None = Field(default=None, ge=1, le=INT64_MAX)
    repeat_penalty: float | None = Field(default=None, gt=0.0)
    repeat_last_n: int | None = Field(default=None, ge=-1, le=1_000_000)  # -1: the whole context


class _OllamaRequest(BaseModel):
    """Fields /api/chat and /api/generate share."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    stream: bool | None = None  # absent or null: stream, as Ollama does
    format: str | dict[str, Any] | None = None
    options: OllamaOptions | None = None
    keep_alive: str | float | None = None
    think: bool | str | None = None  # a reasoning model's thinking: true, false, or "low"/"medium"/"high"
    logprobs: bool | None = None  # accepted within Ollama's bounds; none are computed
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)

    def keep_alive_seconds(self) -> float | None:
        """`keep_alive` in seconds (inf for forever), None for the server's default; garbage is a 400."""
        return parse_keep_alive(self.keep_alive)

    def streams(self) -> bool:
        """Whether the answer comes as NDJSON lines."""
        return self.stream is not False

    def thinking(self) -> Thinking:
        """`think` as Ollama reads it: asking a model that cannot think to think is refused."""
        think = self.think
        if think is None or isinstance(think, bool):
            return Thinking(enabled=think, param="think")
        if think in THINK_LEVELS:
            return Thinking(enabled=True, effort=think, param="think")
        raise InvalidRequestError(f"think is {think!r}", hint='send true, false, "low", "medium" or "high"',
                                  param="think")

    def response_format(self) -> ResponseFormat:
        """`format`: "json" for any JSON object, a JSON schema for that schema, "" or absent for text."""
        fmt = self.format
        if fmt is None or fmt == "":
            return ResponseFormat()
        if fmt == "json":
            return ResponseFormat("json_object")
        if isinstance(fmt, dict):
            check_schema(fmt, "format")
            return ResponseFormat("json_schema", fmt)
        raise InvalidRequestError(f"format is {fmt!r}", hint='use "json" or a JSON schema object', param="format")

    def sampling(self, response_format: ResponseFormat) -> SamplingParams:
        """The engine's sampling parameters; options left out take the model's defaults."""
        options = self.options or OllamaOptions()
        stops = (options.stop,) if isinstance(options.stop, str) else tuple(options.stop or ())
        predict = options.num_predict
        return SamplingParams(
            max_tokens=predict if predict is not None and predict > 0 else None,
            temperature=options.temperature,
            top_p=options.top_p,
            top_k=options.top_k,
            min_p=options.min_p,
            repeat_penalty=options.repeat_penalty,
            repeat_last_n=options.repeat_last_n,
            seed=options.seed,
            stop=stops,
            response_format=response_format,
            # num_predict is a cap, as in Ollama: past the room the prompt leaves it is cut to that room.
            cap_to_context=True,
        )


class OllamaFunctionCall(BaseModel):
    """`function` of a tool call in the history: arguments as an object (a JSON string is read too)."""

    model_config = ConfigDict(extra="ignore")
    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)


class OllamaToolCall(BaseModel):
    """A tool call of an assistant message in the history."""

    model_config = ConfigDict(extra="ignore")
    function: OllamaFunctionCall


class OllamaMessage(BaseModel):
    """One message of /api/chat."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    images: list[Any] | None = None
    tool_calls: list[OllamaToolCall] | None = None
    tool_name: str | None = None  # Ollama's name of the tool whose result a tool message carries


class OllamaChatRequest(_OllamaRequest):
    """POST /api/chat."""

    messages: list[OllamaMessage] | None = None
    tools: list[OllamaTool] | None = Field(default=None, max_length=128)

    def tool_setup(self) -> ToolSetup | None:
        """The tools offered, OpenAI-shaped as Ollama sends them; the model chooses a call or text (auto)."""
        if not self.tools:
            return None
        # A tool without "type" is a function tool to Ollama.
        tools = parse_tools([{"type": "function", **t} if isinstance(t, dict) else t for t in self.tools])
        # Ollama returns every call the model makes in a turn.
        return ToolSetup(tools, ToolChoice("auto"), parallel=True)

    def to_messages(self, setup: ToolSetup | None) -> list[dict[str, Any]]:
        """Messages in OpenAI's shape, with tool turns as the model's syntax has them when tools are
        offered (`setup`), else made plain."""
        messages = openai_history(self.messages or [])
        return setup.messages(messages) if setup else plain_history(messages)


class OllamaGenerateRequest(_OllamaRequest):
    """POST /api/generate."""

    prompt: str | None = None
    system: str | None = None
    raw: bool = False
    suffix: str | None = None
    template: str | None = None
    context: list[int] | None = None
    images: list[Any] | None = None

    def refuse_unsupported(self) -> None:
        """Fields that would change the answer in ways this server cannot honour are refused, not ignored."""
        if self.images:
            raise InvalidRequestError(NO_VISION, hint="send text only", param="images")
        if self.suffix:
            raise InvalidRequestError("suffix (fill-in-the-middle) is not supported",
                                      hint="leave suffix out, or send the text before the gap as the prompt",
                                      param="suffix")
        if self.template:
            raise InvalidRequestError("a custom template is not supported; the model's own chat template applies",
                                      hint="leave template out, or render the prompt yourself and send it with raw",
                                      param="template")
        # This server never returns `context`, so only a client replaying another server's tokens sends one.
        if self.context:
            raise InvalidRequestError("context (a token history) is not supported",
                                      hint="send the conversation as messages to /api/chat, or the whole text as "
                                           "the prompt", param="context")


class OllamaEmbedRequest(EmbeddingRequest):
    """POST /api/embed: `texts()` checks the inputs as /v1/embeddings does."""

    model: str | None = None  # type: ignore[assignment]
    input: str | list[str] | None = None  # type: ignore[assignment]
    keep_alive: str | float | None = None  # embedding models stay loaded; checked, then ignored
    options: dict[str, Any] | None = None


class OllamaEmbeddingsRequest(BaseModel):
    """POST /api/embeddings, the older route: one prompt, one vector."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    prompt: str | None = None
    keep_alive: str | float | None = None
    options: dict[str, Any] | None = None


# Routes

@router.post("/api/chat")
async def chat(body: OllamaChatRequest, request: Request) -> Any:
    """The next message of a chat, streamed as NDJSON unless `stream` is false."""
    started = time.perf_counter()
    model = _required_model(body.model)
    keep_alive = body.keep_alive_seconds()
    messages = body.messages or []
    if any(m.images for m in messages):
        raise InvalidRequestError(NO_VISION, hint="send text only", param="messages")
    refuse_embedding_model(request, model)
    if not messages:
        return await _load_or_unload(request, model, keep_alive, {"message": _message("")})
    response_format = body.response_format()  # checked even when tools set the grammar
    thinking = body.thinking()
    offered = body.tool_setup()
    scheduler = scheduler_of(request)
    load_started = time.perf_counter()
    _check_context(request, model, body.options)
    setup = await for_model(scheduler, model, offered)
    params = body.sampling(setup.response_format() if setup else response_format)
    generation = await scheduler.chat(model, body.to_messages(setup), params, keep_alive,
                                      tools=setup.template_tools() if setup else None, client=client_of(request),
                                      thinking=thinking)
    timing = _Timing(started, time.perf_counter() - load_started)
    return await _answer(request, generation, _ChatShape(model), timing, setup, body.streams())


@router.post("/api/generate")
async def generate(body: OllamaGenerateRequest, request: Request) -> Any:
    """A response to a prompt: through the chat template (with `system`), or as it is with `raw`."""
    started = time.perf_counter()
    model = _required_model(body.model)
    keep_alive = body.keep_alive_seconds()
    body.refuse_unsupported()
    refuse_embedding_model(request, model)
    if not body.prompt:
        return await _load_or_unload(request, model, keep_alive, {"response": ""})
    params = body.sampling(body.response_format())
    thinking = body.thinking()
    scheduler = scheduler_of(request)
    load_started = time.perf_counter()
    _check_context(request, model, body.options)
    if body.raw:
        generation = await scheduler.complete(model, body.prompt, params, keep_alive, client=client_of(request))
    else:
        system = [{"role": "system", "content": body.system}] if body.system else []
        generation = await scheduler.chat(model, [*system, {"role": "user", "content": body.prompt}], params,
                                          keep_alive, client=client_of(request), thinking=thinking)
    timing = _Timing(started, time.perf_counter() - load_started)
    return await _answer(request, generation, _GenerateShape(model), timing, None, body.streams())


@router.post("/api/embed")
async def embed(body: OllamaEmbedRequest, request: Request) -> dict[str, Any]:
    """Vectors for a string or a list of strings (L2-normalised); `dimensions` keeps the first ones."""
    started = time.perf_counter()
    model = _required_model(body.model)
    parse_keep_alive(body.keep_alive)
    load_started = time.perf_counter()
    name, embedder = await run_in_threadpool(_embedding_models(request).get, model)
    load_seconds = time.perf_counter() - load_started
    if body.dimensions is not None and body.dimensions > embedder.n_embd:
        raise InvalidRequestError(f"{name} gives vectors of {embedder.n_embd} dimensions, not {body.dimensions}",
                                  hint=f"ask for {embedder.n_embd} dimensions or fewer", param="dimensions")
    vectors: list[list[float]] = []
    prompt_tokens = 0
    # No input loads the model and answers no vectors, as Ollama does (clients use it to warm a model up).
    if body.input not in (None, "", []):
        result = await run_in_threadpool(embedder.embed, body.texts(), body.truncate)
        vectors = [_shortened([float(x) for x in row], body.dimensions) for row in result.vectors]
        prompt_tokens = result.prompt_tokens
    return {"model": body.model, "embeddings": vectors, "total_duration": _ns(time.perf_counter() - started),
            "load_duration": _ns(load_seconds), "prompt_eval_count": prompt_tokens}


@router.post("/api/embeddings")
async def embeddings(body: OllamaEmbeddingsRequest, request: Request) -> dict[str, Any]:
    """The older route: one prompt's vector; an empty prompt loads the model and answers an empty one."""
    model = _required_model(body.model)
    parse_keep_alive(body.keep_alive)
    _, embedder = await run_in_threadpool(_embedding_models(request).get, model)
    if not body.prompt:
        return {"embedding": []}
    texts = EmbeddingRequest(model=model, input=body.prompt).texts()
    result = await run_in_threadpool(embedder.embed, texts, True)
    return {"embedding": [float(x) for x in result.vectors[0]]}


# History: Ollama's tool turns in OpenAI's shape, for plain_history

def openai_history(messages: list[OllamaMessage]) -> list[dict[str, Any]]:
    """Ollama's messages as OpenAI's: calls get made-up ids, and each tool result the id of its call.

    Ollama has no ids: a tool message answers the pending call named by its `tool_name`, else the
    oldest one still unanswered (tools answer in the order they were called).
    """
    out: list[dict[str, Any]] = []
    pending: list[tuple[str, str]] = []  # (id, name) of the calls not answered yet
    for index, message in enumerate(messages):
        if message.role == "assistant" and message.tool_calls:
            calls = [_openai_call(f"call_{index}_{n}", call.function) for n, call in enumerate(message.tool_calls)]
            pending = [(c["id"], c["function"]["name"]) for c in calls]
            out.append({"role": "assistant", "content": message.content or "", "tool_calls": calls})
        elif message.role == "tool":
            answered = next((p for p in pending if p[1] == message.tool_name), pending[0] if pending else None)
            if answered is not None:
                pending.remove(answered)
            call_id = answered[0] if answered else f"call_{index}_result"
            out.append({"role": "tool", "tool_call_id": call_id, "content": message.content or ""})
        else:
            out.append({"role": message.role, "content": message.content or ""})
    return out


def _openai_call(call_id: str, function: OllamaFunctionCall) -> dict[str, Any]:
    arguments = function.arguments if isinstance(function.arguments, str) else json.dumps(function.arguments)
    return {"id": call_id, "type": "function", "function": {"name": function.name, "arguments": arguments}}


# Answers

@dataclass(frozen=True)
class _Timing:
    """When the handler began and how long the model took to be ready: the final chunk's durations."""

    started: float  # time.perf_counter()
    load_seconds: float

    def final(self, finished: Finished) -> dict[str, Any]:
        """The fields of the last chunk: why it ended, counts and durations in nanoseconds, all measured."""
        return {
            "done": True,
            "done_reason": "length" if finished.reason == "length" else "stop",
            "total_duration": _ns(time.perf_counter() - self.started),
            "load_duration": _ns(self.load_seconds),
            "prompt_eval_count": finished.prompt_tokens,
            "prompt_eval_duration": _ns(finished.prompt_seconds),
            "eval_count": finished.completion_tokens,
            "eval_duration": _ns(finished.decode_seconds),
        }


class _ChatShape:
    """/api/chat's chunks: the text under `message`."""

    def __init__(self, model: str) -> None:
        self.model = model

    def chunk(self, text: str, calls: list[ToolCall] | None = None, thinking: str = "") -> dict[str, Any]:
        """One chunk (done false) carrying text, thinking or tool calls."""
        return {"model": self.model, "created_at": rfc3339(), "message": _message(text, calls, thinking),
                "done": False}


class _GenerateShape:
    """/api/generate's chunks: the text under `response`."""

    def __init__(self, model: str) -> None:
        self.model = model

    def chunk(self, text: str, calls: list[ToolCall] | None = None, thinking: str = "") -> dict[str, Any]:
        """One chunk (done false) carrying text or thinking."""
        body = {"model": self.model, "created_at": rfc3339(), "response": text, "done": False}
        return {**body, "thinking": thinking} if thinking else body


async def _answer(request: Request, generation: Generation, shape: _ChatShape | _GenerateShape, timing: _Timing,
                  tools: ToolSetup | None, streams: bool) -> Any:
    """The answer as NDJSON lines, or as one JSON object."""
    if streams:
        return streamed(_stream(generation, shape, timing, tools), NDJSON, generation.cancel)
    return await _whole(request, generation, shape, timing, tools)


async def _stream(generation: Generation, shape: _ChatShape | _GenerateShape, timing: _Timing,
                  tools: ToolSetup | None) -> AsyncIterator[bytes]:
    """NDJSON lines: text as it comes, tool calls whole, then the final chunk (or an error line)."""
    try:
        async for event in answer_events(generation, tools):
            if isinstance(event, AnswerReasoning):
                yield ndjson_line(shape.chunk("", thinking=event.text))
            elif isinstance(event, AnswerText):
                yield ndjson_line(shape.chunk(event.text))
            elif isinstance(event, AnswerCalls):
                yield ndjson_line(shape.chunk("", event.calls))
            elif isinstance(event, Failed):
                yield ndjson_line(stream_error("ollama", event.error))
            else:
                yield ndjson_line({**shape.chunk(""), **timing.final(event)})
    except Exception as exc:  # headers are gone: the error is the stream's last line, as Ollama sends it
        yield ndjson_line(stream_error("ollama", exc))


async def _whole(request: Request, generation: Generation, shape: _ChatShape | _GenerateShape, timing: _Timing,
                 tools: ToolSetup | None) -> Any:
    """One JSON object with the whole answer, or an empty 499 when the client hung up."""
    answer = await whole_answer(request, generation, tools)
    if answer is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    text = "" if answer.calls else answer.text
    return {**shape.chunk(text, answer.calls, answer.reasoning), **timing.final(answer.finished)}


def _message(text: str, calls: list[ToolCall] | None = None, thinking: str = "") -> dict[str, Any]:
    """An assistant message (with a reasoning model's `thinking`, when there is some); tool call arguments
    as objects, as Ollama's clients parse them."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if thinking:
        message["thinking"] = thinking
    if calls:
        message["tool_calls"] = [{"id": call.id, "function": {"index": index, "name": call.name,
                                                             "arguments": json.loads(call.arguments)}}
                                 for index, call in enumerate(calls)]
    return message


async def _load_or_unload(request: Request, model: str, keep_alive: float | None,
                          body: dict[str, Any]) -> dict[str, Any]:
    """An empty request: load the model and keep it for `keep_alive`, or with keep_alive 0 let it go."""
    scheduler = scheduler_of(request)
    if keep_alive == 0:
        if not scheduler.unload(model):
            _check_model_exists(request, model)
        reason = "unload"
    else:
        await scheduler.load(model, keep_alive)
        reason = "load"
    return {"model": model, "created_at": rfc3339(), **body, "done": True, "done_reason": reason}


def _check_model_exists(request: Request, model: str) -> None:
    """A model that is not loaded is unknown unless the store has it (404 as Ollama answers)."""
    store = request.app.state.store
    if store is None:
        raise ModelNotFoundError(f"model {model!r} not found", hint="GET /api/tags lists the models",
                                 param="model")
    store.get(model)


def _check_context(request: Request, model: str, options: OllamaOptions | None) -> None:
    """`num_ctx` past what the model was trained for is refused, naming both.

    A smaller one is accepted and the loaded context (`serve --ctx`) applies: a model is loaded once for
    every client, and reloading it per client's num_ctx would stall everyone else's requests. Clients
    such as Aider's ollama_chat/ send a large num_ctx with every request.
    """
    store = request.app.state.store
    if options is None or options.num_ctx is None or store is None:
        return
    try:
        trained = store.get(model).facts.context_length
    except ModelNotFoundError:
        return  # the scheduler says so, in its own words
    if trained is not None and options.num_ctx > trained:
        raise InvalidRequestError(f"num_ctx {options.num_ctx} is more than {model} was trained for ({trained} tokens)",
                                  hint=f"ask for num_ctx {trained} or less", param="options.num_ctx")
    served = next((s.n_ctx for s in scheduler_of(request).statuses() if s.name == model), None)
    if served is not None and options.num_ctx > served:
        log.info("%s: num_ctx %d asked for; the model is served with %d tokens per request",
                 model, options.num_ctx, served)


def _required_model(model: str | None) -> str:
    """The model a request names; Ollama has no default model, so neither do its routes."""
    if not model:
        raise InvalidRequestError("model is required", hint="name a model; GET /api/tags lists them", param="model")
    return model


def _embedding_models(request: Request) -> EmbeddingModels:
    models: EmbeddingModels | None = request.app.state.embeddings
    if models is None:
        raise HomellmError("this server has no model store, so no embedding model", hint="run homellm serve")
    return models


def _shortened(vector: list[float], dimensions: int | None) -> list[float]:
    """The first `dimensions` numbers, scaled back to unit length (as Ollama truncates)."""
    if dimensions is None or dimensions >= len(vector):
        return vector
    head = vector[:dimensions]
    norm = math.sqrt(sum(x * x for x in head)) or 1.0
    return [x / norm for x in head]


def ndjson_line(chunk: dict[str, Any]) -> bytes:
    """One line of an Ollama stream."""
    return json.dumps(chunk, ensure_ascii=False).encode() + b"\n"


def rfc3339(moment: datetime | None = None) -> str:
    """A time (now, by default) in RFC 3339 UTC, as Ollama writes `created_at` and `modified_at`."""
    return (moment or datetime.now(timezone.utc)).isoformat().replace("+00:00", "Z")


def _ns(seconds: float) -> int:
    return max(0, int(seconds * 1e9))


class OllamaJsonBodies:
    """ASGI middleware: every body sent to /api/* is JSON, whatever its Content-Type says.

    Ollama reads them so, and its docs' `curl -d '{...}'` examples send form-encoded headers.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(OLLAMA_PREFIX):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)
