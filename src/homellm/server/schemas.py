"""OpenAI request types (validated) and response bodies (built as plain dicts, per token)."""

from __future__ import annotations

import uuid
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from homellm.config import parse_keep_alive
from homellm.errors import InvalidRequestError
from homellm.generation import (
    Finished,
    ResponseFormat,
    SamplingParams,
    Thinking,
    check_reasoning_budget,
)
from homellm.scheduler.repetition import MAX_REPEATS, check_repeats
from homellm.server.tool_schemas import ChatTool
from homellm.tools.calling import (
    ToolCall,
    ToolSetup,
    parse_choice,
    parse_tools,
    plain_history,
)

Role = Literal["system", "developer", "user", "assistant", "tool"]

# Bounds every dialect shares. The stop scanner compares each stop string's prefixes at every token, so
# a long or numerous list costs every token of the answer; real stop strings are a few characters.
MAX_STOPS = 16
MAX_STOP_CHARS = 500
StopText = Annotated[str, Field(max_length=MAX_STOP_CHARS)]
StopList = Annotated[list[StopText], Field(max_length=MAX_STOPS)]
# OpenAI's bound: each alternative costs a sort over the vocabulary at every token.
MAX_TOP_LOGPROBS = 20


class ContentPart(BaseModel):
    """One part of a message's content; only text is understood."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    """A message of the conversation."""

    model_config = ConfigDict(extra="allow")
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's content as text; non-text parts are refused."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise InvalidRequestError(
                    f"content parts of type {part.type!r} are not supported",
                    hint="send text content; images and audio are not supported yet",
                    param="messages",
                )
            parts.append(part.text)
        return "".join(parts)


class StreamOptions(BaseModel):
    """`stream_options`: only include_usage has a meaning."""

    include_usage: bool = False


class JsonSchemaFormat(BaseModel):
    """`response_format.json_schema`."""

    model_config = ConfigDict(populate_by_name=True)
    name: str = "response"
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormatRequest(BaseModel):
    """`response_format`: text, json_object or json_schema."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: JsonSchemaFormat | None = None


class _SamplingRequest(BaseModel):
    """Fields shared by chat and plain completions."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: StopText | list[StopText] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=1)
    # llama.cpp's own sampling fields, accepted as llama-server accepts them.
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(default=None, gt=0.0)
    repeat_last_n: int | None = Field(default=None, ge=-1, le=1_000_000)  # past the context it means the context
    # homellm's: end the answer once one span of tokens repeats this many times in a row (0 or absent: off).
    loop_guard: int | None = Field(default=None, ge=0, le=MAX_REPEATS)
    # Ollama's: how long the model stays loaded after this request ("5m", 300, 0, -1 for forever).
    keep_alive: str | float | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    @field_validator("loop_guard")
    @classmethod
    def _loop_is_two_or_more(cls, value: int | None) -> int | None:
        return None if value is None else check_repeats(value)

    def keep_alive_seconds(self) -> float | None:
        """`keep_alive` in seconds (inf for forever), or None for the server's default."""
        return parse_keep_alive(self.keep_alive)

    def include_usage(self) -> bool:
        """Whether a streamed answer ends with a usage chunk."""
        return bool(self.stream_options and self.stream_options.include_usage)

    def sampling(self, max_tokens: int | None, response_format: ResponseFormat) -> SamplingParams:
        """The engine's sampling parameters; the fields left out take the model's defaults."""
        stops = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_p=self.min_p,
            repeat_penalty=self.repeat_penalty,
            repeat_last_n=self.repeat_last_n,
            seed=self.seed,
            stop=stops,
            response_format=response_format,
            loop_guard=self.loop_guard or 0,
        )


class HomellmExtras(BaseModel):
    """homellm's own fields of a chat request, under `"homellm"`; plain OpenAI clients never send them."""

    model_config = ConfigDict(extra="forbid")
    collections: list[str] = Field(default_factory=list, max_length=8)
    k: int = Field(default=6, ge=1, le=50)


# OpenAI's reasoning efforts; "none" asks a reasoning model not to think, "minimal" is "low" to templates.
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high"]


def effort_thinking(effort: str | None, param: str, strict: bool = True) -> Thinking:
    """An OpenAI-style reasoning effort as a request's thinking: "none" turns it off, the rest on."""
    if effort is None:
        return Thinking(param=param, strict=False)
    if effort == "none":
        return Thinking(enabled=False, param=param, strict=True)
    return Thinking(enabled=True, effort="low" if effort == "minimal" else effort, param=param, strict=strict)


