"""`homellm plan MODEL --worker NAME:GB:BW ...` as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import HOMELLM, generation_timeout

THREE = ["--worker", "gpu1:24:936", "--worker", "gpu2:24:936", "--worker", "box:64:60"]


def homellm(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOMELLM_HOME": str(tmp_path / "home")}
    return subprocess.run([HOMELLM, *args], capture_output=True, text=True, timeout=generation_timeout(0), env=env)


def test_split_json_places_every_layer_over_the_machines(tmp_path: Path):
    result = homellm(tmp_path, "plan", "llama3.1:70b", "--quant", "Q4_K_M", "--ctx", "32768", *THREE, "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["fits"] and body["quant"] == "Q4_K_M" and body["ctx"] == 32768
    assert [m["name"] for m in body["machines"]] == ["gpu1", "gpu2", "box"]
    assert sum(m["layers"] for m in body["machines"]) == 80  # llama3.1:70b has 80 layers
    assert [c["gbit"] for c in body["link_costs"]] == [1.0, 10.0]


def test_split_table_shows_machines_link_cost_and_what_would_fit(tmp_path: Path):
    result = homellm(tmp_path, "plan", "llama3.1:70b", "--quant", "Q8_0", "--ctx", "8192",
                     "--worker", "gpu1:24:936", "--worker", "gpu2:24:936", "--link", "10")
    assert result.returncode == 0, result.stderr
    for words in ("MACHINE", "gpu1", "gpu2", "short", "does not fit", "10 Gbit/s", "would fit with", "--quant"):
        assert words in result.stdout, words


@pytest.mark.parametrize("args, words", [
    (["--worker", "gpu:24"], ["NAME:GB:BW"]),
    (["--worker", "gpu:abc:10"], ["abc"]),
    (["--worker", "gpu:-1:10"], ["-1"]),
    (["--worker", "a:24:936", "--worker", "a:64:60"], ["twice"]),
    (["--worker", "a:24:936", "--link", "0"], ["Gbit/s"]),
    (["--worker", "a:24:936", "--gpu", "RTX 4090"], ["--gpu"]),
    (["--link", "10"], ["--worker"]),
])
def test_bad_workers_are_one_line(tmp_path: Path, args: list[str], words: list[str]):
    result = homellm(tmp_path, "plan", "llama3.1:70b", *args)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), result.stderr
