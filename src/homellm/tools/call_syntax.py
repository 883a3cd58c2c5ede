"""How each family of models writes a tool call, told apart by its chat template, and read back.

A model whose chat template knows tools is trained on that template's own call syntax, so it gets
the tools through the template and writes calls its own way:

- "hermes" (Qwen 2.5/3, SmolLM3, Hermes): `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`,
  several one after another.
- "llama3" (Llama 3.1-3.3): a JSON object `{"name": ..., "parameters": {...}}`, perhaps after
  `<|python_tag|>`; several separated by `;`.
- "mistral": `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`, or the newer
  `[TOOL_CALLS]name[ARGS]{...}`.

Two syntaxes get a tool prompt that homellm writes, because the template knows no tools:

- "gemma" (Gemma 3): Google's documented convention, calls written as Python in a ```tool_code```
  block, read here with `ast` (literals only; nothing the model writes is ever run).
- "json": homellm's own `{"name": ..., "arguments": {...}}` (a JSON list when parallel), for every
  other model, the built-in one included.

Pure functions: no I/O, no llama.cpp.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import keyword
import re
import warnings
from collections.abc import Sequence
from typing import Any, Protocol

from homellm.generation import CALL_OPENERS, CallSyntax

SYNTAXES: tuple[CallSyntax, ...] = ("json", "hermes", "llama3", "mistral", "gemma")
ParsedCall = tuple[str, dict[str, Any]]

HERMES_OPEN, HERMES_CLOSE = "<tool_call>", "</tool_call>"
PYTHON_TAG = "<|python_tag|>"
MISTRAL_CALLS = "[TOOL_CALLS]"
GEMMA_OPEN, GEMMA_RESULT, FENCE = "```tool_code", "```tool_output", "```"
# The newer Mistral form: `[TOOL_CALLS]name[ARGS]{...}`, Magistral's with `[CALL_ID]id` before [ARGS].
_NEW_MISTRAL_CALL = re.compile(r"\s*([A-Za-z0-9_.-]{1,64})(?:\[CALL_ID\][A-Za-z0-9]*)?\[ARGS\]")
# Python's names for JSON's literals, which a model writing Python calls may use either way.
_JSON_NAMES = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}


class OfferedTool(Protocol):
    """What these functions read of a tool (`homellm.tools.calling.Tool` has it)."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def parameters(self) -> dict[str, Any]: ...


# Choosing a syntax (the engine tells it from the template: engine.templates.call_syntax_of)

def template_knows_tools(syntax: str) -> bool:
    """Whether tools reach the model through its own template (`tools=`), not a homellm-written prompt."""
    return syntax in ("hermes", "llama3", "mistral")


def arguments_key(syntax: str) -> str:
    """The key a call object keeps its arguments under: "parameters" for Llama 3, "arguments" for the rest."""
    return "parameters" if syntax == "llama3" else "arguments"


def usable_syntax(syntax: CallSyntax, tools: Sequence[OfferedTool]) -> CallSyntax:
    """The syntax to use for these tools: Python calls need argument names that are Python names,
    so Gemma falls back to homellm's JSON calls for a tool whose arguments are not."""
    if syntax == "gemma" and not all(_python_names(t) for t in tools):
        return "json"
    return syntax


def call_object_schema(tools: Sequence[OfferedTool], key: str = "arguments") -> dict[str, Any]:
    """The JSON schema of ONE call object `{"name": ..., key: {...}}` to any of the tools.

    Each tool's `$defs` move to the root, prefixed by the tool's name, since `#/$defs/...` resolves
    against the root once the parameters sit inside a call.
    """
    definitions: dict[str, Any] = {}
    calls = [{"type": "object",
              "properties": {"name": {"const": t.name}, key: _hoisted_parameters(t, definitions)},
              "required": ["name", key], "additionalProperties": False} for t in tools]
    one: dict[str, Any] = calls[0] if len(calls) == 1 else {"anyOf": calls}
    return {**one, "$defs": definitions} if definitions else one