class ChatCompletionRequest(_SamplingRequest):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1)
    homellm: HomellmExtras | None = None
    max_completion_tokens: int | None = Field(default=None, ge=1)
    response_format: ResponseFormatRequest | None = None
    tools: list[ChatTool] | None = Field(default=None, max_length=128)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    # Accepted within OpenAI's bounds; the answer's logprobs are null (not computed here).
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    # A reasoning model's thinking: OpenAI's effort, llama-server's budget, and the template switch that
    # llama-server and vLLM take (`chat_template_kwargs.enable_thinking`; its other keys are ignored).
    reasoning_effort: ReasoningEffort | None = None
    thinking_budget_tokens: int | None = None
    chat_template_kwargs: dict[str, Any] | None = None

    @field_validator("thinking_budget_tokens")
    @classmethod
    def _budget_in_range(cls, value: int | None) -> int | None:
        return check_reasoning_budget(value)

    def thinking(self) -> Thinking:
        """What the request asks of a reasoning model's thinking; refusals name the field that asked."""
        switch = (self.chat_template_kwargs or {}).get("enable_thinking")
        if switch is not None and not isinstance(switch, bool):
            raise InvalidRequestError(f"chat_template_kwargs.enable_thinking is {switch!r}", hint="send true or false",
                                      param="chat_template_kwargs.enable_thinking")
        if switch is not None and self.reasoning_effort is None:
            thinking = Thinking(enabled=switch, param="chat_template_kwargs.enable_thinking")
        else:
            thinking = effort_thinking(self.reasoning_effort, "reasoning_effort")
        return Thinking(thinking.enabled, thinking.effort, self.thinking_budget_tokens, thinking.param,
                        thinking.strict)

    @cached_property
    def tool_setup(self) -> ToolSetup | None:
        """The tools offered this turn; None without tools or with tool_choice "none".

        Worked out once per request: messages, grammar and response all need it.
        """
        if not self.tools:
            if self.tool_choice not in (None, "none", "auto"):
                raise InvalidRequestError("tool_choice needs tools", hint="send tools, or leave tool_choice out",
                                          param="tool_choice")
            return None
        tools = parse_tools(self.tools)
        choice = parse_choice(self.tool_choice, tools)
        if choice.mode == "none":
            return None
        # Several calls a turn unless the client says not, as OpenAI's default is.
        return ToolSetup(tools, choice, self.parallel_tool_calls is not False)

    def to_messages(self, setup: ToolSetup | None) -> list[dict[str, Any]]:
        """Messages as the chat template expects them (developer is the new name of system).

        With tools offered (`setup`), as the model's syntax has them (`ToolSetup.messages`); else tool
        calls and tool results in the history become ordinary turns.
        """
        messages = []
        for m in self.messages:
            message: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            extra = m.model_extra or {}
            for key in ("tool_calls", "tool_call_id"):
                if extra.get(key):
                    message[key] = extra[key]
            messages.append(message)
        return setup.messages(messages) if setup else plain_history(messages)

    def to_sampling(self, setup: ToolSetup | None) -> SamplingParams:
        """Sampling parameters, with the response format turned into the engine's form (the tools'
        calls, in `setup`'s syntax, when tools are offered: `for_model(tool_setup)`)."""
        return self.sampling(self.max_completion_tokens or self.max_tokens, self._format(setup))

    def _format(self, setup: ToolSetup | None) -> ResponseFormat:
        fmt = self.response_format
        return response_format_of(setup, fmt.type if fmt else None,
                                  fmt.json_schema.schema_ if fmt and fmt.json_schema else None, "response_format",
                                  '{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}')


def response_format_of(setup: ToolSetup | None, kind: str | None, schema: dict[str, Any] | None, param: str,
                       example: str) -> ResponseFormat:
    """The output shape the engine enforces: the tools' calls when tools are offered, else the format
    asked for (`text`, `json_object`, `json_schema` with its schema); `param` and `example` name the field."""
    if setup is not None:
        return setup.response_format()
    if kind is None or kind == "text":
        return ResponseFormat()
    if kind == "json_object":
        return ResponseFormat("json_object")
    if schema is None:
        raise InvalidRequestError(f"{param} of type json_schema needs a schema", hint=f"send {example}", param=param)
    return ResponseFormat("json_schema", schema)


class CompletionRequest(_SamplingRequest):
    """POST /v1/completions."""

    prompt: str | list[str]
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=5)  # OpenAI's bound for this legacy route
    suffix: str | None = None

    def prompt_text(self) -> str:
        """The one prompt of the request."""
        if self.echo or self.logprobs or self.suffix:
            raise InvalidRequestError("echo, logprobs and suffix are not supported",
                                      hint="leave them out", param="echo")
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise InvalidRequestError("send one prompt per request", hint="prompt as a string",
                                      param="prompt")
        return self.prompt[0]

    def to_sampling(self) -> SamplingParams:
        """Sampling parameters; a plain completion defaults to 16 tokens, as OpenAI's does."""
        return self.sampling(self.max_tokens or 16, ResponseFormat())


