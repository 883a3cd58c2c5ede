"""`homellm hw` and `homellm plan` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import HOMELLM, free_port, generation_timeout


def homellm(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOMELLM_HOME": str(tmp_path / "home")}
    return subprocess.run([HOMELLM, *args], capture_output=True, text=True, timeout=generation_timeout(0), env=env)


def test_done_when_deepseek_on_a_4090_with_768_gb(tmp_path: Path):
    result = homellm(tmp_path, "plan", "deepseek-r1:671b", "--quant", "Q4_K_M", "--gpu", "RTX 4090",
                     "--ram", "768", "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert abs(body["weights_bytes"] / 1e9 - 404) / 404 < 0.05
    assert body["fits"] and body["placement"]["gpu_layers"] == 61 and body["placement"]["cpu_moe_layers"] > 0
    for key in ("kv_cache_bytes", "total_bytes", "decode_tps", "prefill_tps", "devices", "speed_by_depth",
                "warnings", "efficiency_source"):
        assert key in body


def test_plan_table_explains_a_model_that_does_not_fit(tmp_path: Path):
    result = homellm(tmp_path, "plan", "deepseek-r1:671b", "--quant", "Q4_K_M", "--gpu", "RTX 4090", "--ram", "64")
    assert result.returncode == 0, result.stderr
    assert "does not fit" in result.stdout and "GB of RAM" in result.stdout and "RTX 4090" in result.stdout


def test_plan_of_a_gguf_file_uses_its_own_tensors(tmp_path: Path, tiny_moe_path: Path):
    result = homellm(tmp_path, "plan", str(tiny_moe_path), "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["quant"] == "Q8_0" and body["weights_bytes"] < tiny_moe_path.stat().st_size


def test_plan_without_quant_picks_one(tmp_path: Path):
    body = json.loads(homellm(tmp_path, "plan", "llama3.1:8b", "--gpu", "RTX 4090", "--ram", "32", "--json").stdout)
    assert body["quant"] == "Q8_0" and body["fits"]


def test_hw_json_names_the_host_and_the_build(tmp_path: Path):
    body = json.loads(homellm(tmp_path, "hw", "--json").stdout)
    assert body["devices"][-1]["kind"] == "cpu" and "CPU" in body["llama_cpp"]["backends"]
    assert body["ram_total_bytes"] > 0


def test_hw_list_shows_the_device_database(tmp_path: Path):
    rows = json.loads(homellm(tmp_path, "hw", "--list", "--json").stdout)
    assert len(rows) >= 40 and {"RTX 4090", "RX 7900 XTX", "M2 Ultra"} <= {r["name"] for r in rows}


@pytest.mark.parametrize("args, words", [
    (["plan", "llama3.1:8b", "--gpu", "RTX 9999"], ["RTX 9999"]),
    (["plan", "llama3.1:9b"], ["llama3.1:9b", "llama3.1:8b"]),
    (["plan", "llama3.1:8b", "--ram", "-4"], ["RAM"]),
    (["plan", "llama3.1:8b", "--ctx", "0"], ["context"]),
    (["plan", "llama3.1:8b", "--quant", "Q4_K_X"], ["Q4_K_X"]),
    (["plan", "llama3.1:8b", "--kv-type", "q3_k"], ["KV cache type"]),
])
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], words: list[str]):
    result = homellm(tmp_path, *args)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), result.stderr


def test_run_refuses_a_context_that_does_not_fit_with_what_would(tmp_path: Path):
    result = homellm(tmp_path, "run", "hi", "--ctx", "9000000")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "does not fit this machine" in line and "--ctx" in line and "homellm plan smollm2:135m" in line


def test_serve_refuses_a_model_that_does_not_fit_before_listening(tmp_path: Path):
    result = homellm(tmp_path, "serve", "--port", str(free_port()), "--ctx", "9000000")
    assert result.returncode == 1 and "does not fit" in result.stderr


def test_a_model_trained_on_a_short_context_gets_that_context(tmp_path: Path, tiny_dense_path: Path):
    result = homellm(tmp_path, "run", str(tiny_dense_path), "Hello", "--max-tokens", "2")
    assert result.returncode == 0, result.stderr
    assert "training context overflow" not in result.stderr, "ctx defaults to the model's 2048, not 4096"


def test_plan_puts_qwen3_30b_experts_in_ram_on_a_3060(tmp_path: Path):
    result = homellm(tmp_path, "plan", "qwen3:30b-a3b", "--quant", "Q4_K_M", "--gpu", "RTX 3060 12GB", "--ram", "32", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["fits"] and data["placement"]["gpu_layers"] == 48 and data["placement"]["cpu_moe_layers"] > 0


def test_plan_with_a_given_n_cpu_moe_and_its_refusal_for_a_dense_model(tmp_path: Path):
    given = homellm(tmp_path, "plan", "qwen3:30b-a3b", "--quant", "Q4_K_M", "--gpu", "RTX 3060 12GB", "--ram", "32",
                        "--n-cpu-moe", "30", "--json")
    assert given.returncode == 0 and json.loads(given.stdout)["placement"]["cpu_moe_layers"] == 30
    dense = homellm(tmp_path, "plan", "llama3.1:8b", "--gpu", "RTX 3060 12GB", "--n-cpu-moe", "3")
    assert dense.returncode == 1 and "no experts to keep in RAM" in dense.stderr


def test_plan_suggests_a_stored_draft_model_that_holds_the_context(tmp_path: Path, tiny_dense_path: Path):
    # The tiny model shares the built-in vocabulary and was trained on 2,048 tokens of context.
    assert homellm(tmp_path, "import", str(tiny_dense_path), "--name", "tiny:draft").returncode == 0
    result = homellm(tmp_path, "plan", "smollm2:135m", "--ctx", "2048", "--json")
    assert result.returncode == 0, result.stderr
    [draft] = json.loads(result.stdout)["drafts"]
    assert draft["model"] == "tiny:draft" and draft["decode_tps"] > 0
    assert 0 < draft["break_even_acceptance"] < draft["at_acceptance"] and draft["gain"] > 1
    table = homellm(tmp_path, "plan", "smollm2:135m", "--ctx", "2048").stdout
    assert "draft model tiny:draft" in table and "serve --draft tiny:draft" in table
    longer = json.loads(homellm(tmp_path, "plan", "smollm2:135m", "--ctx", "4096", "--json").stdout)
    assert longer["drafts"] == []
