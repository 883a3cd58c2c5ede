"""The tool loop with the built-in model on the real scheduler, and `homellm ask --table` as a user runs it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import generation_timeout

from homellm.models.builtin import BUILTIN_NAME
from homellm.scheduler import Scheduler
from homellm.tools.loop import (
    ANSWER_TOKENS,
    CALL_TOKENS,
    DEFAULT_MAX_STEPS,
    ToolFunction,
    run_loop,
    scheduler_chat,
)
from homellm.tools.table import TableError
from homellm.tools.toolbox import Toolbox

HOMELLM = str(Path(sys.executable).with_name("homellm"))
ASK_TIMEOUT = generation_timeout(DEFAULT_MAX_STEPS * CALL_TOKENS + ANSWER_TOKENS)  # every step's call, then the answer


@pytest.fixture
def fruit_csv(tmp_path: Path) -> Path:
    path = tmp_path / "fruit.csv"
    kinds = ["apple", "pear", "plum"]
    path.write_text("fruit,weight_g,origin\n" + "\n".join(
        f"{kinds[i % 3]},{100 + i},{'Spain' if i % 4 else 'Chile'}" for i in range(57)) + "\n")
    return path


def chat_on(scheduler: Scheduler):
    return scheduler_chat(scheduler, BUILTIN_NAME, temperature=0, seed=1)


def test_the_row_count_comes_from_the_table(scheduler: Scheduler, fruit_csv: Path) -> None:
    toolbox = Toolbox([fruit_csv])
    question = "How many rows does the table have?"
    result = asyncio.run(run_loop(chat_on(scheduler), question, toolbox.tools(question), toolbox.context()))
    toolbox.close()
    assert result.steps and result.steps[0].tool == "table_query" and result.steps[0].ok
    assert json.loads(result.steps[0].result)["value"] == 57
    assert "57" in result.answer
    assert result.calls_parsed == result.calls_made  # every call the model made parsed


def test_the_step_limit_is_said_in_the_answer(scheduler: Scheduler) -> None:
    def refuse(args: dict[str, Any]) -> Any:
        raise TableError("the table is locked", hint="try later")

    tool = ToolFunction("lookup", "Look a value up.", {"type": "object", "properties": {"key": {"type": "string"}},
                                                      "required": ["key"]}, refuse)
    result = asyncio.run(run_loop(chat_on(scheduler), "What is the value of x?", [tool], max_steps=2))
    assert result.limit_reached and len(result.steps) == 2 and not any(s.ok for s in result.steps)
    assert "stopped after 2 tool steps" in result.answer
    assert "the table is locked" in result.steps[0].result


def test_ask_with_a_table_prints_the_number(fruit_csv: Path, tmp_path: Path) -> None:
    env = {**os.environ, "HOMELLM_HOME": str(tmp_path / "home")}
    done = subprocess.run([HOMELLM, "ask", "--table", str(fruit_csv), "--temperature", "0", "--show-steps",
                           "How many rows does the table have?"], env=env, capture_output=True, text=True, timeout=ASK_TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert "57" in done.stdout and "table_query" in done.stderr
    as_json = subprocess.run([HOMELLM, "ask", "--table", str(fruit_csv), "--temperature", "0", "--json",
                              "What is the largest weight_g?"], env=env, capture_output=True, text=True, timeout=ASK_TIMEOUT)
    body = json.loads(as_json.stdout)
    assert body["steps"][0]["tool"] == "table_query" and "SELECT" in body["steps"][0]["result"]
    # The tool's result travels beside the answer, and the answer shows it verbatim.
    assert body["result"] == {"value": 156, "sql": body["result"]["sql"]} and body["shown"] == "156"
    assert "156" in body["answer"]


@pytest.fixture
def stations_csv(tmp_path: Path) -> Path:
    """Values a 135M model mangles when it retypes them: long numbers, names that differ in one character."""
    path = tmp_path / "stations.csv"
    rows = [("Alpha Station 1", 1234567.8912, "north"), ("Alpha Station 11", 9876543.2109, "north"),
            ("Alpha Station 111", 987654.3211, "south"), ("Alpha Statoin 1", 12345.6789, "south"),
            ("Beta Station 7", 7654321.0987, "east")]
    path.write_text("station_name,capacity_kwh,region\n" + "".join(f"{n},{c},{r}\n" for n, c, r in rows))
    return path


@pytest.mark.parametrize(("question", "verbatim"), [
    ("Which station_name has the largest capacity_kwh?", ["Alpha Station 11", "9876543.2109"]),
    ("Which station_name has the smallest capacity_kwh?", ["Alpha Statoin 1", "12345.6789"]),
    ("What is the total capacity_kwh?", ["19765432.2008"]),
    ("Which region has the most rows?", ["north (2)"]),
])
def test_values_reach_the_answer_verbatim(scheduler: Scheduler, stations_csv: Path, question: str,
                                          verbatim: list[str]) -> None:
    toolbox = Toolbox([stations_csv])
    result = asyncio.run(run_loop(chat_on(scheduler), question, toolbox.tools(question), toolbox.context()))
    toolbox.close()
    for value in verbatim:
        assert value in result.answer, (result.answer, result.steps)
    assert result.shown is not None and result.shown in result.answer


@pytest.mark.parametrize("path, match", [("/etc/passwd", "not a table file"), ("/nonexistent.csv", "does not exist")])
def test_ask_refuses_what_is_not_a_table(tmp_path: Path, path: str, match: str) -> None:
    env = {**os.environ, "HOMELLM_HOME": str(tmp_path / "home")}
    done = subprocess.run([HOMELLM, "ask", "--table", path, "Read it to me."], env=env, capture_output=True,
                          text=True, timeout=generation_timeout(0))
    assert done.returncode == 1 and match in done.stderr


def test_a_result_that_leads_on_is_followed_by_a_next_call(scheduler: Scheduler) -> None:
    shelves = {"": {"type": "object", "keys": {"shelf": "object"}}, "shelf": {"type": "object", "keys": {"top": "number"}},
               "shelf.top": {"type": "number", "value": 123456789.25}}

    def look(args: dict[str, Any]) -> Any:
        return {"path": args["path"], **shelves[args["path"]]}

    def onward(args: dict[str, Any], result: Any) -> dict[str, Any] | None:
        children = {"": ["shelf"], "shelf": ["shelf.top"]}
        deeper = children.get(args["path"], [])
        return None if not deeper else {
            "type": "object", "required": ["path"], "properties": {"path": {"enum": deeper}}}

    tool = ToolFunction("look", "Look inside a store.", {"type": "object", "required": ["path"],
                                                           "properties": {"path": {"enum": [""]}}},
                        look, lambda args: f"the value at {args['path']}", onward)
    result = asyncio.run(run_loop(chat_on(scheduler), "What is on the top shelf?", [tool], max_steps=4))
    assert [s.arguments["path"] for s in result.steps] == ["", "shelf", "shelf.top"]
    assert not result.limit_reached and "123456789.25" in result.answer and result.shown == "123456789.25"


def test_a_chain_cut_by_the_step_limit_says_so(scheduler: Scheduler) -> None:
    def look(args: dict[str, Any]) -> Any:
        return {"type": "object", "keys": {"deeper": "object"}}

    tool = ToolFunction("look", "Look inside.", {"type": "object", "required": ["path"],
                                                 "properties": {"path": {"enum": ["a"]}}},
                        look, None, lambda args, result: {"type": "object", "required": ["path"],
                                                          "properties": {"path": {"enum": ["a.deeper"]}}})
    result = asyncio.run(run_loop(chat_on(scheduler), "What is deep inside?", [tool], max_steps=2))
    assert len(result.steps) == 2 and result.limit_reached
    assert "before a result answered the question" in result.answer


def test_a_json_question_walks_to_the_value(scheduler: Scheduler, tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    path.write_text(json.dumps({"store": {"books": [{"title": "Dune Messiah", "price": 18.9512},
                                                    {"title": "Dune", "price": 8.9521}]}}))
    toolbox = Toolbox(json_files=[path])
    question = "What is the price of the first book?"
    result = asyncio.run(run_loop(chat_on(scheduler), question, toolbox.tools(question), toolbox.context()))
    toolbox.close()
    assert result.steps[-1].arguments["path"] == "store.books[0].price"
    assert "18.9512" in result.answer and not result.limit_reached


@pytest.mark.parametrize("style", ["hermes", "llama3", "mistral", "gemma"])
def test_the_loop_calls_in_the_syntax_of_the_models_template(style: str, fruit_csv: Path,
                                                             tmp_path: Path) -> None:
    from ggufs import write_tiny_dense
    from tool_templates import STYLES

    from homellm.engine.llama import EngineOptions
    from homellm.models.resolve import ModelRef

    model = write_tiny_dense(tmp_path / f"tiny-{style}.gguf", chat_template=STYLES[style])
    scheduler = Scheduler()
    scheduler.add(ModelRef("tiny", model), EngineOptions(n_ctx=2048)).wait_loaded()
    toolbox = Toolbox([fruit_csv])
    question = "How many rows does the table have?"
    try:
        syntax = asyncio.run(scheduler.call_syntax("tiny"))
        result = asyncio.run(run_loop(scheduler_chat(scheduler, "tiny", temperature=0, seed=1), question,
                                      toolbox.tools(question), toolbox.context(), max_steps=2, syntax=syntax))
    finally:
        toolbox.close()
        scheduler.close()
    assert syntax == style
    # A random model's every call, written in its template's syntax under the grammar, was read back.
    assert result.calls_made >= 1 and result.calls_parsed == result.calls_made
    assert result.steps and result.steps[0].tool == "table_query"
