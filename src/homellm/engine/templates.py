"""Chat templates from GGUF metadata, rendered in a sandbox.

Templates come with downloaded files and are untrusted (CVE-2024-34359 in
llama-cpp-python was a template escaping a plain Jinja environment), so they
render in `ImmutableSandboxedEnvironment`. The sandbox keeps a template out of
Python's internals but not from spending time and memory: `'x' * 10**9`, a
string doubled in a loop, or nested `range` loops run as long as they like. So
each render has a budget (RenderBudget): a deadline, a size for any text or
list the template reads or makes, and a count of `range` iterations, checked
in the sandbox's hooks (attribute and item reads, calls, filters, the `*`,
`**` and `+` operators) and on the output as it is produced.
"""

from __future__ import annotations

import contextvars
import functools
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from homellm.errors import InvalidRequestError, TemplateError
from homellm.generation import CallSyntax
from homellm.reasoning import thinking_style_of

# Used when a GGUF carries no template: ChatML, which most small instruct models know.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def call_syntax_of(source: str | None) -> CallSyntax:
    """The tool-call syntax a chat template's Jinja source was written for, told by its markers;
    "json" (homellm's own) when it knows no tools."""
    if not source:
        return "json"
    if "[TOOL_CALLS]" in source or "[AVAILABLE_TOOLS]" in source:
        return "mistral"
    if "<tool_call>" in source:
        return "hermes"
    if "<|python_tag|>" in source or ("<|start_header_id|>" in source and ("tools" in source or "ipython" in source)):
        return "llama3"
    if "<start_of_turn>" in source:
        return "gemma"
    return "json"


# A render's budget. Real templates render in milliseconds, iterate over the messages, and write the
# messages plus some kilobytes of markup.
RENDER_SECONDS = 10.0
RANGE_ITERATIONS = 1_000_000
BASE_RENDER_CHARS = 256 * 1024  # a render may write INPUT_FACTOR times its input (as JSON), plus this
INPUT_FACTOR = 4
MAX_POWER_EXPONENT = 256


@dataclass
class RenderBudget:
    """What one render may still spend; the sandbox's hooks charge it and raise SecurityError past it."""

    max_chars: int
    deadline: float = field(default_factory=lambda: time.monotonic() + RENDER_SECONDS)
    iterations: int = RANGE_ITERATIONS

    @classmethod
    def for_input(cls, *given: Any) -> "RenderBudget":
        """A budget in proportion to what the template is given (messages, tools)."""
        size = sum(len(json.dumps(item, ensure_ascii=False, default=str)) for item in given)
        return cls(max_chars=BASE_RENDER_CHARS + INPUT_FACTOR * size)

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise SecurityError(f"the template rendered for more than {RENDER_SECONDS:g} s")

    def check_size(self, value: Any) -> Any:
        """`value`, unless it is text or a collection past the size budget."""
        if isinstance(value, (str, bytes, list, tuple, dict)) and len(value) > self.max_chars:
            raise SecurityError(f"the template made a value of {len(value):,} items (budget {self.max_chars:,})")
        return value

    def check_count(self, count: int) -> None:
        """Refuse an integer argument (a width, a repeat count) past the size budget."""
        if count > self.max_chars:
            raise SecurityError(f"the template asked for a size of {count:,} (budget {self.max_chars:,})")


_DIGITS = re.compile(r"\d+")
_BUDGET: contextvars.ContextVar[RenderBudget | None] = contextvars.ContextVar("render_budget", default=None)


def _budget() -> RenderBudget:
    budget = _BUDGET.get()
    if budget is None:  # rendered outside ChatTemplate.render (a test, a tool): an ordinary budget
        budget = RenderBudget(max_chars=BASE_RENDER_CHARS)
        _BUDGET.set(budget)
    return budget


def _check_arguments(budget: RenderBudget, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    budget.check_time()
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool):
            budget.check_count(abs(value))
        else:
            budget.check_size(value)


def _check_format_string(budget: RenderBudget, text: Any) -> None:
    """Refuse a printf or str.format pattern whose width or precision is past the budget ('%999999999s'),
    before the formatting allocates it."""
    if isinstance(text, str):
        for digits in _DIGITS.findall(text):
            budget.check_count(int(digits))


