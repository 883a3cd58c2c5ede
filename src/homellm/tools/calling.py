"""OpenAI tool calling that any model gets right: calls are generated under a grammar made from the
functions' JSON schemas, so every call parses and validates.

The model is told about the tools in homellm's own prompt format and answers a call as one JSON
object `{"name": ..., "arguments": {...}}` (a list of them when parallel calls are asked for).
With `tool_choice: "auto"` one grammar lets the model's first token choose between such a call
and a plain-text answer.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass, replace
from typing import Any, Literal

from homellm.errors import InvalidRequestError
from homellm.generation import CallSyntax, ResponseFormat
from homellm.json_schema import check_schema, without_value_bounds
from homellm.tools.call_syntax import (
    arguments_key,
    call_object_schema,
    gemma_history,
    gemma_tool_prompt,
    hf_history,
    parse_calls,
    starts_a_call,
    template_knows_tools,
    usable_syntax,
)

log = logging.getLogger(__name__)
ChoiceMode = Literal["auto", "none", "required", "named"]
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_PARALLEL_CALLS = 8

@dataclass(frozen=True)
class Tool:
    """A function the model may call."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolChoice:
    """`tool_choice`: auto, none, required, or one named function."""

    mode: ChoiceMode = "auto"
    name: str | None = None


@dataclass(frozen=True)
class ToolCall:
    """One call the model made, as OpenAI returns it."""

    id: str
    name: str
    arguments: str  # JSON text, as in OpenAI's responses

    def to_json(self, index: int | None = None) -> dict[str, Any]:
        """The call in a message's `tool_calls` (with `index` in a streamed delta)."""
        out: dict[str, Any] = {"id": self.id, "type": "function",
                               "function": {"name": self.name, "arguments": self.arguments}}
        return {"index": index, **out} if index is not None else out


def parse_tools(raw: list[dict[str, Any]], drop_value_bounds: bool = False) -> list[Tool]:
    """OpenAI's `tools` list, checked: functions only, unique names, schemas the grammar can enforce.

    With `drop_value_bounds`, bounds the grammar cannot enforce (number ranges, unknown formats) are
    left unchecked instead of refused: for agents whose built-in tools carry them.
    """
    tools: list[Tool] = []
    for i, entry in enumerate(raw):
        function = entry.get("function") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or entry.get("type") != "function" or not isinstance(function, dict):
            raise InvalidRequestError(f"tools[{i}] is not a function tool",
                                      hint='each tool is {"type": "function", "function": {"name": ...}}',
                                      param=f"tools[{i}]")
        name = function.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise InvalidRequestError(f"tools[{i}].function.name must be letters, digits, '_' or '-' (64 at most)",
                                      param=f"tools[{i}].function.name")
        if any(t.name == name for t in tools):
            raise InvalidRequestError(f"two tools are named {name!r}", param="tools")
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        where = f"tools[{i}].function.parameters"
        if drop_value_bounds:
            parameters, dropped = without_value_bounds(parameters, where)
            if dropped:
                log.info("tool %s: not enforced by the grammar: %s", name, ", ".join(dropped))
        check_schema(parameters, where)
        tools.append(Tool(name, str(function.get("description") or ""), parameters))
    return tools


def parse_choice(raw: Any, tools: list[Tool]) -> ToolChoice:
    """OpenAI's `tool_choice`; `auto` when tools are given and no choice is."""
    if raw is None or raw == "auto":
        return ToolChoice("auto")
    if raw in ("none", "required"):
        return ToolChoice(raw)
    name = raw.get("function", {}).get("name") if isinstance(raw, dict) else None
    if not isinstance(name, str):
        raise InvalidRequestError("tool_choice must be auto, none, required or a named function",
                                  hint='{"type": "function", "function": {"name": "..."}}', param="tool_choice")
    if all(t.name != name for t in tools):
        raise InvalidRequestError(f"tool_choice names {name!r}, which is not among the tools", param="tool_choice")
    return ToolChoice("named", name)


def call_schema(tools: list[Tool], choice: ToolChoice, parallel: bool) -> dict[str, Any]:
    """The JSON schema of what the model may write when it calls, in homellm's own format."""
    one = call_object_schema([t for t in tools if choice.mode != "named" or t.name == choice.name])
    definitions = one.pop("$defs", None)
    # Several calls come as a list; one call may still come alone, as most models write it.
    several = {"type": "array", "items": one, "minItems": 1, "maxItems": MAX_PARALLEL_CALLS}
    schema = {"anyOf": [one, several]} if parallel else one
    return {**schema, "$defs": definitions} if definitions else schema


def tool_prompt(tools: list[Tool], choice: ToolChoice, parallel: bool) -> str:
    """What the model is told about the tools, in homellm's own format."""
    lines = ["You can call these tools:"]
    for tool in tools:
        if choice.mode == "named" and tool.name != choice.name:
            continue
        args = json.dumps(tool.parameters.get("properties", {}), ensure_ascii=False)
        lines.append(f"- {tool.name}: {tool.description or '(no description)'} Arguments: {args}")
    shape = 'a JSON object {"name": "<tool name>", "arguments": {...}}'
    if parallel:
        shape += " (or a JSON list of such objects to make several calls)"
    if choice.mode == "auto":
        lines.append(f"To call a tool, reply with only {shape}. If no tool is needed, answer in plain text.")
    else:
        lines.append(f"Reply with only {shape}.")
    return "\n".join(lines)


