"""Chat templates from GGUF metadata, rendered in a sandbox.

Templates come with downloaded files and are untrusted (CVE-2024-34359 in
llama-cpp-python was a template escaping a plain Jinja environment), so they
render in `ImmutableSandboxedEnvironment`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from homellm.errors import InvalidRequestError, TemplateError
from homellm.generation import CallSyntax

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
        # The same environment Hugging Face renders these templates in, so they behave alike.
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=["jinja2.ext.loopcontrols"])
        env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)
        env.filters["tojson"] = _tojson
        try:
            self._template = env.from_string(self.source)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"the model's chat template does not compile: {exc}",
                                hint="override the template or use another GGUF") from None
        self._bos = bos_token
        self._eos = eos_token

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True,
               tools: list[dict[str, Any]] | None = None) -> str:
        """The prompt text for these messages, ending where the assistant's answer begins.

        `tools` (OpenAI's `tools` list) reaches templates that know tools; SmolLM3's reads them as
        `xml_tools`. Without tools neither name is defined, as templates that test `is defined` expect.
        """
        context: dict[str, Any] = {"messages": messages, "add_generation_prompt": add_generation_prompt,
                                   "bos_token": self._bos, "eos_token": self._eos}
        if tools is not None:
            context.update(tools=tools, xml_tools=tools)
        try:
            return self._template.render(**context)
        except TemplateRaisedError:
            raise
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"the model's chat template tried an unsafe operation: {exc}",
                                hint="this GGUF's template is hostile or broken; use another file") from None
        except Exception as exc:  # a template is code from a file: any failure is the file's
            raise TemplateError(f"the model's chat template failed to render: {type(exc).__name__}: {exc}",
                                hint="this GGUF's template is broken; use another file") from None
