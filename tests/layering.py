"""The package's imports, read from its source with `ast`, checked against DESIGN.md's layers.

A unit is a top-level package (`engine`) or a module at the package root (`config`).
An import counts wherever it is written (a function body too: it runs when the function
does), except under `if TYPE_CHECKING:`, which never runs.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

# DESIGN.md's layer table, lowest first: a unit imports only units of its own layer or below.
LAYERS: dict[str, int] = {
    **dict.fromkeys(("__init__", "config", "errors", "generation", "json_schema", "reasoning"), 0),
    **dict.fromkeys(("hardware", "models"), 1),
    "planner": 2,
    "engine": 3,
    "scheduler": 4,
    **dict.fromkeys(("docs", "embed", "tools", "advice", "upstreams", "rpc", "bench", "quant"), 5),
    **dict.fromkeys(("cli", "server", "__main__"), 6),
}
# Who may import engine/: the scheduler, and the services that own an engine because they measure it
# (bench, quant), run another kind of model (embed), lend or borrow devices (rpc) or report the build
# (advice). Everything else, the edges first, runs models through the scheduler.
ENGINE_USERS = frozenset({"engine", "scheduler", "bench", "quant", "embed", "rpc", "advice"})
NATIVE = frozenset({"llama_cpp", "ctypes"})  # only engine/ reaches llama.cpp
# Modules whose import means files, sockets, processes, databases or native code.
IO_MODULES = frozenset({"sqlite3", "socket", "subprocess", "shutil", "httpx", "urllib", "http", "gguf", "numpy",
                        "mmap", "tempfile", *NATIVE})


@dataclass(frozen=True)
class Import:
    """One import statement: which module of ours wrote it, and the module it names."""

    source: str  # dotted module name, e.g. homellm.engine.llama
    target: str  # dotted module name, e.g. homellm.tools.calling or llama_cpp._internals
    line: int


def read_imports(root: Path, package: str = "homellm") -> list[Import]:
    """Every import in every module under `root` (the package folder)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = [package, *rel.parts]
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        home = parts[:-1]  # the package a relative import starts from
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node, line in _import_nodes(tree):
            for target in _targets(node, home):
                found.append(Import(module, target, line))
    return found


def _import_nodes(tree: ast.AST) -> list[tuple[ast.Import | ast.ImportFrom, int]]:
    nodes: list[tuple[ast.Import | ast.ImportFrom, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            nodes.append((node, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return nodes


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node: ast.Import | ast.ImportFrom, home: list[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = home[: len(home) - node.level + 1] if node.level else []
    module = ".".join([*base, *([node.module] if node.module else [])])
    # `from homellm import cli_docs` imports a module; `from homellm.x import name` may name one too.
    return [module] + [f"{module}.{alias.name}" for alias in node.names]


def unit_of(module: str, package: str = "homellm") -> str | None:
    """The unit a dotted name of ours belongs to; None for other packages."""
    parts = module.split(".")
    if parts[0] != package:
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def unit_graph(imports: list[Import], units: set[str], package: str = "homellm") -> dict[str, set[str]]:
    """Which units import which (names that are not units, such as `homellm.__version__`, are left out)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for item in imports:
        source, target = unit_of(item.source, package), unit_of(item.target, package)
        if source is not None and target is not None and target in units and target != source:
            graph[source].add(target)
    return graph


def units_in(root: Path) -> set[str]:
    """The units present under the package folder."""
    return {p.name for p in root.iterdir() if p.is_dir() and (p / "__init__.py").is_file()} | \
        {p.stem for p in root.glob("*.py")}


def upward_imports(imports: list[Import], layers: dict[str, int], package: str = "homellm") -> list[str]:
    """Imports of a higher layer, as 'module:line -> target'."""
    bad = []
    for item in imports:
        source, target = unit_of(item.source, package), unit_of(item.target, package)
        if source in layers and target in layers and layers[target] > layers[source]:
            bad.append(f"{item.source}:{item.line} -> {item.target}")
    return sorted(set(bad))


def engine_imports_past_the_scheduler(imports: list[Import], package: str = "homellm") -> list[str]:
    """Imports of engine/ by a unit that should reach it through the scheduler (the edges above all)."""
    return sorted({f"{i.source}:{i.line} -> {i.target}" for i in imports
                   if unit_of(i.target, package) == "engine" and unit_of(i.source, package) not in ENGINE_USERS})


def native_outside_engine(imports: list[Import], package: str = "homellm") -> list[str]:
    """`llama_cpp` or `ctypes` imported anywhere but engine/."""
    return sorted({f"{i.source}:{i.line} -> {i.target}" for i in imports
                   if i.target.split(".")[0] in NATIVE and unit_of(i.source, package) != "engine"})


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of units that import each other, directly or around a loop (Tarjan's components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(set(graph) | {n for targets in graph.values() for n in targets}):
        if node not in index:
            connect(node)
    return found


def io_reached_from(unit: str, imports: list[Import], package: str = "homellm") -> list[str]:
    """I/O modules that the unit's modules import, themselves or through modules of ours they import."""
    by_module: dict[str, set[str]] = defaultdict(set)
    modules = {i.source for i in imports}
    for item in imports:
        by_module[item.source].add(item.target)
    seen: set[str] = set()
    reached: set[str] = set()
    todo = [m for m in modules if unit_of(m, package) == unit]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for target in by_module.get(module, ()):
            if target.split(".")[0] in IO_MODULES:
                reached.add(f"{module} -> {target}")
            elif target in modules:
                todo.append(target)
    return sorted(reached)