# Telling the tools (for the syntaxes whose template knows none but homellm's)

def gemma_tool_prompt(tools: Sequence[OfferedTool], text_allowed: bool, parallel: bool) -> str:
    """The system text that offers the tools to Gemma as Python functions, in Google's documented style:
    calls come back in a ```tool_code``` block, results go in as ```tool_output```."""
    how = "one or more calls, one per line, each" if parallel else "one call,"
    lines = [
        "You have access to the Python functions defined below. To use them, reply with a ```tool_code``` "
        f"block holding {how} written as Python with keyword arguments, and nothing else:",
        f"{GEMMA_OPEN}\nfunction_name(argument=value)\n{FENCE}",
        "Only the functions defined here exist. What a call returns comes back to you in a "
        f"{GEMMA_RESULT}{FENCE} block; use it to call more functions or to answer.",
    ]
    if text_allowed:
        lines.append("When no function is needed, answer in plain text instead.")
    stubs = "\n\n".join(_python_stub(t) for t in tools)
    return "\n".join(lines) + f"\n\n```python\n{stubs}\n{FENCE}"


def _python_stub(tool: OfferedTool) -> str:
    """A tool as a Python function definition with a docstring (Google's Args: section)."""
    properties = tool.parameters.get("properties") or {}
    required = set(tool.parameters.get("required") or ())
    # Required arguments first, as Python wants them and as the grammar writes them.
    ordered = sorted(properties.items(), key=lambda kv: kv[0] not in required)
    params = [f"{name}: {_python_type(schema)}" + ("" if name in required else " = None") for name, schema in ordered]
    doc = [tool.description or "(no description)"]
    described = [(name, _argument_note(schema)) for name, schema in ordered]
    if any(note for _, note in described):
        doc += ["", "    Args:", *(f"      {name}: {note}".rstrip() for name, note in described)]
    body = "\n".join(doc)
    return f'def {tool.name}({", ".join(params)}):\n    """{body}\n    """'


def _argument_note(schema: Any) -> str:
    if not isinstance(schema, dict):
        return ""
    note = str(schema.get("description") or "")
    if "enum" in schema:
        note = f"{note} One of {', '.join(json.dumps(v, ensure_ascii=False) for v in schema['enum'])}.".strip()
    return note


_PYTHON_TYPES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool",
                 "array": "list", "object": "dict", "null": "None"}


def _python_type(schema: Any) -> str:
    """The Python annotation closest to a JSON schema; `object` where none fits."""
    if not isinstance(schema, dict):
        return "object"
    kind = schema.get("type")
    if kind is None and "enum" in schema:
        kind = sorted({_json_type(v) for v in schema["enum"]})
    if kind is None and isinstance(schema.get("anyOf"), list):
        return " | ".join(dict.fromkeys(_python_type(s) for s in schema["anyOf"]))
    kinds = kind if isinstance(kind, list) else [kind]
    return " | ".join(_PYTHON_TYPES.get(k, "object") if isinstance(k, str) else "object" for k in kinds)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {str: "string", int: "integer", float: "number", list: "array", dict: "object"}.get(type(value), "")


# History in the shape templates read

