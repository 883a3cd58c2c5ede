"""Checks on a request body's raw JSON text, before anything parses it.

Two kinds of JSON are valid to the parser and still poison what reads them
after: nesting deep enough that a recursive reader runs out of stack (Python's
`json` raises RecursionError near 1,000 levels, and walkers of the parsed value
fail sooner), and a lone UTF-16 surrogate escape (`"\\ud800"`), which decodes to
a Python string that cannot be encoded to UTF-8 for the tokenizer, a log line
or SQLite. Both are answered 400 here, in one pass over the bytes, so no route
has to remember them.
"""

from __future__ import annotations

import re

from homellm.errors import InvalidRequestError

# The deepest a real request goes is a tool's JSON schema: body, tools, item, function, parameters, then
# two levels per nested object. 64 leaves room for schemas nested 25 objects deep.
MAX_JSON_DEPTH = 64

# A JSON string, written as an unrolled loop: runs of plain characters between escapes (six times faster
# than one alternation per character).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
# Depth does not depend on which kind of bracket: braces are counted as square ones (a mismatch such as
# "[}" is then the parser's to refuse, at a depth already checked).
_AS_SQUARE = bytes.maketrans(b"{}", b"[]")
# A backslash and what it escapes; a surrogate escape is read with the low half that may follow it.
_ESCAPE = re.compile(rb"\\(u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|u[dD][89a-fA-F][0-9a-fA-F]{2}|.)",
                     re.DOTALL)


def check_json_body(body: bytes) -> None:
    """Refuse JSON nested deeper than MAX_JSON_DEPTH or holding an unpaired surrogate escape.

    Other text that is not JSON passes: the route's own parser says what is wrong with it.
    """
    if body[:1].isspace() or body[:1] in (b"{", b"["):
        _check_depth(body)
    if b"\\u" in body or b"\\U" in body:
        _check_surrogates(body)


def _check_depth(body: bytes) -> None:
    brackets = _STRING.sub(b"", body).translate(_AS_SQUARE, _NOT_BRACKET)
    # Each round removes the pairs innermost at its start, so a body still holding brackets after
    # MAX_JSON_DEPTH rounds nests deeper. Bounded work (passes in C over the brackets alone), no recursion.
    for _ in range(MAX_JSON_DEPTH):
        if not brackets:
            return
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            # Unbalanced, so not JSON; refused here because a parser recurses into the unclosed openers.
            raise InvalidRequestError("the request body is not valid JSON: its brackets do not balance",
                                      hint="send one complete JSON object")
        brackets = shorter
    if brackets:
        raise InvalidRequestError(f"the request body nests JSON more than {MAX_JSON_DEPTH} levels deep",
                                  hint="flatten the request; no API field needs that much nesting")


def _check_surrogates(body: bytes) -> None:
    for escape in _ESCAPE.finditer(body):
        text = escape.group(1)
        if len(text) == 5 and text[:2].lower() == b"ud":
            at = escape.start()
            raise InvalidRequestError(
                f"the request body holds a lone UTF-16 surrogate, {escape.group(0).decode()} at byte {at}, "
                "which is not a character",
                hint="send a surrogate pair (high \\ud800-\\udbff, then low \\udc00-\\udfff) or the character itself")
