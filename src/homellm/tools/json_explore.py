"""`json_explore`: what is at a path of a JSON file: its type, keys, length and values, within size limits."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from homellm.errors import InvalidRequestError

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_KEYS = 40
MAX_ITEMS = 10
MAX_TEXT = 200
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
                                          f"{MAX_FILE_BYTES // 2**20} MiB", hint="give a smaller file")
            self.data = json.loads(self.path.read_text(encoding="utf-8-sig"))
        except OSError as exc:
            raise InvalidRequestError(f"cannot read {self.path}: {exc.strerror or exc}", param="json_file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidRequestError(f"{self.path.name} is not JSON: {exc}", param="json_file") from None

    def schema(self, question: str | None = None) -> dict[str, Any]:
        """The arguments of an exploration: a path such as `items[0].name` (empty for the top).

        Given the question, the path is chosen from the top and the top-level keys the question
        names (a small model invents paths otherwise).
        """
        path: dict[str, Any] = {"type": "string", "maxLength": 200}
        if question is not None and isinstance(self.data, dict):
            asked = set(re.findall(r"\w+", question.lower()))
            named = [k for k in self.data if k.lower() in asked or k.lower().rstrip("s") in asked][:MAX_KEYS]
            path = {"enum": [*named, ""]} if named else {"enum": [""]}
        return {"type": "object", "additionalProperties": False, "required": ["path"],
                "properties": {"path": path}}

    def explore(self, path: str = "") -> dict[str, Any]:
        """What is at `path`: type, and keys with their types, length and first items, or the value."""
        node = self.data
        walked = ""
        for match in _STEP.finditer(path.strip().lstrip("$").strip(".")):
            key, index = match.group(1), match.group(2)
            if index is not None:
                if not isinstance(node, list) or int(index) >= len(node):
                    raise InvalidRequestError(f"{walked or 'the top'} has no item [{index}]",
                                              hint=_what_is(node))
                node = node[int(index)]
                walked += f"[{index}]"
            else:
                if isinstance(node, list) and key.isdigit() and int(key) < len(node):
                    node = node[int(key)]
                elif not isinstance(node, dict) or key not in node:
                    raise InvalidRequestError(f"{walked or 'the top'} has no key {key!r}", hint=_what_is(node))
                else:
                    node = node[key]
                walked += f".{key}" if walked else key
        return describe(node, walked)


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