def hf_history(messages: list[dict[str, Any]], syntax: str = "hermes") -> list[dict[str, Any]]:
    """OpenAI-shaped messages as Hugging Face chat templates read them: each call's `arguments` a dict
    (not JSON text), ids and names kept, a tool result's `name` filled in from its call.

    Mistral's templates accept only 9-character alphanumeric call ids, so for "mistral" every id is
    mapped to one, the same for a call and its result. Llama 3.1's template refuses a message with
    more than one call, so for "llama3" parallel calls become one assistant message each.
    """
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    short = _mistral_id if syntax == "mistral" else (lambda i: i)
    for message in messages:
        message = dict(message)
        if message.get("role") == "assistant" and message.get("tool_calls"):
            calls = []
            for call in _call_dicts(message["tool_calls"]):
                function = call["function"]
                names[str(call.get("id", ""))] = str(function.get("name", ""))
                shaped = {"name": function.get("name", ""), "arguments": _arguments_dict(function.get("arguments"))}
                calls.append({"id": short(call.get("id", "")), "type": "function", "function": shaped})
            message["tool_calls"] = calls
            message["content"] = message.get("content") or ""
            if syntax == "llama3" and len(calls) > 1:
                out += [{**message, "tool_calls": [call]} for call in calls]
                continue
        elif message.get("role") == "tool":
            call_id = str(message.get("tool_call_id", ""))
            message["name"] = message.get("name") or names.get(call_id, "")
            message["tool_call_id"] = short(call_id)
            message["content"] = message.get("content") or ""
        out.append(message)
    return out


def gemma_history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI-shaped messages as ordinary user and assistant turns for a template that knows no tools:
    calls as the ```tool_code``` block the model wrote, results as a ```tool_output``` user turn.

    Gemma's template insists that user and model turns alternate, so results and the user text
    that follows them share one turn.
    """
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "assistant" and message.get("tool_calls"):
            lines = [_python_call(c["function"]) for c in _call_dicts(message["tool_calls"])]
            block = f"{GEMMA_OPEN}\n" + "\n".join(lines) + f"\n{FENCE}"
            text = f"{message.get('content') or ''}\n{block}".strip()
            out.append({"role": "assistant", "content": text})
        elif role == "tool":
            _add_user_text(out, f"{GEMMA_RESULT}\n{message.get('content') or ''}\n{FENCE}")
        elif role == "user" and isinstance(message.get("content"), str):
            _add_user_text(out, message["content"])
        else:
            out.append({k: v for k, v in message.items() if k not in ("tool_calls", "tool_call_id")})
    return out


def _add_user_text(out: list[dict[str, Any]], text: str) -> None:
    if out and out[-1].get("role") == "user" and isinstance(out[-1].get("content"), str):
        out[-1] = {**out[-1], "content": f"{out[-1]['content']}\n\n{text}"}
    else:
        out.append({"role": "user", "content": text})


def _python_call(function: dict[str, Any]) -> str:
    arguments = _arguments_dict(function.get("arguments"))
    # JSON literals are what the grammar lets the model write, so its own history reads the same.
    pairs = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in arguments.items())
    return f"{function.get('name', '')}({pairs})"


def _call_dicts(calls: Any) -> list[dict[str, Any]]:
    """A message's tool calls that have the shape of one (clients send history as they like)."""
    if not isinstance(calls, list):
        return []
    return [c for c in calls if isinstance(c, dict) and isinstance(c.get("function"), dict)]


def _arguments_dict(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    if isinstance(arguments, str) and arguments.strip():
        try:
            value = json.loads(arguments)
        except json.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}
    return {}


def _mistral_id(call_id: Any) -> str:
    call_id = str(call_id)
    if re.fullmatch(r"[A-Za-z0-9]{9}", call_id):
        return call_id
    return hashlib.sha1(call_id.encode()).hexdigest()[:9]


# Reading calls back

def parse_calls(syntax: str, text: str) -> list[ParsedCall] | None:
    """The calls in a turn's text as (name, arguments), or None when it is a plain answer or a call
    cut off mid-way."""
    parser = _PARSERS.get(syntax)
    if parser is None:
        raise ValueError(f"unknown call syntax {syntax!r}")
    try:
        calls = parser(text.strip())
    except RecursionError:  # deeply nested output: not a call we can read
        return None
    return calls or None


def starts_a_call(syntax: str, text: str) -> bool | None:
    """Whether the first text of a turn opens a call; None while it cannot be told yet (streaming)."""
    stripped = text.lstrip()
    if not stripped:
        return None
    # Under the grammar a text answer starts with none of a call's first characters.
    return stripped[0] in CALL_OPENERS[syntax]


