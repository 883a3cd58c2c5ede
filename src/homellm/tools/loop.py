"""The tool loop: model, tool, model, up to a step limit; returns the answer with the steps taken.

Every call is generated under the grammar of the tools' schemas, so it parses; a
tool that refuses its arguments (a filter on a text column with `<`, say) returns
the error to the model as its result, as a person would read it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from homellm.docs.answer import inert
from homellm.errors import HomellmError
from homellm.generation import CallSyntax, ResponseFormat, SamplingParams
from homellm.reasoning import split_whole
from homellm.scheduler import Scheduler
from homellm.tools.answer import shown_result, stated
from homellm.tools.calling import (
    Tool,
    ToolCall,
    ToolChoice,
    ToolSetup,
    plain_history,
)

MAX_RESULT_CHARS = 4000
DEFAULT_MAX_STEPS = 3
CALL_TOKENS = 200
ANSWER_TOKENS = 160

# (messages, response format, max tokens, OpenAI's tools list for a template that knows tools)
# -> the model's text for that turn
ChatFunction = Callable[[list[dict[str, Any]], ResponseFormat, int, list[dict[str, Any]] | None], Awaitable[str]]


def scheduler_chat(scheduler: Scheduler, model: str, temperature: float, seed: int | None) -> ChatFunction:
    """The loop's chat function on a model the scheduler serves: each turn's whole text."""
    async def chat(messages: list[dict[str, Any]], response_format: ResponseFormat, max_tokens: int,
                   tools: list[dict[str, Any]] | None = None) -> str:
        # No repeat penalty: the answer copies the tools' values, and one would turn 344 into 34.
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed, repeat_penalty=1.0,
                                response_format=response_format)
        generation = await scheduler.chat(model, messages, params, tools=tools)
        text, _ = await generation.collect()
        return split_whole(generation.reasoning, text).content  # a reasoning model's thinking is not its answer

    return chat


@dataclass(frozen=True)
class ToolFunction:
    """A tool the loop can run: its description for the model, its arguments' schema, and the code."""

    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[dict[str, Any]], Any]
    # What a call computed, in words ("the mean of price where city is Lyon"); tools without one are
    # answered in the model's own words.
    subject: Callable[[dict[str, Any]], str] | None = None
    # Given a call's arguments and result: the arguments' schema for a next step when the result does
    # not answer the question yet (a JSON object whose named key lies deeper), or None when it does.
    follow: Callable[[dict[str, Any], Any], dict[str, Any] | None] | None = None


@dataclass(frozen=True)
class Step:
    """One tool call the model made and what the tool answered."""

    tool: str
    arguments: dict[str, Any]
    result: str
    ok: bool


@dataclass
class LoopResult:
    """The answer, the steps that led to it, and whether the step limit cut it short."""

    answer: str
    steps: list[Step] = field(default_factory=list)
    limit_reached: bool = False
    calls_parsed: int = 0
    calls_made: int = 0
    shown: str | None = None  # the tool's result as the answer shows it, verbatim

    def to_json(self) -> dict[str, Any]:
        """The result as `homellm ask --json` prints it: the answer, the result it shows, and every step."""
        last = next((s for s in reversed(self.steps) if s.ok), None)
        return {"answer": self.answer, "shown": self.shown,
                "result": json.loads(last.result) if last is not None else None,
                "limit_reached": self.limit_reached,
                "steps": [{"tool": s.tool, "arguments": s.arguments, "result": s.result, "ok": s.ok}
                          for s in self.steps]}


def tool_name(kind: str, stem: str, many: bool) -> str:
    """`table_query`, or `table_query_<file>` when several files of a kind are given."""
    if not many:
        return kind
    return f"{kind}_{re.sub(r'[^A-Za-z0-9_-]+', '_', stem).strip('_')[:40] or 'file'}"


def run_tool(tool: ToolFunction, arguments: dict[str, Any]) -> tuple[str, str, bool]:
    """The tool's result as the user sees it and as the model sees it (cut to a size with a note,
    without the SQL it ran), and whether it succeeded."""
    try:
        result = tool.run(arguments)
        shown, ok = json.dumps(result, ensure_ascii=False, default=str), True
        for_model = result if not isinstance(result, dict) else {k: v for k, v in result.items() if k != "sql"}
        text = json.dumps(for_model, ensure_ascii=False, default=str)
    except HomellmError as exc:
        shown = text = json.dumps({"error": exc.one_line()}, ensure_ascii=False)
        ok = False
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + f"… [cut: the result was {len(text):,} characters]"
    return shown, text, ok


