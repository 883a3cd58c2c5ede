"""`homellm cost` as a user runs it, and GET /homellm/cost."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
from conftest import HOMELLM, ServerProcess, generation_timeout


def homellm(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOMELLM_HOME": str(tmp_path / "home")}
    return subprocess.run([HOMELLM, *args], capture_output=True, text=True, timeout=generation_timeout(0), env=env)


def test_done_when_450_w_is_51_84_a_month(tmp_path: Path):
    result = homellm(tmp_path, "cost", "--watts", "450", "--price", "0.16", "--hours-per-day", "24", "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["electricity_per_month"] == 51.84 and body["total_per_month"] == 51.84
    for key in ("cost_per_million_tokens", "amortisation_per_month", "api_cost_per_month",
                "breakeven_tokens_per_day"):
        assert key in body


def test_tokens_per_day_compare_with_every_api(tmp_path: Path):
    body = json.loads(homellm(tmp_path, "cost", "--watts", "450", "--price", "0.16", "--tokens-per-day",
                              "1000000", "--json").stdout)
    assert len(body["apis"]) >= 6 and all(api["as_of"] and api["source"].startswith("http") for api in body["apis"])
    for api in body["apis"]:
        blended = (api["input_per_million"] + api["output_per_million"]) / 2
        assert api["cost_per_month"] == pytest.approx(30 * blended)
        assert api["breakeven_tokens_per_day"] == pytest.approx(51.84 / 30 / (blended / 1e6))
    assert body["api_cost_per_month"] == min(api["cost_per_month"] for api in body["apis"])


def test_named_api_and_custom_prices(tmp_path: Path):
    named = json.loads(homellm(tmp_path, "cost", "--watts", "300", "--tokens-per-day", "1000000",
                               "--api", "deepseek-flash", "--json").stdout)
    assert named["api_name"] == "deepseek-flash" and len(named["apis"]) == 1
    custom = json.loads(homellm(tmp_path, "cost", "--watts", "300", "--tokens-per-day", "1000000",
                                "--api-price-in", "1", "--api-price-out", "3", "--json").stdout)
    assert custom["api_cost_per_month"] == pytest.approx(60.0)


def test_model_plans_power_and_speed(tmp_path: Path):
    body = json.loads(homellm(tmp_path, "cost", "--model", "llama3.1:8b", "--gpu", "RTX 4090", "--price", "0.2",
                              "--json").stdout)
    assert body["watts"] == 450 and "RTX 4090" in body["watts_source"]
    assert body["tokens_per_second"] > 50 and body["energy_source"].startswith("estimate")
    assert body["joules_per_token"] == pytest.approx(450 / body["tokens_per_second"], rel=1e-3)


def test_the_table_names_the_apis(tmp_path: Path):
    result = homellm(tmp_path, "cost", "--watts", "450", "--tokens-per-day", "500000")
    assert result.returncode == 0 and "51.84" in result.stdout and "BREAK-EVEN" in result.stdout


@pytest.mark.parametrize("args, words", [
    (["--watts", "-450"], ["watts"]),
    (["--watts", "0"], ["watts"]),
    (["--watts", "nan"], ["watts"]),
    (["--watts", "450", "--price", "0"], ["price"]),
    (["--watts", "450", "--price", "nan"], ["price"]),
    (["--watts", "450", "--hours-per-day", "25"], ["25 hours"]),
    (["--watts", "450", "--api", "gpt-6-lunar"], ["gpt-6-lunar", "gpt-6-luna"]),
    (["--model", "llama3.1:9b"], ["llama3.1:9b"]),
    ([], ["--watts"]),
    (["--watts", "450", "--hardware-price", "1000"], ["--years"]),
])
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], words: list[str]):
    result = homellm(tmp_path, "cost", *args)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), result.stderr


def test_api_cost_matches_the_cli(server: ServerProcess):
    body = httpx.get(f"{server.base_url}/homellm/cost", params={"watts": 450, "price": 0.16}, timeout=30).json()
    assert body["electricity_per_month"] == 51.84
    bad = httpx.get(f"{server.base_url}/homellm/cost", params={"watts": -1}, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "watts"