def _parse_json_turn(text: str) -> list[ParsedCall] | None:
    if not text.startswith(("{", "[")):
        return None
    value = _json(text)
    items = value if isinstance(value, list) else [value]
    return _call_objects(items, "arguments")


def _parse_hermes(text: str) -> list[ParsedCall] | None:
    if text.startswith("{"):  # the model's <tool_call> is a control token, which detokenizes to nothing
        values = _json_sequence(text, separators="")
        return _call_objects(values, "arguments") if values else None
    calls: list[ParsedCall] = []
    rest = text
    while rest:
        if not rest.startswith(HERMES_OPEN):
            return None
        body, closed, rest = rest[len(HERMES_OPEN):].partition(HERMES_CLOSE)
        found = _call_objects([_json(body.strip())], "arguments")
        # A complete JSON call missing only its closing tag (the turn ended) still counts.
        if found is None or (not closed and rest):
            return None
        calls += found
        rest = rest.lstrip()
    return calls


def _parse_llama3(text: str) -> list[ParsedCall] | None:
    text = text.removeprefix(PYTHON_TAG).lstrip()
    if text.startswith("["):  # a list of calls, which Llama models write now and then
        return _call_objects(_as_list(_json(text)), "parameters")
    values = _json_sequence(text, separators=";")
    return _call_objects(values, "parameters") if values else None


def _parse_mistral(text: str) -> list[ParsedCall] | None:
    if text.startswith(MISTRAL_CALLS) and _NEW_MISTRAL_CALL.match(text[len(MISTRAL_CALLS):]):
        return _parse_new_mistral(text)
    text = text.removeprefix(MISTRAL_CALLS).lstrip()
    if not text.startswith(("[", "{")):
        return None
    return _call_objects(_as_list(_json(text)), "arguments")


def _parse_new_mistral(text: str) -> list[ParsedCall] | None:
    """`[TOOL_CALLS]name[ARGS]{...}` repeated: each call's name before [ARGS], its arguments after."""
    calls: list[ParsedCall] = []
    rest = text
    while rest:
        if not rest.startswith(MISTRAL_CALLS):
            return None
        head = _NEW_MISTRAL_CALL.match(rest[len(MISTRAL_CALLS):])
        if head is None:
            return None
        rest = rest[len(MISTRAL_CALLS) + head.end():].lstrip()
        try:
            arguments, end = json.JSONDecoder(strict=False).raw_decode(rest)
        except json.JSONDecodeError:
            return None
        if not isinstance(arguments, dict):
            return None
        calls.append((head.group(1), arguments))
        rest = rest[end:].lstrip()
    return calls


def _parse_gemma(text: str) -> list[ParsedCall] | None:
    if not text.startswith(GEMMA_OPEN):
        return None
    body = text[len(GEMMA_OPEN):]
    if not body.startswith(("\n", "\r\n", " ")):
        return None
    body, closed, rest = body.partition(FENCE)
    if not closed or rest.strip():
        return None
    return python_calls(body)


def python_calls(code: str) -> list[ParsedCall] | None:
    """Calls written as Python, `f(a=1)` one per line (or a list of them), read without running
    anything: only names called with keyword arguments whose values are literals; None otherwise."""
    try:
        with warnings.catch_warnings():  # an invalid escape in a string is a SyntaxWarning, not ours to print
            warnings.simplefilter("ignore")
            module = ast.parse(code.strip(), mode="exec")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    nodes: list[ast.expr] = []
    for statement in module.body:
        if not isinstance(statement, ast.Expr):
            return None
        value = statement.value
        nodes += value.elts if isinstance(value, (ast.List, ast.Tuple)) else [value]
    calls = [_python_call_of(node) for node in nodes]
    if not calls or any(c is None for c in calls):
        return None
    return [c for c in calls if c is not None]


