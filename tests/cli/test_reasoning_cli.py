"""Reasoning models in the terminal: `--reasoning-budget` checked before anything loads, the thinking
printed apart from the answer (dimmed, on stderr), `--think` refused for a model that cannot think."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import HOMELLM, generation_timeout
from ggufs import copy_with_metadata
from reasoning_templates import DEEPSEEK_R1


def homellm_cmd(home: Path, *args: str, input: str | None = None, tokens: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOMELLM_HOME": str(home)}
    return subprocess.run([HOMELLM, *args], input=input, capture_output=True, text=True,
                          timeout=generation_timeout(tokens), env=env)


@pytest.mark.parametrize("command", [["serve"], ["run", "hello"], ["chat"]])
@pytest.mark.parametrize("budget", ["0", str(2**63)])
def test_a_bad_reasoning_budget_is_one_line_naming_the_option(tmp_path: Path, command: list[str],
                                                              budget: str) -> None:
    result = homellm_cmd(tmp_path, *command, "--reasoning-budget", budget, input="/bye\n")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "--reasoning-budget" in result.stderr and "Traceback" not in result.stderr


def test_think_on_a_model_that_cannot_think_is_refused(tmp_path: Path) -> None:
    result = homellm_cmd(tmp_path, "run", "--think", "--max-tokens", "4", "hello", tokens=4)
    assert result.returncode == 1
    assert "does not support thinking" in result.stderr and "--think" in result.stderr


def test_run_prints_the_thinking_on_stderr_and_the_answer_on_stdout(tmp_path: Path, builtin_path: Path) -> None:
    # The DeepSeek-R1-style template opens the thought in the prompt: all ten tokens are thinking.
    model = copy_with_metadata(builtin_path, tmp_path / "r1.gguf", {"tokenizer.chat_template": DEEPSEEK_R1})
    result = homellm_cmd(tmp_path, "run", str(model), "Hi", "--temperature", "0", "--max-tokens", "10", tokens=10)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""  # no answer yet
    thought = result.stderr.split("thinking… ", 1)[1].split("[stopped at 10 tokens")[0].strip()
    assert len(thought) > 5 and "<think>" not in thought


def test_a_split_model_serves_with_the_same_reasoning_budget() -> None:
    from homellm.rpc.split import split_process_args

    args = split_process_args("m", None, None, 1, 8, "5m", 1, None, reasoning_budget=9)
    assert args[args.index("--reasoning-budget") + 1] == "9"
    assert "--reasoning-budget" not in split_process_args("m", None, None, 1, 8, "5m", 1, None)
