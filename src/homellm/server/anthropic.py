"""Anthropic's Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`), as Claude Code speaks it.

A thin translation: the request becomes OpenAI-shaped chat messages and tools (tool_use blocks are
assistant tool calls, tool_result blocks are tool messages), runs through the same scheduler, tool
grammar and answer events as /v1/chat/completions, and the answer comes back as Anthropic's message
or its stream of named SSE events. Errors take Anthropic's shape from errors.py, by path.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import cached_property
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from homellm.errors import InvalidRequestError, ModelNotFoundError
from homellm.generation import (
    Failed,
    Finished,
    ResponseFormat,
    SamplingParams,
    Thinking,
    check_reasoning_budget,
)
from homellm.json_schema import check_schema
from homellm.scheduler import Generation
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
from homellm.server.schemas import StopList
from homellm.server.tool_schemas import AnthropicTool
from homellm.tools.calling import (
    ToolCall,
    ToolSetup,
    parse_choice,
    parse_tools,
    plain_history,
)

log = logging.getLogger(__name__)
router = APIRouter()

# Blocks of the model's own reasoning, sent back by clients in the history: no meaning for another model.
_SKIPPED_BLOCKS = frozenset({"thinking", "redacted_thinking"})
T = TypeVar("T")


class ContentBlock(BaseModel):
    """One block of a message: text, tool_use and tool_result are understood (`cache_control` is ignored)."""

    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None
    id: str | None = None  # tool_use
    name: str | None = None  # tool_use
    input: Any = None  # tool_use
    tool_use_id: str | None = None  # tool_result
    content: str | list[ContentBlock] | None = None  # tool_result
    is_error: bool = False  # tool_result


class AnthropicMessage(BaseModel):
    """A turn of the conversation; Anthropic has no system or tool role (those are fields and blocks)."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class ToolChoiceBody(BaseModel):
    """`tool_choice`: auto, any (some tool), tool (the named one) or none."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class OutputFormat(BaseModel):
    """`output_config.format` (and the structured-outputs beta's `output_format`): a JSON schema."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class ThinkingConfig(BaseModel):
    """`thinking`: extended thinking on (with a budget of thinking tokens), adaptive (on), or off."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None

    @field_validator("budget_tokens")
    @classmethod
    def _budget_in_range(cls, value: int | None) -> int | None:
        return check_reasoning_budget(value)


class OutputConfig(BaseModel):
    """`output_config`: only `format` has a meaning here (`effort` is ignored)."""

    model_config = ConfigDict(extra="ignore")
    format: OutputFormat | None = None


class _MessagesBody(BaseModel):
    """What count_tokens and create share. metadata, service_tier, container, context_management,
    cache_control... have no meaning for a local model: accepted, ignored (`thinking`: MessagesRequest)."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[ContentBlock] | None = None
    tools: list[AnthropicTool] | None = Field(default=None, max_length=128)
    tool_choice: ToolChoiceBody | None = None
    output_config: OutputConfig | None = None
    output_format: OutputFormat | None = None
    mcp_servers: list[dict[str, Any]] | None = None

    @cached_property
    def tool_setup(self) -> ToolSetup | None:
        """The tools offered this turn; None without tools or with tool_choice none."""
        if self.mcp_servers:
            names = ", ".join(str(s.get("name") or s.get("url") or "?") for s in self.mcp_servers)
            raise InvalidRequestError(f"MCP servers are not supported: {names}",
                                      hint="run the MCP tools in the client and offer them as tools",
                                      param="mcp_servers")
        choice_type = self.tool_choice.type if self.tool_choice else None
        if not self.tools:
            if choice_type in ("any", "tool"):
                raise InvalidRequestError(f"tool_choice {choice_type!r} needs tools",
                                          hint="send tools, or leave tool_choice out", param="tool_choice")
            return None
        try:
            tools = parse_tools(_openai_tools(self.tools), drop_value_bounds=True)
        except InvalidRequestError as exc:
            raise _in_anthropic_words(exc) from None
        choice = parse_choice(_openai_choice(self.tool_choice), tools)
        if choice.mode == "none":
            return None
        # Several calls a turn unless the client disables it, as Anthropic's default is.
        parallel = self.tool_choice is None or self.tool_choice.disable_parallel_tool_use is not True
        return ToolSetup(tools, choice, parallel)

    def to_messages(self, setup: ToolSetup | None) -> list[dict[str, Any]]:
        """Chat-template messages: the system prompt and the turns, with tool use as the model's syntax
        has it when tools are offered (`setup`), else as ordinary turns."""
        messages: list[dict[str, Any]] = []
        system = self.system_text()
        if system:
            messages.append({"role": "system", "content": system})
        for index, message in enumerate(self.messages):
            messages.extend(_openai_messages(message, index))
        return _merge_same_roles(setup.messages(messages) if setup else plain_history(messages))

    def system_text(self) -> str:
        """`system` as one text (Claude Code sends several text blocks)."""
        if self.system is None or isinstance(self.system, str):
            return self.system or ""
        return "\n\n".join(_text_of(block, f"system[{i}]") for i, block in enumerate(self.system))

    def response_format(self, setup: ToolSetup | None) -> ResponseFormat:
        """The grammar's shape: tool calls when tools are offered, else the JSON schema asked for, else text."""
        if setup is not None:
            return setup.response_format()
        fmt = self.output_config.format if self.output_config and self.output_config.format else self.output_format
        if fmt is None:
            return ResponseFormat()
        check_schema(fmt.schema_, "output_config.format.schema")
        return ResponseFormat("json_schema", fmt.schema_)


class MessagesRequest(_MessagesBody):
    """POST /v1/messages; `max_tokens` is required, as Anthropic requires it.

    `thinking` asks a reasoning model to think (its template's switch on, `budget_tokens` its reasoning
    budget) and its thinking comes back as thinking blocks; without it the thinking is turned off where
    the template can, and left out of the answer where it cannot. A model that cannot think ignores it:
    Claude Code sends it with every request.
    """

    max_tokens: int = Field(ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    stop_sequences: StopList | None = None
    stream: bool = False
    thinking: ThinkingConfig | None = None

    def shows_thinking(self) -> bool:
        """Whether the client asked for thinking blocks."""
        return self.thinking is not None and self.thinking.type != "disabled"

    def to_thinking(self) -> Thinking:
        """The thinking asked for; never a refusal (see the class)."""
        budget = self.thinking.budget_tokens if self.thinking is not None else None
        return Thinking(enabled=self.shows_thinking(), budget=budget if self.shows_thinking() else None,
                        param="thinking", strict=False)

    def to_sampling(self, setup: ToolSetup | None) -> SamplingParams:
        """Sampling parameters; fields left out take the model's defaults."""
        # Clients send max_tokens as a ceiling far past a local context (Claude Code: 32000):
        # it is cut to the room the prompt leaves rather than refused.
        return SamplingParams(max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p,
                              top_k=self.top_k, stop=tuple(self.stop_sequences or ()),
                              response_format=self.response_format(setup), cap_to_context=True)


class CountTokensRequest(_MessagesBody):
    """POST /v1/messages/count_tokens: the body of a create, without max_tokens."""


@router.post("/v1/messages")
async def create_message(body: MessagesRequest, request: Request) -> Any:
    """A whole message, or Anthropic's event stream with `stream: true`."""
    scheduler = scheduler_of(request)
    # A bad request is refused before any model is loaded for it.
    body.to_messages(body.tool_setup), body.to_sampling(body.tool_setup)

    async def start(name: str) -> tuple[ToolSetup | None, Generation]:
        setup = await for_model(scheduler, name, body.tool_setup)
        return setup, await scheduler.chat(name, body.to_messages(setup), body.to_sampling(setup),
                                           tools=setup.template_tools() if setup else None, client=client_of(request),
                                           thinking=body.to_thinking())

    model, (tools, generation) = await _on_model(request, body.model, start)
    mid = f"msg_{uuid.uuid4().hex[:24]}"
    if body.stream:
        return streamed(_message_stream(generation, mid, model, tools, body.shows_thinking()), "text/event-stream",
                        generation.cancel)
    answer = await whole_answer(request, generation, tools)
    if answer is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    content = [_tool_use_block(call) for call in answer.calls or []]
    if not content and answer.text:
        content = [{"type": "text", "text": answer.text}]
    if answer.reasoning and body.shows_thinking():
        content.insert(0, _thinking_block(answer.reasoning))
    stop_reason, stop_sequence = _stop_reason(answer.finished, bool(answer.calls))
    return {"id": mid, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop_reason, "stop_sequence": stop_sequence, "usage": _usage(answer.finished)}


@router.post("/v1/messages/count_tokens")
async def count_tokens(body: CountTokensRequest, request: Request) -> dict[str, int]:
    """How many prompt tokens the request takes: system, messages and the tools' description."""
    scheduler = scheduler_of(request)
    body.to_messages(body.tool_setup)  # refused before any model is loaded for it

    async def count(name: str) -> int:
        setup = await for_model(scheduler, name, body.tool_setup)
        return await scheduler.count_chat_tokens(name, body.to_messages(setup),
                                                 setup.template_tools() if setup else None)

    _, tokens = await _on_model(request, body.model, count)
    return {"input_tokens": tokens}


async def _on_model(request: Request, asked: str | None,
                    use: Callable[[str], Awaitable[T]]) -> tuple[str, T]:
    """Run `use` on the model asked for; a Claude model name this server does not serve means its default.

    Claude Code asks for claude-* names of its own (its subagents and background tasks ask for a
    Haiku whatever the settings say), so those fall back to the model served by default; any other
    unknown name is a 404.
    """
    scheduler = scheduler_of(request)
    model = asked or default_model(scheduler)
    refuse_embedding_model(request, model)
    try:
        return model, await use(model)
    except ModelNotFoundError:
        if not model.lower().startswith("claude") or scheduler.default_model is None:
            raise
    log.debug("serving %s with the default model %s", model, scheduler.default_model)
    return scheduler.default_model, await use(scheduler.default_model)


def _openai_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Anthropic's client tools as OpenAI function tools; server tools (web search, code execution...) refused."""
    server_tools = [str(t.get("type")) for t in tools if t.get("type") not in (None, "custom")]
    if server_tools:
        raise InvalidRequestError(f"server tools are not supported: {', '.join(server_tools)}",
                                  hint="offer client tools only (name, description, input_schema)", param="tools")
    return [{"type": "function", "function": {"name": t.get("name"), "description": t.get("description") or "",
                                              "parameters": t.get("input_schema")}} for t in tools]


def _in_anthropic_words(exc: InvalidRequestError) -> InvalidRequestError:
    """An error about the OpenAI-shaped tools, naming the fields as the client sent them."""
    def rename(text: str) -> str:
        return text.replace(".function.parameters", ".input_schema").replace(".function.name", ".name")

    return InvalidRequestError(rename(exc.message), hint=rename(exc.hint), param=rename(exc.param or "tools"))


def _openai_choice(choice: ToolChoiceBody | None) -> str | dict[str, Any] | None:
    """Anthropic's tool_choice in OpenAI's words: any is required, tool is a named function."""
    if choice is None:
        return None
    if choice.type == "any":
        return "required"
    if choice.type == "tool":
        if not choice.name:
            raise InvalidRequestError("tool_choice of type 'tool' needs the tool's name",
                                      hint='{"type": "tool", "name": "..."}', param="tool_choice")
        return {"type": "function", "function": {"name": choice.name}}
    return choice.type


def _openai_messages(message: AnthropicMessage, index: int) -> list[dict[str, Any]]:
    """One Anthropic turn as OpenAI-shaped messages: tool results first (as tool messages), then the turn."""
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content}]
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for j, block in enumerate(message.content):
        where = f"messages[{index}].content[{j}]"
        if block.type == "text":
            texts.append(block.text or "")
        elif block.type == "tool_use" and message.role == "assistant":
            arguments = json.dumps(block.input if block.input is not None else {}, ensure_ascii=False)
            calls.append({"id": block.id or "", "type": "function",
                          "function": {"name": block.name or "", "arguments": arguments}})
        elif block.type == "tool_result" and message.role == "user":
            results.append({"role": "tool", "tool_call_id": block.tool_use_id or "",
                            "content": _result_text(block, where)})
        elif block.type not in _SKIPPED_BLOCKS:
            raise _unsupported_block(block.type, where, message.role)
    out = results
    if texts or calls:
        turn: dict[str, Any] = {"role": message.role, "content": "\n\n".join(texts)}
        if calls:
            turn["tool_calls"] = calls
        out.append(turn)
    return out


