"""OpenAI's Responses API (`POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`), the one Codex CLI speaks.

A thin translation onto chat: the input items become chat messages (calls and their results as
the tool turns of chat), the Responses-shaped tools become chat tools for `tools.calling`, and the
answer's text or calls come back as output items. Responses are kept in memory, for a bounded time
and count, so a later request can continue one with `previous_response_id`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from homellm.errors import HomellmError, InvalidRequestError, ResponseNotFoundError
from homellm.generation import (
    Failed,
    Finished,
    ResponseFormat,
    SamplingParams,
    Thinking,
)
from homellm.server.generate import (
    CLIENT_CLOSED_REQUEST,
    AnswerCalls,
    AnswerReasoning,
    AnswerText,
    answer_events,
    client_of,
    default_model,
    for_model,
    refuse_embedding_model,
    scheduler_of,
    stream_error,
    streamed,
    whole_answer,
)
from homellm.server.schemas import (
    MAX_TOP_LOGPROBS,
    ReasoningEffort,
    _SamplingRequest,
    effort_thinking,
    response_format_of,
)
from homellm.server.tool_schemas import ResponsesTool
from homellm.tools.calling import (
    ToolCall,
    ToolSetup,
    parse_choice,
    parse_tools,
    plain_history,
)

log = logging.getLogger(__name__)
router = APIRouter()

# Responses kept for `previous_response_id`: in memory only (a restart forgets them), at most this many,
# each for at most this long. OpenAI keeps them 30 days; a local agent's turns follow each other within
# minutes, and a stored conversation shares its earlier messages with the one it continues.
STORED_RESPONSES = 1000
STORED_SECONDS = 3600.0

_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
_TEXT_PARTS = {"input_text": "text", "output_text": "text", "text": "text", "refusal": "refusal"}


class TextFormat(BaseModel):
    """`text.format`: text, json_object, or json_schema (its fields beside the type, unlike chat's)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextConfig(BaseModel):
    """`text`: only the format has a meaning here (`verbosity` is accepted and ignored)."""

    model_config = ConfigDict(extra="ignore")
    format: TextFormat | None = None


class ReasoningConfig(BaseModel):
    """`reasoning`: the effort reaches a reasoning model's template ("none" turns thinking off); `summary` is
    accepted and ignored (the thinking comes back whole, as a reasoning item's text)."""

    model_config = ConfigDict(extra="ignore")
    effort: ReasoningEffort | None = None
    summary: str | None = None


class ResponsesRequest(_SamplingRequest):
    """POST /v1/responses. `include`, `truncation`, `prompt_cache_key`, `service_tier` and other fields
    Codex sends are accepted and ignored. `reasoning` is ignored by a model that cannot think: Codex sends
    it with every request."""

    input: str | list[dict[str, Any]] = ""
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    tools: list[ResponsesTool] | None = Field(default=None, max_length=128)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    previous_response_id: str | None = None
    store: bool = True
    metadata: dict[str, str] | None = None
    user: str | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)  # accepted; none are computed
    reasoning: ReasoningConfig | None = None

    def thinking(self) -> Thinking:
        """What the request asks of a reasoning model's thinking (see the class)."""
        return effort_thinking(self.reasoning.effort if self.reasoning else None, "reasoning.effort", strict=False)

    @cached_property
    def tool_setup(self) -> ToolSetup | None:
        """The function tools offered this turn; None without tools or with tool_choice "none"."""
        choice = _chat_choice(self.tool_choice)
        if not self.tools or not _chat_tools(self.tools):
            if choice not in (None, "none", "auto"):
                raise InvalidRequestError("tool_choice needs tools", hint="send tools, or leave tool_choice out",
                                          param="tool_choice")
            return None
        # Agents' built-in tools (Codex's) carry bounds the grammar cannot enforce: left unchecked, not refused.
        tools = parse_tools(_chat_tools(self.tools), drop_value_bounds=True)
        parsed = parse_choice(choice, tools)
        if parsed.mode == "none":
            return None
        # Several calls a turn unless the client says not, as in chat.
        return ToolSetup(tools, parsed, self.parallel_tool_calls is not False)

    def input_messages(self) -> list[dict[str, Any]]:
        """This request's input as chat messages (tool calls and results in chat's shape)."""
        if isinstance(self.input, str):
            return [{"role": "user", "content": self.input}] if self.input else []
        messages: list[dict[str, Any]] = []
        for index, item in enumerate(self.input):
            _add_item(messages, item, index)
        return messages

    def to_sampling(self, setup: ToolSetup | None) -> SamplingParams:
        """Sampling parameters, with `text.format` (or the tools' grammar, in `setup`'s syntax) as the
        response format."""
        return self.sampling(self.max_output_tokens, self._format(setup))

    def _format(self, setup: ToolSetup | None) -> ResponseFormat:
        fmt = self.text.format if self.text else None
        return response_format_of(setup, fmt.type if fmt else None, fmt.schema_ if fmt else None,
                                  "text.format", '{"type": "json_schema", "name": ..., "schema": {...}}')


