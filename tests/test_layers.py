"""The code keeps DESIGN.md's layers: imports point down, no package loop, llama.cpp only in engine/."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from layering import (
    LAYERS,
    cycles,
    engine_imports_past_the_scheduler,
    io_reached_from,
    native_outside_engine,
    read_imports,
    unit_graph,
    units_in,
    upward_imports,
)

import homellm

PACKAGE = Path(homellm.__file__).parent


@pytest.fixture(scope="module")
def imports():
    return read_imports(PACKAGE)


def test_every_package_and_root_module_has_a_layer():
    assert units_in(PACKAGE) - set(LAYERS) == set(), "add the new unit to LAYERS (and DESIGN.md's table)"


def test_no_package_imports_a_higher_layer(imports):
    assert upward_imports(imports, LAYERS) == []


def test_no_import_loop_between_packages(imports):
    assert cycles(unit_graph(imports, units_in(PACKAGE))) == []


def test_edges_and_services_reach_the_engine_through_the_scheduler(imports):
    assert engine_imports_past_the_scheduler(imports) == []


def test_only_the_engine_touches_llama_cpp_or_ctypes(imports):
    assert native_outside_engine(imports) == []


def test_the_planner_imports_nothing_that_does_io(imports):
    assert io_reached_from("planner", imports) == []


def test_importing_the_planner_loads_no_io_module():
    # The static check above, confirmed by what a fresh interpreter actually loads.
    code = ("import sys, pkgutil, importlib, homellm.planner as p\n"
            "for m in pkgutil.iter_modules(p.__path__): importlib.import_module('homellm.planner.' + m.name)\n"
            "bad = {'sqlite3', 'socket', 'subprocess', 'numpy', 'llama_cpp', 'ctypes', 'gguf', 'httpx',"
            " 'homellm.models.gguf', 'homellm.hardware.detect'}\n"
            "print(sorted(bad & set(sys.modules)))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert loaded.stdout.strip() == "[]"


def _write(root: Path, files: dict[str, str]) -> Path:
    package = root / "homellm"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return package


def test_the_checks_catch_a_deliberate_violation_of_each_rule(tmp_path):
    package = _write(tmp_path, {
        "__init__.py": "",
        "errors.py": "",
        "engine/__init__.py": "",
        "engine/grammar.py": "from homellm.tools.calling import check_schema\n",
        "tools/__init__.py": "",
        "tools/calling.py": "from ..engine import grammar\nimport ctypes\n",
        "planner/__init__.py": "",
        "planner/plan.py": "def f():\n    from homellm.hardware.detect import probe\n",
        "hardware/__init__.py": "",
        "hardware/detect.py": "import subprocess\n",
        "server/__init__.py": "from homellm.engine.grammar import x\n",
        "models/__init__.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from homellm.engine import y\n",
    })
    found = read_imports(package)
    assert upward_imports(found, LAYERS) == ["homellm.engine.grammar:1 -> homellm.tools.calling",
                                             "homellm.engine.grammar:1 -> homellm.tools.calling.check_schema"]
    assert cycles(unit_graph(found, units_in(package))) == [["engine", "tools"]]
    assert engine_imports_past_the_scheduler(found) == [
        "homellm.server:1 -> homellm.engine.grammar", "homellm.server:1 -> homellm.engine.grammar.x",
        "homellm.tools.calling:1 -> homellm.engine", "homellm.tools.calling:1 -> homellm.engine.grammar"]
    assert native_outside_engine(found) == ["homellm.tools.calling:2 -> ctypes"]
    assert io_reached_from("planner", found) == ["homellm.hardware.detect -> subprocess"]
    # An import that only type checkers see is no dependency: models stays clean.
    assert [i.target for i in found if i.source == "homellm.models"] == ["typing", "typing.TYPE_CHECKING"]
