"""Grammars that force output into a shape: any JSON object, a JSON schema, or tool calls.

Tool calls come in the syntax a model was trained on (homellm.tools.call_syntax names them): each
syntax's grammar wraps the grammar of ONE call object in that syntax's markers, for one call or
several, with or without a plain-text answer as the other choice.
"""

from __future__ import annotations

import copy
import json
import keyword
import re
from typing import Any

import llama_cpp
from llama_cpp.llama_grammar import JSON_GBNF, SchemaConverter, json_schema_to_gbnf

from homellm.errors import InvalidRequestError
from homellm.generation import CALL_OPENERS, Reasoning, ResponseFormat
from homellm.json_schema import check_schema

GRAMMAR_ROOT = "root"


def grammar_for(response_format: ResponseFormat, vocab: llama_cpp.llama_vocab_p) -> str | None:
    """The GBNF text for a response format, checked by llama.cpp's own parser; None for text."""
    if response_format.kind == "text":
        return None
    if response_format.kind == "json_object":
        gbnf = JSON_GBNF
    elif response_format.kind == "tool_calls":
        if response_format.syntax == "json":
            gbnf = call_grammar(schema_grammar(response_format.schema or {}, param="tools"),
                                response_format.text_allowed)
        else:
            gbnf = calls_grammar(response_format.syntax, response_format.schema or {}, response_format.max_calls,
                                 response_format.text_allowed)
    else:
        gbnf = schema_grammar(response_format.schema or {})
    if response_format.after_thinking is not None:
        gbnf = thinking_first(gbnf, response_format.after_thinking)
    check_grammar(gbnf, vocab)
    return gbnf


_ROOT = re.compile(r"^root\s*::=")
_ANSWER, _THOUGHT, _THOUGHT_TEXT = "x-answer", "x-thought", "x-thought-text"


def thinking_first(gbnf: str, reasoning: Reasoning) -> str:
    """A grammar (start rule `root`) preceded by a reasoning model's thinking: free text up to the close tag.

    When the prompt opened the thinking, the output must close it before the shape begins; otherwise a
    thought (open tag, text, close tag) may come first. The thinking text may hold anything but the
    close tag, except that its first character is not repeated right after itself ("<<" for </think>):
    GBNF has no "not containing", and this form of it stays small.
    """
    renamed = "\n".join(_ROOT.sub(_ANSWER + " ::=", line) for line in gbnf.splitlines())
    close = reasoning.close_tag
    first = _class_char(close[0])
    alternatives = [f"[^{first}]"]
    for cut in range(1, len(close)):
        alternatives.append(f"{_literal(close[:cut])} [^{_class_char(close[cut])}{first}]")
    thought = f"{_THOUGHT_TEXT} {_literal(close)} [ \\t\\n]*"
    root = (f"root ::= {_THOUGHT} {_ANSWER}" if reasoning.starts_inside
            else f"root ::= ({_literal(reasoning.open_tag)} {_THOUGHT})? {_ANSWER}")
    return "\n".join([root, f"{_THOUGHT} ::= {thought}",
                      f"{_THOUGHT_TEXT} ::= ({' | '.join(alternatives)})*", renamed])


def _class_char(char: str) -> str:
    """One character as GBNF writes it inside [...]."""
    return f"\\x{ord(char):02X}" if ord(char) < 0x80 else char


def _literal(text: str) -> str:
    """Text as a GBNF string literal."""
    return '"' + "".join(_class_char(c) if not c.isalnum() else c for c in text) + '"'


def schema_grammar(schema: dict, param: str = "response_format.json_schema.schema") -> str:
    """GBNF for a JSON schema; a construct the grammar cannot enforce is a 400 naming it."""
    check_schema(schema, param)
    try:
        return json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises bare exceptions for unsupported schemas
        raise InvalidRequestError(
            f"{param} cannot be turned into a grammar: {exc}",
            hint="use JSON Schema types, properties, required, enum, items and $ref within the document",
            param=param,
        ) from None