def _result_text(block: ContentBlock, where: str) -> str:
    """A tool_result's content as text (a string or text blocks); an error result says so."""
    content = block.content
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        text = "\n\n".join(_text_of(part, f"{where}.content[{k}]") for k, part in enumerate(content))
    return f"Error: {text}" if block.is_error else text


def _text_of(block: ContentBlock, where: str) -> str:
    if block.type != "text":
        raise _unsupported_block(block.type, where, "user")
    return block.text or ""


def _unsupported_block(kind: str, where: str, role: str) -> InvalidRequestError:
    if kind in ("tool_use", "tool_result", "text"):
        owner = "assistant" if kind == "tool_use" else "user"
        return InvalidRequestError(f"{where} is a {kind} block in a {role} message",
                                   hint=f"{kind} blocks belong in {owner} messages", param=where)
    if kind in ("image", "document"):
        return InvalidRequestError(f"{where} is an {kind!r} block; homellm's models read text only",
                                   hint="send the content as text; images and documents are not supported yet",
                                   param=where)
    return InvalidRequestError(f"{where} is a content block of type {kind!r}, which homellm does not support",
                               hint="send text, tool_use and tool_result blocks", param=where)


def _merge_same_roles(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive turns of one role as one turn, as Anthropic combines them; some chat templates
    refuse two user turns in a row (a tool result followed by the user's text makes two)."""
    merged: list[dict[str, Any]] = []
    for message in messages:
        last = merged[-1] if merged else None
        if (last is not None and last["role"] == message["role"] in ("user", "assistant")
                and not last.get("tool_calls") and not message.get("tool_calls")):
            merged[-1] = {**last, "content": f"{last['content']}\n\n{message['content']}"}
        else:
            merged.append(message)
    return merged


def _tool_use_block(call: ToolCall) -> dict[str, Any]:
    return {"type": "tool_use", "id": _tool_use_id(call), "name": call.name, "input": json.loads(call.arguments)}


def _thinking_block(text: str) -> dict[str, Any]:
    # The signature proves Anthropic's servers wrote the thinking; a local model's has none to give.
    return {"type": "thinking", "thinking": text, "signature": ""}


def _tool_use_id(call: ToolCall) -> str:
    return "toolu_" + call.id.removeprefix("call_")


def _stop_reason(finished: Finished, called: bool) -> tuple[str, str | None]:
    """Anthropic's stop_reason and the stop sequence that ended the answer, if one did."""
    if called:
        return "tool_use", None
    if finished.stop_string is not None:
        return "stop_sequence", finished.stop_string
    if finished.reason == "length":
        return "max_tokens", None
    return "end_turn", None


def _usage(finished: Finished) -> dict[str, int]:
    """Anthropic counts prompt tokens read from the cache apart from `input_tokens` (the total is their sum)."""
    return {"input_tokens": finished.prompt_tokens - finished.cached_tokens,
            "output_tokens": finished.completion_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": finished.cached_tokens}


async def _message_stream(generation: Generation, mid: str, model: str,
                          tools: ToolSetup | None, shows_thinking: bool = False) -> AsyncIterator[bytes]:
    """Anthropic's events: message_start, ping, per block start/deltas/stop, message_delta, message_stop."""
    try:
        start = {"id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
                 "stop_reason": None, "stop_sequence": None,
                 "usage": {"input_tokens": generation.prompt_tokens, "output_tokens": 0,
                           "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}
        yield _sse("message_start", {"type": "message_start", "message": start})
        yield _sse("ping", {"type": "ping"})
        async for event in _block_events(generation, tools, shows_thinking):
            yield event
    except Exception as exc:  # headers are gone: the error travels as an event, as Anthropic's does
        log.error("stream failed", exc_info=exc)
        yield _sse("error", stream_error("anthropic", exc))


async def _block_events(generation: Generation, tools: ToolSetup | None,
                        shows_thinking: bool = False) -> AsyncIterator[bytes]:
    """The content blocks as they come (thinking and text stream; each tool call comes whole), then the end."""
    index = 0
    text_open = called = thinking_open = False
    async for event in answer_events(generation, tools):
        if isinstance(event, AnswerReasoning):
            if not shows_thinking:
                continue
            if not thinking_open:
                yield _sse("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": _thinking_block("")})
                thinking_open = True
            yield _sse("content_block_delta", {"type": "content_block_delta", "index": index,
                                               "delta": {"type": "thinking_delta", "thinking": event.text}})
            continue
        if thinking_open:  # the thinking is over once anything else comes
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
            index, thinking_open = index + 1, False
        if isinstance(event, AnswerText):
            if not text_open:
                yield _sse("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": {"type": "text", "text": ""}})
                text_open = True
            yield _text_delta(index, event.text)
        elif isinstance(event, AnswerCalls):
            if text_open:
                yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
                index, text_open = index + 1, False
            for call in event.calls:
                block = {"type": "tool_use", "id": _tool_use_id(call), "name": call.name, "input": {}}
                yield _sse("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": block})
                yield _sse("content_block_delta", {"type": "content_block_delta", "index": index,
                                                   "delta": {"type": "input_json_delta",
                                                             "partial_json": call.arguments}})
                yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
                index += 1
            called = True
        elif isinstance(event, Failed):
            yield _sse("error", stream_error("anthropic", event.error))
            return
        else:
            if text_open:
                yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
            stop_reason, stop_sequence = _stop_reason(event, called)
            yield _sse("message_delta", {"type": "message_delta",
                                         "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                                         "usage": _usage(event)})
            yield _sse("message_stop", {"type": "message_stop"})


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: ".encode() + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"


_TEXT_DELTA = (b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": %d, '
               b'"delta": {"type": "text_delta", "text": ')


def _text_delta(index: int, text: str) -> bytes:
    # The one event sent per token: only the text is JSON-encoded.
    return _TEXT_DELTA % index + json.dumps(text, ensure_ascii=False).encode() + b"}}\n\n"