@router.post("/v1/responses")
async def create_response(body: ResponsesRequest, request: Request) -> Any:
    """A model response to the input (continuing `previous_response_id`), whole or streamed."""
    scheduler = scheduler_of(request)
    model = body.model or default_model(scheduler)
    refuse_embedding_model(request, model)
    memory = response_memory(request.app)
    earlier = memory.conversation(body.previous_response_id) if body.previous_response_id else []
    conversation = earlier + body.input_messages()
    body.to_sampling(body.tool_setup)  # a bad request is refused before a model is loaded for it
    setup = await for_model(scheduler, model, body.tool_setup)
    generation = await scheduler.chat(model, model_messages(body.instructions, conversation, setup),
                                      body.to_sampling(setup), body.keep_alive_seconds(),
                                      tools=setup.template_tools() if setup else None, client=client_of(request),
                                      thinking=body.thinking())
    shell = ResponseShell(f"resp_{uuid.uuid4().hex}", int(time.time()), model, body)

    def remember(response: dict[str, Any], reply: dict[str, Any]) -> None:
        if body.store:
            memory.put(response["id"], response, [*conversation, reply])

    if body.stream:
        events = _response_events(answer_events(generation, setup), shell, remember)
        return streamed(events, "text/event-stream", generation.cancel)
    answer = await whole_answer(request, generation, setup)
    if answer is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    incomplete = answer.finished.reason == "length"
    output = [reasoning_item(f"rs_{uuid.uuid4().hex}", answer.reasoning)] if answer.reasoning else []
    if answer.calls:
        output += [function_call_item(call) for call in answer.calls]
    else:
        output.append(message_item(f"msg_{uuid.uuid4().hex}", answer.text, "incomplete" if incomplete else "completed"))
    response = shell.body(output, answer.finished)
    remember(response, assistant_message(answer.text, answer.calls))
    return response


@router.get("/v1/responses/{response_id}")
async def get_response(response_id: str, request: Request) -> dict[str, Any]:
    """A stored response, as it was returned."""
    return response_memory(request.app).get(response_id).response


@router.delete("/v1/responses/{response_id}")
async def delete_response(response_id: str, request: Request) -> dict[str, Any]:
    """Forget a stored response; a later `previous_response_id` naming it gets 404."""
    response_memory(request.app).delete(response_id)
    return {"id": response_id, "object": "response", "deleted": True}


def model_messages(instructions: str | None, conversation: list[dict[str, Any]],
                   setup: ToolSetup | None) -> list[dict[str, Any]]:
    """What the model is shown: the instructions first (they are not carried over to a continuation,
    as in OpenAI's API), and the conversation with tool turns as the model's syntax has them when
    tools are offered (`setup`), else made plain."""
    leading = [{"role": "system", "content": instructions}] if instructions else []
    messages = _one_leading_system(leading + conversation)
    if not messages:
        messages = [{"role": "user", "content": ""}]  # Codex probes with an empty input
    return setup.messages(messages) if setup else plain_history(messages)


def assistant_message(text: str, calls: list[ToolCall] | None) -> dict[str, Any]:
    """The answer as a chat message, kept for a continuation."""
    if calls:
        return {"role": "assistant", "content": "", "tool_calls": [call.to_json() for call in calls]}
    return {"role": "assistant", "content": text}