def _budgeted_filter(filter_function: Callable[..., Any], name: str) -> Callable[..., Any]:
    @functools.wraps(filter_function)  # keeps jinja's pass_context/pass_environment marks
    def run(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        _check_arguments(budget, args, kwargs)
        if name == "format" and args:
            _check_format_string(budget, args[0])
        return budget.check_size(filter_function(*args, **kwargs))

    return run


class _CountedRange:
    """`range` for templates: each item taken is charged to the render's budget."""

    def __init__(self, *args: int) -> None:
        self._range = range(*args)

    def __iter__(self) -> Iterator[int]:
        budget = _budget()
        for value in self._range:
            budget.iterations -= 1
            if budget.iterations < 0:
                raise SecurityError(f"the template iterated over ranges more than {RANGE_ITERATIONS:,} times")
            if budget.iterations % 4096 == 0:
                budget.check_time()
            yield value

    def __len__(self) -> int:
        return len(self._range)

    def __getitem__(self, index: Any) -> Any:
        item = self._range[index]
        return _CountedRange(item.start, item.stop, item.step) if isinstance(item, range) else item


class _BudgetedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, charging reads, calls and the growing operators to the render's budget."""

    intercepted_binops = frozenset({"*", "**", "+"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        budget = _budget()
        budget.check_time()
        return budget.check_size(super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        budget = _budget()
        budget.check_time()
        return budget.check_size(super().getitem(obj, argument))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        budget = _budget()
        _check_arguments(budget, args, kwargs)
        if getattr(__obj, "__name__", None) in ("format", "format_map"):
            _check_format_string(budget, getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None))
        return budget.check_size(super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        budget.check_time()
        if operator == "*":
            for sized, count in ((left, right), (right, left)):
                if isinstance(sized, (str, list, tuple)) and isinstance(count, int):
                    budget.check_count(len(sized) * max(count, 0))
        elif operator == "**" and isinstance(right, int) and isinstance(left, int) and abs(left) > 1:
            if right > MAX_POWER_EXPONENT:
                raise SecurityError(f"the template raised a number to the power {right}")
        return budget.check_size(super().call_binop(context, operator, left, right))


_UNSAFE = "the model's chat template tried an unsafe operation"


class TemplateRaisedError(InvalidRequestError):
    """The template itself refused the conversation (its `raise_exception`)."""


def _raise_exception(message: str) -> None:
    raise TemplateRaisedError(f"the model's chat template refused the messages: {message}",
                              hint="check the order and roles of the messages")


def _tojson(value: Any, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    # Jinja's own tojson escapes HTML characters, which changes what the model sees.
    return json.dumps(value, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class ChatTemplate:
    """A compiled chat template with the model's special tokens."""

    def __init__(self, source: str | None, bos_token: str = "", eos_token: str = "") -> None:
        self.source = source or CHATML_TEMPLATE
        self.from_model = source is not None
        self.call_syntax = call_syntax_of(source)
        self.thinking = thinking_style_of(source)
        # The same environment Hugging Face renders these templates in, so they behave alike.
        env = _BudgetedSandbox(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
        env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now, range=_CountedRange)
        env.filters["tojson"] = _tojson
        env.filters.update({name: _budgeted_filter(f, name) for name, f in env.filters.items()})
        try:
            self._template = env.from_string(self.source)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"the model's chat template does not compile: {exc}",
                                hint="override the template or use another GGUF") from None
        self._bos = bos_token
        self._eos = eos_token
        self._refuse_if_hostile()

    def _refuse_if_hostile(self) -> None:
        """Render one short turn now, so that a template that breaks out of the sandbox or its budget on
        any conversation is refused when the model loads, not at its first request.

        A template that fails in other ways (raises, divides by zero) is left to fail per request: the
        model still serves raw completions.
        """
        try:
            self.render([{"role": "user", "content": "Hello"}])
        except TemplateError as exc:
            if exc.message.startswith(_UNSAFE):
                raise
        except InvalidRequestError:
            pass

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True,
               tools: list[dict[str, Any]] | None = None, enable_thinking: bool | None = None,
               reasoning_effort: str | None = None) -> str:
        """The prompt text for these messages, ending where the assistant's answer begins.

        `tools` (OpenAI's `tools` list) reaches templates that know tools; SmolLM3's reads them as
        `xml_tools`. Without tools neither name is defined, as templates that test `is defined` expect.
        `enable_thinking` and `reasoning_effort` reach a reasoning model's template the same way: left
        undefined when None, so the template's own default applies.
        """
        context: dict[str, Any] = {"messages": messages, "add_generation_prompt": add_generation_prompt,
                                   "bos_token": self._bos, "eos_token": self._eos}
        if tools is not None:
            context.update(tools=tools, xml_tools=tools)
        if enable_thinking is not None:
            context["enable_thinking"] = enable_thinking
        if reasoning_effort is not None:
            context["reasoning_effort"] = reasoning_effort
        budget = RenderBudget.for_input(messages, tools or [])
        token = _BUDGET.set(budget)
        try:
            return self._render_within(budget, context)
        except TemplateRaisedError:
            raise
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"{_UNSAFE}: {exc}",
                                hint="this GGUF's template is hostile or broken; use another file") from None
        except Exception as exc:  # a template is code from a file: any failure is the file's
            raise TemplateError(f"the model's chat template failed to render: {type(exc).__name__}: {exc}",
                                hint="this GGUF's template is broken; use another file") from None
        finally:
            _BUDGET.reset(token)

    def _render_within(self, budget: RenderBudget, context: dict[str, Any]) -> str:
        """Render piece by piece, so that output past the budget stops the render rather than ending it."""
        pieces: list[str] = []
        size = 0
        for piece in self._template.generate(**context):
            size += len(piece)
            if size > budget.max_chars:
                raise SecurityError(f"the template wrote more than {budget.max_chars:,} characters "
                                    "for the messages it was given")
            budget.check_time()
            pieces.append(piece)
        return "".join(pieces)