async def run_loop(chat: ChatFunction, question: str, tools: list[ToolFunction], context: str = "",
                   max_steps: int = DEFAULT_MAX_STEPS, syntax: CallSyntax = "json") -> LoopResult:
    """Answer `question` with the tools: call until a tool's result answers it (a refused call is shown
    to the model, which tries again; a result that leads on, such as a JSON object whose asked-for key
    lies deeper, is followed with a next call), then answer from the last result.

    Each turn must call (`tool_choice: required`): a small model left to choose answers from nothing.
    Calls are written in `syntax`, the model's own (the scheduler's `call_syntax`) or homellm's JSON.
    """
    by_name = {tool.name: tool for tool in tools}
    system = "You answer questions about the user's data. Use the tools to look things up."
    # The context (a table's first rows) and every result are data: made inert, so that a cell written
    # like a turn marker cannot open a turn. The model's own calls in the history keep their syntax.
    messages: list[dict[str, Any]] = [{"role": "system", "content": f"{system}\n\n{inert(context)}".strip()},
                                      {"role": "user", "content": question}]
    result = LoopResult(answer="")
    answered = False
    for _ in range(max_steps):
        specs = [Tool(t.name, t.description, t.parameters) for t in by_name.values()]
        setup = ToolSetup(specs, ToolChoice("required"), parallel=False).for_model(syntax)
        # The grammar holds the real names (a column may be called anything); the model reads them inert.
        text = await chat(setup.messages(messages), setup.response_format(), CALL_TOKENS,
                          inert_json(setup.template_tools()))
        result.calls_made += 1
        calls = setup.parse(text)
        if not calls:
            break  # cut off by the token limit: answer from what there is
        result.calls_parsed += 1
        _record(messages, result, calls, by_name)
        step = result.steps[-1]
        if not step.ok:
            continue
        onward = _next_parameters(by_name[step.tool], step)
        if onward is None:
            answered = True
            break
        by_name[step.tool] = replace(by_name[step.tool], parameters=onward)
    last = next((s for s in reversed(result.steps) if s.ok), None)
    result.limit_reached = not answered and result.calls_parsed >= max_steps
    subject = by_name[last.tool].subject if last is not None else None
    shown = shown_result(json.loads(last.result)) if last is not None and subject is not None else None
    if last is not None and subject is not None and shown is not None:
        result.shown = shown[0]
        answer = stated(subject(last.arguments), *shown)
    else:
        answer = await _free_answer(chat, messages, question)
    why = "without a usable result" if last is None else "before a result answered the question"
    note = f"\n(stopped after {max_steps} tool steps {why})" if result.limit_reached else ""
    result.answer = answer + note
    return result


def inert_json(value: Any) -> Any:
    """Tools' schemas as the model reads them: every text in them made inert (see docs.answer.inert), since
    column names and a JSON file's keys are data."""
    if isinstance(value, str):
        return inert(value)
    if isinstance(value, list):
        return [inert_json(item) for item in value]
    if isinstance(value, dict):
        return {inert(key) if isinstance(key, str) else key: inert_json(item) for key, item in value.items()}
    return value


def _next_parameters(tool: ToolFunction, step: Step) -> dict[str, Any] | None:
    """The schema of the next call when this step's result leads on rather than answers."""
    if tool.follow is None:
        return None
    return tool.follow(step.arguments, json.loads(step.result))


def _record(messages: list[dict[str, Any]], result: LoopResult, calls: list[ToolCall],
            tools: dict[str, ToolFunction]) -> None:
    messages.append({"role": "assistant", "content": None, "tool_calls": [c.to_json() for c in calls]})
    for call in calls:
        arguments = json.loads(call.arguments)
        tool = tools[call.name]
        shown, text, ok = run_tool(tool, arguments)
        result.steps.append(Step(call.name, arguments, shown, ok))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": inert(text)})


async def _free_answer(chat: ChatFunction, messages: list[dict[str, Any]], question: str) -> str:
    """An answer in the model's own words, for results it reads rather than shows (passages, a JSON's keys)."""
    asked = [*plain_history(messages),
             {"role": "user", "content": f"Using the results above, answer in one sentence: {question}"}]
    return (await chat(asked, ResponseFormat(), ANSWER_TOKENS, None)).strip()
