"""`homellm run --draft MODEL`: a draft model drafting in the terminal, and one that cannot refused in a line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import HOMELLM, generation_timeout
from ggufs import write_tiny_dense


def homellm_run(home: Path, *args: str, tokens: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOMELLM_HOME": str(home)}
    return subprocess.run([HOMELLM, "run", *args], capture_output=True, text=True,
                          timeout=generation_timeout(tokens, starts=2), env=env)


def test_run_with_a_draft_model_answers(tmp_path: Path, builtin_path: Path) -> None:
    result = homellm_run(tmp_path, "--draft", str(builtin_path), "--max-tokens", "12", "--temperature", "0",
                         "Name a colour.", tokens=12)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_a_draft_with_another_vocabulary_is_a_one_line_error_at_load(tmp_path: Path) -> None:
    swapped = write_tiny_dense(tmp_path / "swapped.gguf", swapped_tokens=True)
    result = homellm_run(tmp_path, "--ctx", "1024", "--draft", str(swapped), "--max-tokens", "4", "hello", tokens=4)
    assert result.returncode == 1
    assert "swapped cannot draft for smollm2:135m: token 100 is" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