def call_grammar(schema_gbnf: str, text_allowed: bool) -> str:
    """The GBNF for a tool-call turn: only calls, or a call or a plain-text answer chosen by the first token."""
    if not text_allowed:
        return schema_gbnf
    renamed = "\n".join("tool-call ::=" + line[len("root ::="):] if line.startswith("root ::=") else line
                        for line in schema_gbnf.splitlines())
    # A text answer starts with anything but JSON's opening brackets or blank space.
    return ("root ::= tool-call | free-text\n"
            "free-text ::= [^{\\[ \\t\\n\\r] [^\\x00]*\n" + renamed)


# The first characters of a call in each syntax: a plain-text answer may not start with them.
# Names of the rules added around a call's grammar; the schema converter names its rules after
# properties and definitions, which the "x-" prefix keeps apart from these.
_CALL, _TURN, _TEXT = "x-call", "x-turn", "x-text"


def calls_grammar(syntax: str, call_schema: dict[str, Any], max_calls: int = 1, text_allowed: bool = False) -> str:
    """The GBNF for a tool-call turn in a syntax, from the JSON schema of one call object
    (`call_syntax.call_object_schema`, with the syntax's arguments key).

    Up to `max_calls` calls (1: exactly one); with `text_allowed`, the first token may choose a
    plain-text answer instead. Gemma's calls are Python, built from the same schema.
    """
    if syntax == "gemma":
        one = python_call_grammar(call_schema)
    else:
        one = schema_grammar(call_schema, param="tools")
    return call_turn_grammar(syntax, one, max_calls, text_allowed)


def call_turn_grammar(syntax: str, call_gbnf: str, max_calls: int = 1, text_allowed: bool = False) -> str:
    """The GBNF for a tool-call turn, from the GBNF of one call whose start rule is `root`.

    json: the call, or a JSON list of calls. hermes: `<tool_call>` blocks one per line. llama3: call
    objects separated by `;`. mistral: `[TOOL_CALLS]` and a JSON list. gemma: a ```tool_code``` block
    of calls one per line.
    """
    if syntax not in CALL_OPENERS:
        raise ValueError(f"unknown call syntax {syntax!r}")
    more = max(0, max_calls - 1)
    renamed = "\n".join(_CALL + " ::=" + line[len("root ::="):] if line.startswith("root ::=") else line
                         for line in call_gbnf.splitlines())
    comma, newline = '"," " "?', '"\\n"'
    turn = {
        "json": f'"[" {_repeat(_CALL, comma, more)} "]"' if more else _CALL,
        "hermes": _repeat(f'"<tool_call>\\n" {_CALL} "\\n</tool_call>"', newline, more),
        "llama3": _repeat(_CALL, '";" " "?', more),
        "mistral": f'"[TOOL_CALLS][" {_repeat(_CALL, comma, more)} "]"',
        "gemma": f'"```tool_code\\n" {_repeat(_CALL, newline, more)} "\\n```"',
    }[syntax]
    lines = [f"root ::= {_TURN} | {_TEXT}" if text_allowed else f"root ::= {_TURN}", f"{_TURN} ::= {turn}"]
    if text_allowed:
        opener = "".join("\\" + c if c in "[]\\^-" else c for c in CALL_OPENERS[syntax])
        # A text answer starts with anything but the syntax's opening character or blank space.
        lines.append(f"{_TEXT} ::= [^{opener} \\t\\n\\r] [^\\x00]*")
    return "\n".join(lines) + "\n" + renamed


def _repeat(item: str, separator: str, more: int) -> str:
    """`item`, then up to `more` times the separator and another item."""
    return f"{item} ({separator} {item}){{0,{more}}}" if more else item