def message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    """An output message holding the answer's text."""
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [_text_part(text)]}


def reasoning_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    """A reasoning model's thinking as an output item: its text whole (no summary is made of it)."""
    return {"type": "reasoning", "id": item_id, "summary": [], "status": status,
            "content": [{"type": "reasoning_text", "text": text}]}


def function_call_item(call: ToolCall, arguments: str | None = None, status: str = "completed") -> dict[str, Any]:
    """An output function call; `call_id` is what the client's `function_call_output` names."""
    return {"type": "function_call", "id": "fc_" + call.id.removeprefix("call_"), "call_id": call.id,
            "name": call.name, "arguments": call.arguments if arguments is None else arguments, "status": status}


@dataclass(frozen=True)
class ResponseShell:
    """What a response says besides its output: its id, its model and the request's settings, echoed."""

    id: str
    created_at: int
    model: str
    request: ResponsesRequest

    def body(self, output: list[dict[str, Any]], finished: Finished | None) -> dict[str, Any]:
        """The response object; without `finished` it is still in progress."""
        r = self.request
        status = "in_progress" if finished is None else "incomplete" if finished.reason == "length" else "completed"
        return {
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "completed_at": int(time.time()) if status == "completed" else None, "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": r.instructions, "max_output_tokens": r.max_output_tokens, "model": self.model,
            "output": output, "parallel_tool_calls": r.parallel_tool_calls is not False,
            "previous_response_id": r.previous_response_id, "reasoning": {"effort": r.reasoning.effort if r.reasoning else None, "summary": None},
            "store": r.store, "temperature": r.temperature, "top_p": r.top_p,
            "text": {"format": r.text.format.model_dump(by_alias=True, exclude_none=True)
                     if r.text and r.text.format else {"type": "text"}},
            "tool_choice": r.tool_choice or "auto", "tools": r.tools or [], "truncation": "disabled",
            "usage": _usage(finished) if finished else None, "user": r.user, "metadata": r.metadata or {},
        }


async def _response_events(events: AsyncIterator[Any], shell: ResponseShell,
                           remember: Callable[[dict[str, Any], dict[str, Any]], None]) -> AsyncIterator[bytes]:
    """The answer as Responses events: created, the output items as they come, then completed (or incomplete)."""
    sse = _EventWriter()
    yield sse.event("response.created", response=shell.body([], None))
    yield sse.event("response.in_progress", response=shell.body([], None))
    text = _StreamedMessage(sse, f"msg_{uuid.uuid4().hex}")
    thought = _StreamedReasoning(sse, f"rs_{uuid.uuid4().hex}")
    output: list[dict[str, Any]] = []
    calls: list[ToolCall] = []
    async for event in events:
        if isinstance(event, AnswerReasoning):
            if not thought.opened:
                yield thought.open(len(output))
            yield thought.delta(event.text)
            continue
        if thought.opened and not thought.item:  # the thinking is over once anything else comes
            yield thought.close()
            output.append(thought.item)
        if isinstance(event, AnswerText):
            if not text.opened:
                yield text.open(len(output))
            yield text.delta(event.text)
        elif isinstance(event, AnswerCalls):
            for call in event.calls:
                yield _streamed_call(sse, call, len(output))
                output.append(function_call_item(call))
            calls = event.calls
        elif isinstance(event, Failed):
            yield _failed(sse, shell, output + text.items(), event.error)
            return
        elif isinstance(event, Finished):
            if not calls:  # a turn that is not calls has one message, even an empty one
                opening = b"" if text.opened else text.open(len(output))
                yield opening + text.close("incomplete" if event.reason == "length" else "completed")
                output.append(text.item)
            response = shell.body(output, event)
            remember(response, assistant_message(text.text, calls or None))
            yield sse.event(f"response.{response['status']}", response=response)