def with_tool_prompt(messages: list[dict[str, Any]], prompt: str) -> list[dict[str, Any]]:
    """The messages with the tool prompt in the system message (one is added when there is none)."""
    if messages and messages[0].get("role") == "system":
        first = messages[0]
        return [{**first, "content": f"{first.get('content') or ''}\n\n{prompt}".strip()}, *messages[1:]]
    return [{"role": "system", "content": prompt}, *messages]


def plain_history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Assistant tool calls and tool results as ordinary turns, which every chat template can render.

    A result and the user turns right after it share one turn: templates such as Gemma's refuse two
    user turns in a row.
    """
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    after_result = False
    for message in messages:
        if after_result and message.get("role") in ("tool", "user") and isinstance(message.get("content"), str):
            text = message["content"]
            if message.get("role") == "tool":
                name = names.get(str(message.get("tool_call_id", "")), "the tool")
                text = f"Result of {name}:\n{text}"
            out[-1] = {**out[-1], "content": f"{out[-1]['content']}\n\n{text}"}
            continue
        after_result = message.get("role") == "tool"
        calls = message.get("tool_calls")
        if message.get("role") == "assistant" and calls:
            shown = []
            for call in calls if isinstance(calls, list) else []:
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict):
                    continue
                names[str(call.get("id", ""))] = str(function.get("name", ""))
                try:
                    arguments = json.loads(function.get("arguments") or "{}")
                except (json.JSONDecodeError, TypeError):  # not JSON text: an object sent as it is, or junk
                    arguments = function.get("arguments")
                shown.append({"name": function.get("name"), "arguments": arguments})
            text = json.dumps(shown[0] if len(shown) == 1 else shown, ensure_ascii=False)
            out.append({"role": "assistant", "content": text})
        elif message.get("role") == "tool":
            name = names.get(str(message.get("tool_call_id", "")), "the tool")
            out.append({"role": "user", "content": f"Result of {name}:\n{message.get('content') or ''}"})
        else:
            out.append({k: v for k, v in message.items() if k not in ("tool_calls", "tool_call_id")})
    return out


@dataclass(frozen=True)
class ToolSetup:
    """The tools offered in one chat turn, how the model must choose, whether calls may come in a
    list, and the syntax the model writes them in (`for_model`)."""

    tools: list[Tool]
    choice: ToolChoice
    parallel: bool
    syntax: CallSyntax = "json"

    def for_model(self, syntax: CallSyntax) -> ToolSetup:
        """This setup for a model whose template was made for `syntax` (the scheduler's `call_syntax`)."""
        return replace(self, syntax=usable_syntax(syntax, self.offered()))

    def offered(self) -> list[Tool]:
        """The tools the model may call this turn: all, or the one named by tool_choice."""
        return [t for t in self.tools if self.choice.mode != "named" or t.name == self.choice.name]

    def prompt(self) -> str:
        """The system text describing the tools, in homellm's own format."""
        return tool_prompt(self.tools, self.choice, self.parallel)

    def schema(self) -> dict[str, Any]:
        """The JSON schema of a call (or list of calls) in homellm's own format."""
        return call_schema(self.tools, self.choice, self.parallel)

    def messages(self, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The conversation as the model reads it: with a template that knows tools, its own history of
        calls and results (the tools go in through `template_tools`); otherwise calls and results as
        plain turns and the tools described in the system message."""
        if template_knows_tools(self.syntax):
            return hf_history(history, self.syntax)
        if self.syntax == "gemma":
            prompt = gemma_tool_prompt(self.offered(), self.choice.mode == "auto", self.parallel)
            return with_tool_prompt(gemma_history(history), prompt)
        return with_tool_prompt(plain_history(history), self.prompt())

    def template_tools(self) -> list[dict[str, Any]] | None:
        """OpenAI's `tools` list for a template that knows tools; None for the others."""
        if not template_knows_tools(self.syntax):
            return None
        return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                  "parameters": t.parameters}} for t in self.offered()]

    def response_format(self) -> ResponseFormat:
        """The output shape the engine enforces for the turn: calls only, or (auto) a call or text."""
        text_allowed = self.choice.mode == "auto"
        if self.syntax == "json":
            return ResponseFormat("tool_calls", self.schema(), text_allowed=text_allowed)
        return ResponseFormat("tool_calls", call_object_schema(self.offered(), arguments_key(self.syntax)),
                              text_allowed=text_allowed, syntax=self.syntax,
                              max_calls=MAX_PARALLEL_CALLS if self.parallel else 1)

    def parse(self, text: str) -> list[ToolCall] | None:
        """The calls in a turn's text, or None when it is a plain answer, a call cut off, or names a
        tool not offered this turn (which only text outside the grammar's call could)."""
        found = parse_calls(self.syntax, text) or []
        # A small model given a list repeats itself: the same call twice is made once.
        unique = [call for i, call in enumerate(found) if call not in found[:i]]
        offered = {t.name for t in self.offered()}
        if not unique or any(name not in offered for name, _ in unique):
            return None
        return [ToolCall(f"call_{uuid.uuid4().hex[:24]}", name, json.dumps(arguments, ensure_ascii=False))
                for name, arguments in unique]

    def starts_a_call(self, text: str) -> bool | None:
        """Whether a turn's first text opens a call; None while that cannot be told yet."""
        return starts_a_call(self.syntax, text)