def _python_call_of(node: ast.expr) -> ParsedCall | None:
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.args:
        return None
    arguments: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:  # **spread
            return None
        try:
            arguments[kw.arg] = _literal(kw.value)
        except ValueError:
            return None
    return node.func.id, arguments


def _literal(node: ast.expr) -> Any:
    """The value of a literal expression; ValueError for anything else (calls, names, attributes)."""
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (str, bool, int, float))):
        return _whole_characters(node.value) if isinstance(node.value, str) else node.value
    if isinstance(node, ast.Name) and node.id in _JSON_NAMES:
        return _JSON_NAMES[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        keys = [_literal(k) if k is not None else None for k in node.keys]
        if any(not isinstance(k, str) for k in keys):
            raise ValueError("dict keys must be strings")
        return {k: _literal(v) for k, v in zip(keys, node.values)}
    raise ValueError(f"not a literal: {type(node).__name__}")


def _whole_characters(text: str) -> str:
    # A JSON "\ud83d\ude00" is one character; Python reads two lone surrogates.
    try:
        return text.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        return text


def _json(text: str) -> Any:
    """The JSON value the whole text is, or None (cut off, or more after it)."""
    try:
        return json.loads(text, strict=False)  # strict=False: a raw newline inside a string still reads
    except json.JSONDecodeError:
        return None


def _json_sequence(text: str, separators: str) -> list[Any] | None:
    """JSON values one after another, with blank space and `separators` between; None if anything else."""
    decoder = json.JSONDecoder(strict=False)
    values, i = [], 0
    while True:
        while i < len(text) and (text[i].isspace() or text[i] in separators):
            i += 1
        if i == len(text):
            return values
        try:
            value, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            return None
        values.append(value)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _call_objects(items: list[Any], key: str) -> list[ParsedCall] | None:
    """(name, arguments) of each call object; the other key is read too, since models mix them up."""
    other = "arguments" if key == "parameters" else "parameters"
    calls: list[ParsedCall] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return None
        arguments = item.get(key, item.get(other, {}))
        if isinstance(arguments, str):  # some models write the arguments as JSON text
            arguments = _json(arguments)
        if not isinstance(arguments, dict):
            return None
        calls.append((item["name"], arguments))
    return calls or None


_PARSERS = {"json": _parse_json_turn, "hermes": _parse_hermes, "llama3": _parse_llama3,
            "mistral": _parse_mistral, "gemma": _parse_gemma}


# Helpers for the schemas

def _hoisted_parameters(tool: OfferedTool, definitions: dict[str, Any]) -> dict[str, Any]:
    parameters = copy.deepcopy(tool.parameters)
    local = {**parameters.pop("definitions", {}), **parameters.pop("$defs", {})}
    if not local:
        return parameters
    prefix = f"{tool.name}__"

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: rewrite(v) for k, v in node.items()}
            ref = out.get("$ref")
            if isinstance(ref, str):
                for base in ("#/$defs/", "#/definitions/"):
                    if ref.startswith(base):
                        out["$ref"] = "#/$defs/" + prefix + ref[len(base):]
            return out
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    for name, value in local.items():
        definitions[prefix + name] = rewrite(value)
    return rewrite(parameters)


def _python_names(tool: OfferedTool) -> bool:
    """Whether Gemma's Python calls can carry the tool's arguments: named keyword arguments that are
    Python names, every required one among them, nothing past them (free keys, a top-level anyOf)."""
    parameters = tool.parameters
    properties = parameters.get("properties") or {}
    if not isinstance(properties, dict) or any(k in parameters for k in ("anyOf", "oneOf", "allOf", "$ref")):
        return False
    if not properties and parameters.get("additionalProperties") not in (None, False):
        return False
    if not set(parameters.get("required") or ()) <= set(properties):
        return False
    names = [tool.name, *properties]
    return all(isinstance(n, str) and n.isidentifier() and not keyword.iskeyword(n) for n in names)