class _EventWriter:
    """Server-sent events with Responses' numbering: every event has the next `sequence_number`."""

    def __init__(self) -> None:
        self.sequence = 0

    def event(self, kind: str, **fields: Any) -> bytes:
        """One event, its type both in the SSE `event:` line and in the data."""
        data = json.dumps({"type": kind, **fields, "sequence_number": self.next_number()}, ensure_ascii=False)
        return f"event: {kind}\ndata: {data}\n\n".encode()

    def next_number(self) -> int:
        """The next event's sequence number."""
        self.sequence += 1
        return self.sequence - 1


class _StreamedMessage:
    """The output message of a streamed text answer: opened on the first text, its deltas, closed at the end.

    Per token only the delta is JSON-encoded; the rest of the delta event is fixed text.
    """

    def __init__(self, sse: _EventWriter, item_id: str) -> None:
        self.sse = sse
        self.id = item_id
        self._texts: list[str] = []
        self.opened = False
        self.index = 0
        self.item: dict[str, Any] = {}
        self._head = ""

    def open(self, index: int) -> bytes:
        """The events that add the message and its one text part."""
        self.opened = True
        self.index = index
        place = {"item_id": self.id, "output_index": index, "content_index": 0}
        fixed = json.dumps({"type": "response.output_text.delta", **place, "logprobs": []})
        self._head = "event: response.output_text.delta\ndata: " + fixed[:-1]
        added = {"type": "message", "id": self.id, "status": "in_progress", "role": "assistant", "content": []}
        return (self.sse.event("response.output_item.added", output_index=index, item=added)
                + self.sse.event("response.content_part.added", **place, part=_text_part("")))

    def delta(self, text: str) -> bytes:
        """One `response.output_text.delta` event."""
        self._texts.append(text)
        delta = json.dumps(text, ensure_ascii=False)
        return f'{self._head}, "delta": {delta}, "sequence_number": {self.sse.next_number()}}}\n\n'.encode()

    @property
    def text(self) -> str:
        """The text so far."""
        return "".join(self._texts)

    def close(self, status: str) -> bytes:
        """The events that end the text, its part and the message."""
        place = {"item_id": self.id, "output_index": self.index, "content_index": 0}
        text = self.text
        self.item = message_item(self.id, text, status)
        return (self.sse.event("response.output_text.done", **place, text=text, logprobs=[])
                + self.sse.event("response.content_part.done", **place, part=_text_part(text))
                + self.sse.event("response.output_item.done", output_index=self.index, item=self.item))

    def items(self) -> list[dict[str, Any]]:
        """The message as far as it came, for a response that failed."""
        return [message_item(self.id, self.text, "incomplete")] if self.opened else []


class _StreamedReasoning:
    """The reasoning item of a streamed answer: opened on the first thinking, its text deltas, closed when
    the answer (or the end) comes."""

    def __init__(self, sse: _EventWriter, item_id: str) -> None:
        self.sse = sse
        self.id = item_id
        self.opened = False
        self.index = 0
        self.item: dict[str, Any] = {}
        self._texts: list[str] = []

    def open(self, index: int) -> bytes:
        """The event that adds the reasoning item."""
        self.opened, self.index = True, index
        added = {**reasoning_item(self.id, "", "in_progress"), "content": []}
        return self.sse.event("response.output_item.added", output_index=index, item=added)

    def delta(self, text: str) -> bytes:
        """One `response.reasoning_text.delta` event."""
        self._texts.append(text)
        return self.sse.event("response.reasoning_text.delta", item_id=self.id, output_index=self.index,
                              content_index=0, delta=text)

    def close(self) -> bytes:
        """The events that end the thinking's text and the item."""
        text = "".join(self._texts)
        self.item = reasoning_item(self.id, text)
        return (self.sse.event("response.reasoning_text.done", item_id=self.id, output_index=self.index,
                               content_index=0, text=text)
                + self.sse.event("response.output_item.done", output_index=self.index, item=self.item))


def _streamed_call(sse: _EventWriter, call: ToolCall, index: int) -> bytes:
    """A complete call as events: added with empty arguments, the arguments as one delta, done."""
    added = function_call_item(call, arguments="", status="in_progress")
    place = {"item_id": added["id"], "output_index": index}
    return (sse.event("response.output_item.added", output_index=index, item=added)
            + sse.event("response.function_call_arguments.delta", **place, delta=call.arguments)
            + sse.event("response.function_call_arguments.done", **place, arguments=call.arguments)
            + sse.event("response.output_item.done", output_index=index, item=function_call_item(call)))


