"""Tables as `plan` and `cost` print them: whole into a pipe, wrapped (never cut) in a narrow terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import HOMELLM, generation_timeout

PLAN = ["plan", "deepseek-r1:671b", "--quant", "Q4_K_M", "--gpu", "RTX 4090", "--ram", "768",
        "--memory", "DDR5-4800 12-channel"]
COST = ["cost", "--watts", "450", "--price", "0.16", "--tokens-per-day", "1000000"]
PLAN_HEADINGS = ["DEVICE", "LAYERS", "WEIGHTS", "KV CACHE", "COMPUTE+OVERHEAD", "TOTAL", "AVAILABLE"]
COST_HEADINGS = ["API", "IN $/M", "OUT $/M", "API A MONTH", "BREAK-EVEN TOKENS/DAY", "PRICE AS OF"]
# Variables that would decide for Rich whether stdout is a terminal, or how wide it is.
TERMINAL_VARIABLES = ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR", "TERM")
ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def piped(tmp_path: Path, *args: str, columns: str = "80") -> str:
    """stdout of homellm into a pipe, with COLUMNS set as a shell may export it."""
    env = {**_clean_env(tmp_path), "COLUMNS": columns}
    result = subprocess.run([HOMELLM, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=generation_timeout(0), env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def in_terminal(tmp_path: Path, columns: int, *args: str) -> str:
    """What homellm prints on a pseudo-terminal `columns` wide, without its escape codes."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    with open(tmp_path / "stderr", "wb") as stderr:
        process = subprocess.Popen([HOMELLM, *args], stdin=subprocess.DEVNULL, stdout=follower, stderr=stderr,
                                   env={**_clean_env(tmp_path), "TERM": "xterm"})
    os.close(follower)
    chunks, deadline = [], time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if not select.select([leader], [], [], 1)[0]:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
    assert process.wait(timeout=30) == 0, (tmp_path / "stderr").read_text()
    return ESCAPE.sub("", b"".join(chunks).decode()).replace("\r\n", "\n")


def test_piped_plan_prints_whole_headings_and_names(tmp_path: Path):
    stdout = piped(tmp_path, *PLAN)
    heading = next(line for line in stdout.splitlines() if "DEVICE" in line)
    assert _cells(heading) == PLAN_HEADINGS
    rows = [_cells(line) for line in stdout.splitlines() if line.startswith(" DDR5")]
    assert rows and rows[0][0] == "DDR5-4800 12-channel" and rows[0][-1] == "ok"
    assert "…" not in stdout


def test_piped_cost_prints_whole_headings_and_api_names(tmp_path: Path):
    stdout = piped(tmp_path, *COST)
    heading = next(line for line in stdout.splitlines() if "BREAK-EVEN" in line)
    assert _cells(heading) == COST_HEADINGS
    assert "gemini-3.1-pro-preview" in stdout and "…" not in stdout


def test_piped_output_is_the_same_whatever_columns_says(tmp_path: Path):
    assert piped(tmp_path, *COST, columns="40") == piped(tmp_path, *COST, columns="300")


@pytest.mark.parametrize("args, heading", [(PLAN, "DEVICE"), (COST, "API")])
def test_a_narrow_terminal_wraps_tables_without_cutting_a_word(tmp_path: Path, args: list[str], heading: str):
    whole = piped(tmp_path, *args)
    narrow = in_terminal(tmp_path, 60, *args)
    assert "…" not in narrow
    assert Counter("".join(narrow.split())) == Counter("".join(whole.split()))  # every character is still there
    table = _table_of(narrow, heading)
    assert len(table) > len(_table_of(whole, heading))  # wrapped onto more lines
    assert all(len(line) <= 60 for line in table), table


def test_a_wide_terminal_prints_the_table_as_a_pipe_does(tmp_path: Path):
    assert _table_of(in_terminal(tmp_path, 200, *PLAN), "DEVICE") == _table_of(piped(tmp_path, *PLAN), "DEVICE")


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in TERMINAL_VARIABLES}
    return {**env, "HOMELLM_HOME": str(tmp_path / "home")}


def _cells(line: str) -> list[str]:
    """A table line's cells: runs of text separated by two spaces or more."""
    return re.split(r"\s{2,}", line.strip())


def _table_of(stdout: str, heading: str) -> list[str]:
    """The lines of the table whose first heading is `heading` (a table's lines start with a space)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith(heading))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith(" "))
    return [line.rstrip() for line in lines[start:end]]
