"""Grammars that force output into a shape: any JSON object, a JSON schema, or tool calls."""

from __future__ import annotations

import json

import llama_cpp
from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from homellm.errors import InvalidRequestError
from homellm.generation import ResponseFormat
from homellm.json_schema import check_schema

GRAMMAR_ROOT = "root"


def grammar_for(response_format: ResponseFormat, vocab: llama_cpp.llama_vocab_p) -> str | None:
    """The GBNF text for a response format, checked by llama.cpp's own parser; None for text."""
    if response_format.kind == "text":
        return None
    if response_format.kind == "json_object":
        gbnf = JSON_GBNF
    elif response_format.kind == "tool_calls":
        gbnf = call_grammar(schema_grammar(response_format.schema or {}, param="tools"), response_format.text_allowed)
    else:
        gbnf = schema_grammar(response_format.schema or {})
    _check_parses(gbnf, vocab)
    return gbnf


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


def _check_parses(gbnf: str, vocab: llama_cpp.llama_vocab_p) -> None:
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