def _failed(sse: _EventWriter, shell: ResponseShell, output: list[dict[str, Any]], exc: Exception) -> bytes:
    """An error after the stream began (headers are gone): an `error` event, then `response.failed`.

    The `error` event also carries chat's `error` object, which makes OpenAI's SDKs raise it;
    `response.failed` is what Codex reads.
    """
    error = stream_error("openai", exc)["error"]
    status = exc.status if isinstance(exc, HomellmError) else 500
    # response.error.code takes a fixed set of values; homellm's own code travels in the `error` event.
    code = "invalid_prompt" if 400 <= status < 500 and status != 429 else "server_error"
    failed = {**shell.body(output, None), "status": "failed", "error": {"code": code, "message": error["message"]}}
    return (sse.event("error", code=error["code"], message=error["message"], param=error["param"], error=error)
            + sse.event("response.failed", response=failed))


@dataclass(frozen=True)
class StoredResponse:
    """A response kept for `previous_response_id`: as returned, and its whole conversation in chat's shape."""

    response: dict[str, Any]
    conversation: list[dict[str, Any]]
    expires: float


class ResponseMemory:
    """The stored responses, oldest first; the expired and the oldest beyond the count are forgotten."""

    def __init__(self, limit: int = STORED_RESPONSES, seconds: float = STORED_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.seconds = seconds
        self.clock = clock
        self._kept: OrderedDict[str, StoredResponse] = OrderedDict()

    def put(self, response_id: str, response: dict[str, Any], conversation: list[dict[str, Any]]) -> None:
        """Keep a response and the conversation it ends."""
        self._forget_expired()
        self._kept[response_id] = StoredResponse(response, conversation, self.clock() + self.seconds)
        while len(self._kept) > self.limit:
            self._kept.popitem(last=False)

    def get(self, response_id: str) -> StoredResponse:
        """A stored response, or a 404 saying why there may be none."""
        self._forget_expired()
        stored = self._kept.get(response_id)
        if stored is None:
            raise ResponseNotFoundError(
                f"no stored response with id {response_id!r}",
                hint=f"responses made with store: false are not kept; the others are kept for "
                     f"{STORED_SECONDS / 3600:g} h (the last {STORED_RESPONSES}) until the server restarts")
        return stored

    def conversation(self, response_id: str) -> list[dict[str, Any]]:
        """The messages a continuation of this response starts from."""
        try:
            return self.get(response_id).conversation
        except ResponseNotFoundError as exc:
            raise ResponseNotFoundError(f"previous response with id {response_id!r} not found", hint=exc.hint,
                                        param="previous_response_id", code="previous_response_not_found") from None

    def delete(self, response_id: str) -> None:
        """Forget a response (404 if it is not kept)."""
        self.get(response_id)
        del self._kept[response_id]

    def _forget_expired(self) -> None:
        now = self.clock()
        while self._kept and next(iter(self._kept.values())).expires <= now:
            self._kept.popitem(last=False)


def response_memory(app: FastAPI) -> ResponseMemory:
    """The app's stored responses (made with the app)."""
    return app.state.responses


def _chat_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Responses' function tools in chat's shape; web search is left out, every other tool type refused, named.

    Codex CLI offers a web_search tool with every request unless told not to: a tool the server would
    run itself, so leaving it out only means no search, where refusing it would turn Codex away.
    """
    searches = [t for t in tools if isinstance(t, dict) and str(t.get("type", "")).startswith("web_search")]
    if searches:
        log.info("left out %d web_search tool(s): homellm does not search the web", len(searches))
        tools = [t for t in tools if not any(t is search for search in searches)]
    others = sorted({str(t.get("type")) if isinstance(t, dict) else type(t).__name__
                     for t in tools if not isinstance(t, dict) or t.get("type") != "function"})
    if others:
        raise InvalidRequestError(f"tools of type {', '.join(others)} are not supported; only function tools are",
                                  hint='send {"type": "function", "name": ..., "parameters": {...}} tools and '
                                       'leave the others out', param="tools")
    # A tool already in chat's shape ({"function": {...}}) passes as it is.
    return [t if "function" in t and "name" not in t else
            {"type": "function", "function": {k: t[k] for k in ("name", "description", "parameters") if k in t}}
            for t in tools]


def _chat_choice(raw: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    """Responses' `tool_choice` in chat's shape."""
    if raw is None or raw in ("auto", "none", "required"):
        return raw
    if isinstance(raw, dict) and raw.get("type") == "function" and isinstance(raw.get("name"), str):
        return {"type": "function", "function": {"name": raw["name"]}}
    kind = raw.get("type") if isinstance(raw, dict) else raw
    raise InvalidRequestError(f"tool_choice {kind!r} is not supported",
                              hint='"auto", "none", "required" or {"type": "function", "name": "..."}',
                              param="tool_choice")


def _add_item(messages: list[dict[str, Any]], item: dict[str, Any], index: int) -> None:
    """One input item onto the chat messages; consecutive calls make one assistant turn, as in chat."""
    kind = item.get("type", "message")
    if kind == "message":
        messages.append({"role": _role(item, index), "content": _content_text(item.get("content"), index)})
    elif kind == "function_call":
        call = {"id": str(item.get("call_id") or f"call_{uuid.uuid4().hex[:24]}"), "type": "function",
                "function": {"name": _string(item, "name", index), "arguments": _string(item, "arguments", index)}}
        if messages and messages[-1].get("tool_calls"):
            messages[-1]["tool_calls"].append(call)
        else:
            messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
    elif kind == "function_call_output":
        messages.append({"role": "tool", "tool_call_id": str(item.get("call_id") or ""),
                         "content": _content_text(item.get("output"), index, "output")})
    elif kind != "reasoning":  # a reasoning model's own notes: nothing this server's models can continue
        raise InvalidRequestError(f"input[{index}] is an item of type {kind!r}, which is not supported",
                                  hint="send message, function_call and function_call_output items",
                                  param=f"input[{index}]")


def _role(item: dict[str, Any], index: int) -> str:
    raw = item.get("role")
    role = _ROLES.get(raw) if isinstance(raw, str) else None
    if role is None:
        raise InvalidRequestError(f"input[{index}].role is {raw!r}",
                                  hint="a message's role is user, system, developer or assistant",
                                  param=f"input[{index}].role")
    return role


def _content_text(content: Any, index: int, field: str = "content") -> str:
    """A message's content (or a call's output) as text; images, files and audio are refused."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequestError(f"input[{index}].{field} must be a string or a list of parts",
                                  param=f"input[{index}].{field}")
    texts = []
    for number, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        key = _TEXT_PARTS.get(kind) if isinstance(kind, str) else None
        if key is None or not isinstance(part.get(key), str):
            raise InvalidRequestError(f"content parts of type {kind!r} are not supported",
                                      hint="send input_text parts; images, files and audio are not supported yet",
                                      param=f"input[{index}].{field}[{number}]")
        texts.append(part[key])
    return "".join(texts)


def _string(item: dict[str, Any], key: str, index: int) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise InvalidRequestError(f"input[{index}].{key} must be a string", param=f"input[{index}].{key}")
    return value


def _one_leading_system(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The instructions and the system or developer messages that open the input as one system message:
    Codex sends both, and many chat templates accept one system message only, first."""
    count = 0
    while count < len(messages) and messages[count]["role"] == "system":
        count += 1
    if count < 2:
        return messages
    merged = "\n\n".join(str(m.get("content") or "") for m in messages[:count])
    return [{"role": "system", "content": merged}, *messages[count:]]


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _usage(finished: Finished) -> dict[str, Any]:
    return {"input_tokens": finished.prompt_tokens,
            "input_tokens_details": {"cached_tokens": finished.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": finished.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": finished.reasoning_tokens},
            "total_tokens": finished.prompt_tokens + finished.completion_tokens}
