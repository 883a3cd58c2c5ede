"""`json_explore`: what is at a path of a JSON file: its type, keys, length and values, within size limits."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from homellm.errors import InvalidRequestError
from homellm.tools.narrowing import names_column, words

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_KEYS = 40
MAX_ITEMS = 10
MAX_TEXT = 200
MAX_DEPTH = 6
MAX_VISITS = 2000  # keys looked at to find the paths a question names
_ORDINALS = {"first": 0, "1st": 0, "second": 1, "2nd": 1, "third": 2, "3rd": 2, "fourth": 3, "fifth": 4,
             "last": -1}
# Questions about an object or array itself, which its keys and length answer.
_ASKS_FOR_SHAPE = re.compile(r"\b(keys?|fields?|how many|length|list|structure|contain)\b", re.IGNORECASE)
_STEP = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")


class JsonFile:
    """A JSON document read once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.name = self.path.stem
        try:
            size = self.path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise InvalidRequestError(f"{self.path.name} is {size / 2**20:.0f} MiB; json_explore reads up to "
                                          f"{MAX_FILE_BYTES // 2**20} MiB",
                                          hint="an array of records of any size can be read as a table: "
                                               "--table FILE (DuckDB streams it)")
            self.data = json.loads(self.path.read_text(encoding="utf-8-sig"))
        except OSError as exc:
            raise InvalidRequestError(f"cannot read {self.path}: {exc.strerror or exc}", param="json_file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidRequestError(f"{self.path.name} is not JSON: {exc}", param="json_file") from None

    def schema(self, question: str | None = None) -> dict[str, Any]:
        """The arguments of an exploration: a path such as `items[0].name` (empty for the top).

        Given the question, the path is chosen from the top and the deepest paths to the keys the
        question names (a small model invents paths otherwise).
        """
        named = named_paths(self.data, "", question) if question is not None else []
        if not named and not isinstance(self.data, dict):
            # An array's items past the ones shown are reached by a path the model writes.
            return _path_schema({"type": "string", "maxLength": 200})
        return _path_schema({"enum": [*named, ""]})

    def follow(self, question: str) -> Callable[[dict[str, Any], Any], dict[str, Any] | None]:
        """For the tool loop: after a call that showed an object or array, the schema of the next call
        when the question names a key that lies deeper; None when the result is the answer."""
        def onward(arguments: dict[str, Any], result: Any) -> dict[str, Any] | None:
            if not isinstance(result, dict) or result.get("type") not in ("object", "array"):
                return None
            at = str(arguments.get("path") or "")
            if _ASKS_FOR_SHAPE.search(question):
                return None  # "which keys", "how many items": the object itself answers
            try:
                node = self._at(at)
            except InvalidRequestError:
                return None
            deeper = [p for p in named_paths(node, _joined(at), question) if p != _joined(at)]
            return _path_schema({"enum": deeper}) if deeper else None

        return onward

    def explore(self, path: str = "") -> dict[str, Any]:
        """What is at `path`: type, and keys with their types, length and first items, or the value."""
        return describe(self._at(path), _joined(path))

    def _at(self, path: str) -> Any:
        """The value at `path`; a step that does not exist is an error naming what is there instead."""
        node = self.data
        walked = ""
        for key, index in _steps(path):
            if index is not None:
                if not isinstance(node, list) or index >= len(node):
                    raise InvalidRequestError(f"{walked or 'the top'} has no item [{index}]",
                                              hint=_what_is(node))
                node = node[index]
                walked += f"[{index}]"
            else:
                if isinstance(node, list) and key.isdigit() and int(key) < len(node):
                    node = node[int(key)]
                elif not isinstance(node, dict) or key not in node:
                    raise InvalidRequestError(f"{walked or 'the top'} has no key {key!r}", hint=_what_is(node))
                else:
                    node = node[key]
                walked += f".{key}" if walked else key
        return node


def _steps(path: str) -> list[tuple[str, int | None]]:
    """A path's keys and item indexes in order: `a.b[2]` -> (a, None), (b, None), ('', 2)."""
    return [(m.group(1) or "", int(m.group(2)) if m.group(2) is not None else None)
            for m in _STEP.finditer(path.strip().lstrip("$").strip("."))]


def _joined(path: str) -> str:
    """A path written the way `explore` reports it."""
    out = ""
    for key, index in _steps(path):
        out += f"[{index}]" if index is not None else (f".{key}" if out else key)
    return out


def _path_schema(path: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": ["path"], "properties": {"path": path}}


def named_paths(node: Any, at: str, question: str) -> list[str]:
    """The deepest paths below `node` (itself at path `at`) that end at a key the question names,
    through the items its ordinal words pick ("the first book": [0]) or an array's only item;
    within MAX_DEPTH levels and MAX_VISITS keys."""
    named: dict[str, bool] = {}
    budget = [MAX_VISITS]

    def names(key: str) -> bool:
        if key not in named:
            named[key] = names_column(question, key)
        return named[key]

    def walk(node: Any, at: str, depth: int) -> list[str]:
        found: list[str] = []
        if depth <= 0 or budget[0] <= 0:
            return found
        if isinstance(node, dict):
            for key, value in list(node.items())[:MAX_KEYS]:
                budget[0] -= 1
                child = f"{at}.{key}" if at else str(key)
                below = walk(value, child, depth - 1)
                if below:
                    found += below
                elif names(str(key)):
                    found.append(child)
        elif isinstance(node, list) and node:
            index = _asked_index(question, len(node))
            if index is not None:
                found += walk(node[index], f"{at}[{index}]", depth - 1)
        return found[:MAX_KEYS]

    return walk(node, at, MAX_DEPTH)


def _asked_index(question: str, length: int) -> int | None:
    """The item an ordinal word in the question picks ("second" -> 1, "last"), the only item of a
    one-item array, or None."""
    asked = set(words(question))
    for word, index in _ORDINALS.items():
        if word in asked:
            position = length - 1 if index < 0 else index
            return position if 0 <= position < length else None
    return 0 if length == 1 else None


def describe(node: Any, path: str = "") -> dict[str, Any]:
    """A JSON value summarised within the limits."""
    out: dict[str, Any] = {"path": path or "(top)", "type": _type(node)}
    if isinstance(node, dict):
        out["length"] = len(node)
        out["keys"] = {k: _type(v) for k, v in list(node.items())[:MAX_KEYS]}
        if len(node) > MAX_KEYS:
            out["note"] = f"{len(node) - MAX_KEYS} more keys not shown"
    elif isinstance(node, list):
        out["length"] = len(node)
        out["items"] = [_preview(v) for v in node[:MAX_ITEMS]]
        if len(node) > MAX_ITEMS:
            out["note"] = f"{len(node) - MAX_ITEMS} more items not shown"
    else:
        out["value"] = _preview(node)
    return out


def _type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), "unknown")


def _preview(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "…"
    if isinstance(value, dict):
        return {k: _preview(v) if not isinstance(v, (dict, list)) else f"<{_type(v)} of {len(v)}>"
                for k, v in list(value.items())[:MAX_KEYS]}
    if isinstance(value, list):
        return f"<array of {len(value)}>"
    return value


def _what_is(node: Any) -> str:
    if isinstance(node, dict):
        return "keys: " + ", ".join(list(node)[:MAX_KEYS])
    if isinstance(node, list):
        return f"an array of {len(node)} items"
    return f"a {_type(node)}"