def python_call_grammar(call_schema: dict[str, Any]) -> str:
    """The GBNF (start rule `root`) of one call written as Python, `name(key=value, ...)`, from the JSON
    schema of one call object; values are JSON literals, which Python reads too (true/false/null aside,
    which the call parser accepts)."""
    check_schema(call_schema, "tools")
    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    try:
        resolved = converter.resolve_refs(copy.deepcopy(call_schema), "call")
        definitions = resolved.get("$defs") or {}
        tools = [_python_tool_rule(converter, i, branch, definitions)
                 for i, branch in enumerate(resolved.get("anyOf") or [resolved])]
    except InvalidRequestError:
        raise
    except Exception as exc:  # the converter raises bare exceptions for unsupported schemas
        raise InvalidRequestError(f"tools cannot be turned into a grammar: {exc}",
                                  hint="use JSON Schema types, properties, required, enum, items and $ref",
                                  param="tools") from None
    rules = [f"root ::= {' | '.join(name for name, _ in tools)}", *(rule for _, rule in tools)]
    # Python reads JSON's escapes except "\\/", and a raw line break ends a Python string.
    converted = [_PYTHON_CHAR if line.startswith("char ::=") else line
                 for line in converter.format_grammar().splitlines()]
    return "\n".join(rules + converted)


_PYTHON_CHAR = (r'char ::= [^"\\\x00-\x1F\x7F] | "\\" (["\\bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] '
                r'[0-9a-fA-F] [0-9a-fA-F])')


def _python_tool_rule(converter: SchemaConverter, index: int, branch: dict[str, Any],
                      definitions: dict[str, Any]) -> tuple[str, str]:
    """The rule for calling one tool: its name, then its arguments as keywords (required ones first)."""
    properties = branch.get("properties") or {}
    name = (properties.get("name") or {}).get("const")
    key = next((k for k in properties if k != "name"), None)
    if not isinstance(name, str) or key is None:
        raise InvalidRequestError("the call schema names no tool", param="tools")
    arguments = _local_ref(properties[key], definitions)
    names = [name, *(arguments.get("properties") or {})]
    bad = [n for n in names if not n.isidentifier() or keyword.iskeyword(n)]
    if bad:
        raise InvalidRequestError(
            f"tool {name!r}: {', '.join(map(repr, bad))} is not a Python name, which calls written as Python need",
            hint="rename it, or let the model call in homellm's JSON syntax", param="tools")
    required = set(arguments.get("required") or ())
    items: list[tuple[str, bool]] = []
    for prop, schema in (arguments.get("properties") or {}).items():
        if schema is False:
            continue
        value = converter.visit({} if schema is True else schema, f"x-{index}-{prop}")
        items.append((f'"{prop}=" {value}', prop in required))
    rule = f"x-tool-{index}"
    return rule, f'{rule} ::= {json.dumps(name + "(")} {_keyword_list(items)} ")"'


def _local_ref(schema: Any, definitions: dict[str, Any]) -> dict[str, Any]:
    """A schema that is only a `#/$defs/...` reference, replaced by what it names."""
    if isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        target = definitions.get(schema["$ref"].split("/")[-1])
        if isinstance(target, dict):
            return target
    return schema if isinstance(schema, dict) else {}


def _keyword_list(items: list[tuple[str, bool]]) -> str:
    """Keyword arguments, required ones first in order, each optional one present or not, commas between."""
    required = [item for item, needed in items if needed]
    optional = [item for item, needed in items if not needed]
    if required:
        return " \", \" ".join(required) + "".join(f' (", " {item})?' for item in optional)
    if not optional:
        return '""'
    # With nothing required, whichever optional argument comes first has no comma before it.
    starts = [" ".join([optional[i], *(f'(", " {item})?' for item in optional[i + 1:])])
              for i in range(len(optional))]
    return "(" + " | ".join(f"({s})" for s in starts) + ")?"


def check_grammar(gbnf: str, vocab: llama_cpp.llama_vocab_p) -> None:
    """Refuse, as a bad request, a grammar that llama.cpp's own parser rejects."""
    # A grammar llama.cpp rejects yields a NULL sampler; adding that to a chain crashes
    # the process, so it is built once here and refused as a bad request instead.
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), GRAMMAR_ROOT.encode())
    if not sampler:
        raise InvalidRequestError(
            "llama.cpp could not parse the grammar built from the request's JSON schemas",
            hint="simplify the JSON schema",
            param="response_format",
        )
    llama_cpp.llama_sampler_free(sampler)