def new_id(prefix: str) -> str:
    """An id in OpenAI's style: chatcmpl-..., cmpl-..."""
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(finished: Finished) -> dict[str, Any]:
    """The `usage` object; `prompt_tokens_details.cached_tokens` counts prompt tokens reused from the cache,
    `completion_tokens_details.reasoning_tokens` the answer's tokens spent thinking."""
    return {
        "prompt_tokens": finished.prompt_tokens,
        "completion_tokens": finished.completion_tokens,
        "total_tokens": finished.prompt_tokens + finished.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": finished.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": finished.reasoning_tokens},
    }


def finish_reason(reason: str) -> str:
    """OpenAI's finish reasons; a cancelled answer is one nobody reads, called `stop`."""
    return reason if reason in ("length", "tool_calls") else "stop"


def tool_calls_completion(cid: str, created: int, model: str, calls: list[ToolCall],
                          use: dict[str, Any], reasoning: str = "") -> dict[str, Any]:
    """A whole chat.completion whose answer is tool calls (after a reasoning model's thinking, if any)."""
    body = chat_completion(cid, created, model, "", "tool_calls", use, reasoning)
    body["choices"][0]["message"].update(content=None, tool_calls=[call.to_json() for call in calls])
    return body


def chat_completion(cid: str, created: int, model: str, text: str, reason: str,
                    use: dict[str, Any], reasoning: str = "") -> dict[str, Any]:
    """A whole chat.completion; a reasoning model's thinking, when it wrote some, under `reasoning_content`
    and `reasoning` (llama-server's name and Ollama's: clients read one or the other)."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if reasoning:
        message.update(reasoning_content=reasoning, reasoning=reasoning)
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": finish_reason(reason),
        }],
        "usage": use,
    }


def chat_chunk(cid: str, created: int, model: str, delta: dict[str, Any],
               reason: str | None = None) -> dict[str, Any]:
    """One chat.completion.chunk."""
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None,
                     "finish_reason": finish_reason(reason) if reason else None}],
    }


def text_completion(cid: str, created: int, model: str, text: str, reason: str | None,
                    use: dict[str, Any] | None = None) -> dict[str, Any]:
    """A text_completion, whole or as one streamed chunk."""
    body: dict[str, Any] = {
        "id": cid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None,
                     "finish_reason": finish_reason(reason) if reason else None}],
    }
    if use is not None:
        body["usage"] = use
    return body


def null_usage(chunk: dict[str, Any], include_usage: bool) -> dict[str, Any]:
    """With include_usage, OpenAI's chunks before the last carry `"usage": null`."""
    if include_usage:
        chunk["usage"] = None
    return chunk


def usage_chunk(cid: str, created: int, model: str, obj: str, use: dict[str, Any]) -> dict[str, Any]:
    """The last chunk of a stream when stream_options.include_usage is set."""
    return {"id": cid, "object": obj, "created": created, "model": model, "choices": [], "usage": use}


def model_card(name: str, created: int, kind: str = "chat") -> dict[str, Any]:
    """One entry of /v1/models; `homellm.kind` tells chat models from embedding models."""
    return {"id": name, "object": "model", "created": created, "owned_by": "homellm", "homellm": {"kind": kind}}


class EmbeddingRequest(BaseModel):
    """POST /v1/embeddings."""

    model_config = ConfigDict(extra="ignore")
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    truncate: bool = True  # Ollama's: cut inputs past the model's context instead of refusing them

    def texts(self) -> list[str]:
        """The inputs as texts; token arrays and empty strings are refused."""
        items = [self.input] if isinstance(self.input, str) else list(self.input)
        if not items:
            raise InvalidRequestError("input is an empty list", hint="send a string or a list of strings",
                                      param="input")
        if len(items) > MAX_EMBEDDING_INPUTS:
            raise InvalidRequestError(f"{len(items)} inputs; at most {MAX_EMBEDDING_INPUTS} per request",
                                      hint="split the list over several requests", param="input")
        texts: list[str] = []
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise InvalidRequestError("token arrays are not supported as input",
                                          hint="send the text itself; each model has its own tokenizer",
                                          param="input")
            if not item.strip():
                raise InvalidRequestError(f"input[{index}] is empty", hint="send text to embed", param="input")
            texts.append(item)
        return texts


MAX_EMBEDDING_INPUTS = 2048


def embedding_list(model: str, vectors: Any, prompt_tokens: int, encoding: str) -> dict[str, Any]:
    """OpenAI's embedding response; base64 is the float32 bytes, as OpenAI's clients decode it."""
    import base64

    def encode(row: Any) -> Any:
        if encoding == "base64":
            return base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
        return [float(x) for x in row]

    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": encode(row)} for i, row in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
