"""`homellm bench` on the built-in model: measured beside predicted, kept, and used by later plans."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
from conftest import HOMELLM, ServerProcess

QUICK = ["--depths", "0,128", "--n-prompt", "64", "--n-gen", "16", "--repeat", "2"]


def homellm(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOMELLM_HOME": str(home)}
    return subprocess.run([HOMELLM, *args], capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def bench_plot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the `benched` run draws its plot."""
    return tmp_path_factory.mktemp("bench-plot") / "bench.png"


@pytest.fixture(scope="module")
def benched(tmp_path_factory: pytest.TempPathFactory, bench_plot: Path) -> tuple[Path, dict]:
    """One quick bench in a fresh home: the home and the JSON it printed, beside the plot it drew."""
    home = tmp_path_factory.mktemp("bench-home")
    result = homellm(home, "bench", *QUICK, "--json", "--plot", str(bench_plot))
    assert result.returncode == 0, result.stderr
    return home, json.loads(result.stdout)


def test_bench_measures_every_depth_beside_the_prediction(benched: tuple[Path, dict]):
    _, body = benched
    assert [d["depth"] for d in body["depths"]] == [0, 128]
    for depth in body["depths"]:
        assert depth["prefill_tps"] > 0 and depth["decode_tps"] > 0 and depth["predicted_decode_tps"] > 0
        low, high = depth["decode_range"]
        assert low <= depth["decode_tps"] <= high
    assert body["model"] == "smollm2:135m" and body["load_seconds"] > 0 and body["peak_rss_bytes"] > 90_000_000
    first = body["depths"][0]
    assert body["measured_efficiency"] == pytest.approx(
        body["planned_efficiency"] * first["decode_tps"] / first["predicted_decode_tps"], rel=1e-3)


def test_later_plans_use_the_measured_efficiency(benched: tuple[Path, dict]):
    home, body = benched
    planned = json.loads(homellm(home, "plan", "smollm2:135m", "--json").stdout)
    assert planned["efficiency_source"] == "measured"
    host = planned["hardware"][-1]
    assert host["efficiency"] == pytest.approx(body["measured_efficiency"]) and host["efficiency_source"] == "measured"


def test_history_lists_the_run(benched: tuple[Path, dict]):
    home, body = benched
    rows = json.loads(homellm(home, "bench", "--history", "--json").stdout)
    assert rows[0]["created"] == body["created"] and rows[0]["machine_fingerprint"] == body["machine_fingerprint"]


def test_a_fresh_home_plans_with_published_efficiencies(tmp_path: Path):
    planned = json.loads(homellm(tmp_path, "plan", "smollm2:135m", "--json").stdout)
    assert planned["efficiency_source"] == "published"


@pytest.mark.parametrize("args, words", [(["--depths", "0,a"], ["depths"]), (["--depths", "-5"], ["depths"]),
                                         (["--repeat", "0"], ["repeat"]), (["--n-gen", "0"], ["n-gen"]),
                                         (["ghost:1b"], ["ghost:1b"])])
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], words: list[str]):
    result = homellm(tmp_path, "bench", *args)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), result.stderr


def test_plot_is_a_png(benched: tuple[Path, dict], bench_plot: Path):
    # Drawn by the same run that printed the JSON: a second bench only for the plot took 3 s.
    assert bench_plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and bench_plot.stat().st_size > 10_000


def test_plot_must_be_a_png(tmp_path: Path):
    result = homellm(tmp_path / "home", "bench", "--plot", str(tmp_path / "bench.jpg"))
    assert result.returncode == 1 and "not a .png" in result.stderr and "Traceback" not in result.stderr


def test_api_bench_lists_the_runs(benched: tuple[Path, dict]):
    home, body = benched
    server = ServerProcess([], home).wait_ready()
    try:
        rows = httpx.get(f"{server.base_url}/homellm/bench", timeout=30).json()
    finally:
        server.stop()
    assert rows[0]["created"] == body["created"] and rows[0]["depths"][0]["depth"] == 0
