"""`homellm ls`, `show`, `import`, `pull`, `rm`, `cp` as a user runs them, in a fresh HOMELLM_HOME each."""

from __future__ import annotations

import json
import os
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import HOMELLM, generation_timeout
from hubserver import FakeHub

Homellm = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def homellm(tmp_path: Path) -> Homellm:
    """Runs the CLI with its own empty store."""
    env = {**os.environ, "HOMELLM_HOME": str(tmp_path / "home"), "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_TOKEN", None)

    def run(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([HOMELLM, *args], capture_output=True, text=True, timeout=generation_timeout(16),
                              env={**env, **(extra_env or {})})
    return run


def names(homellm: Homellm) -> list[str]:
    result = homellm("ls", "--json")
    assert result.returncode == 0, result.stderr
    return [m["name"] for m in json.loads(result.stdout)]


def assert_refused(result: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 1 with one line on stderr naming the problem, never a traceback."""
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_ls_json_in_a_fresh_home_lists_the_builtin_model(homellm: Homellm, builtin_path: Path):
    result = homellm("ls", "--json")
    assert result.returncode == 0, result.stderr
    (model,) = json.loads(result.stdout)
    assert model["name"] == "smollm2:135m" and model["path"] == str(builtin_path)
    assert model["size"] == builtin_path.stat().st_size


def test_ls_table_shows_name_size_params_quant(homellm: Homellm):
    result = homellm("ls")
    assert result.returncode == 0
    row = next(line for line in result.stdout.splitlines() if "smollm2:135m" in line)
    assert "98 MB" in row and "134.5M" in row and "Q4_1" in row and "llama" in row


def test_show_json_of_the_builtin_model(homellm: Homellm):
    result = homellm("show", "smollm2:135m", "--json")
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["architecture"] == "llama" and facts["block_count"] == 30
    assert round(facts["parameters"] / 1e6, 1) == 134.5
    for key in ("context_length", "embedding_length", "head_count", "head_count_kv", "file_type",
                "expert_count", "expert_used_count", "chat_template"):
        assert key in facts
    assert facts["chat_template"] is True and facts["expert_count"] is None


def test_show_table_names_the_layers(homellm: Homellm):
    result = homellm("show", "smollm2")
    assert result.returncode == 0
    assert "block_count" in result.stdout and "30" in result.stdout and "quant mix" in result.stdout


def test_show_says_which_sampling_a_model_gets_and_from_where(homellm: Homellm, greedy_model_path: Path):
    builtin = json.loads(homellm("show", "smollm2:135m", "--json").stdout)["sampling"]
    assert builtin["temperature"] == {"value": 0.8, "source": "homellm"}
    assert builtin["repeat_penalty"] == {"value": 1.1, "source": "homellm"}
    chosen = json.loads(homellm("show", str(greedy_model_path), "--json").stdout)["sampling"]
    assert chosen["temperature"] == {"value": 0.0, "source": "model file"}
    assert chosen["top_k"] == {"value": 20, "source": "model file"} and chosen["min_p"]["source"] == "homellm"
    table = homellm("show", str(greedy_model_path)).stdout
    line = next(row for row in table.splitlines() if row.strip().startswith("sampling"))
    assert "temperature 0 (model file)" in line and "top_k 20 (model file)" in line and "top_p 0.9," in line
    assert "repeat_penalty 1 (model file), over the last 64 tokens" in line  # the recipe names none: none


def test_import_then_show_and_serve_names(homellm: Homellm, tiny_moe_path: Path):
    result = homellm("import", str(tiny_moe_path), "--name", "tiny:moe")
    assert result.returncode == 0, result.stderr
    assert "stored tiny:moe" in result.stderr
    facts = json.loads(homellm("show", "tiny:moe", "--json").stdout)
    assert (facts["expert_count"], facts["expert_used_count"], facts["architecture"]) == (4, 2, "qwen3moe")
    assert names(homellm) == ["smollm2:135m", "tiny:moe"]


def test_import_names_the_model_after_its_file(homellm: Homellm, tiny_dense_path: Path):
    assert homellm("import", str(tiny_dense_path)).returncode == 0
    assert "tiny-dense:latest" in names(homellm)


def test_run_answers_with_a_stored_model(homellm: Homellm, tiny_dense_path: Path):
    homellm("import", str(tiny_dense_path), "--name", "tiny:dense")
    result = homellm("run", "tiny:dense", "Hello", "--max-tokens", "4", "--temperature", "0", "--ctx", "512")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) > 1, "the random model streamed something before the final newline"


def test_cp_and_rm(homellm: Homellm, tiny_dense_path: Path):
    homellm("import", str(tiny_dense_path), "--name", "a:one")
    assert homellm("cp", "a:one", "b:two").returncode == 0
    assert names(homellm) == ["a:one", "b:two", "smollm2:135m"]
    assert homellm("rm", "a:one", "b:two").returncode == 0
    assert names(homellm) == ["smollm2:135m"]


def test_pull_from_the_hub(homellm: Homellm, tiny_dense_path: Path):
    with FakeHub() as hub:
        hub.add_repo("tester/Tiny-GGUF", {"Tiny-Q8_0.gguf": tiny_dense_path})
        result = homellm("pull", "hf.co/tester/Tiny-GGUF:Q8_0", extra_env=hub.env())
        assert result.returncode == 0, result.stderr
        assert "pulled tiny:q8_0" in result.stderr
        again = homellm("pull", "hf.co/tester/Tiny-GGUF:Q8_0", extra_env=hub.env())
        assert "already up to date" in again.stderr
        missing = homellm("pull", "hf.co/nobody/nothing:Q8_0", extra_env=hub.env())
    assert_refused(missing, "nobody/nothing")
    assert names(homellm) == ["smollm2:135m", "tiny:q8_0"]


# Bad input: one line, exit 1, and the store as it was.

@pytest.mark.parametrize("name", ["../evil", "a/b", "x" * 300, "..", "a:b:c"])
def test_import_with_a_bad_name_is_refused(homellm: Homellm, tiny_dense_path: Path, name: str):
    assert_refused(homellm("import", str(tiny_dense_path), "--name", name), "name")
    assert names(homellm) == ["smollm2:135m"]


def test_show_of_a_path_like_name_is_refused(homellm: Homellm):
    assert_refused(homellm("show", "../../etc/passwd"), "not a valid model name")


def test_show_of_an_unknown_model_is_refused(homellm: Homellm):
    assert_refused(homellm("show", "mistral:7b"), "mistral:7b")


def test_import_of_a_non_gguf_is_refused(homellm: Homellm, tmp_path: Path):
    text = tmp_path / "notes.txt"
    text.write_text("hello there, this is not a model at all\n" * 10)
    assert_refused(homellm("import", str(text)), "not a valid GGUF")
    assert names(homellm) == ["smollm2:135m"]


def test_import_of_a_truncated_gguf_is_refused(homellm: Homellm, tmp_path: Path, tiny_dense_path: Path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_dense_path.read_bytes()[:3_000_000])
    assert_refused(homellm("import", str(cut)), "cut.gguf", "outside the file")
    assert names(homellm) == ["smollm2:135m"]


@pytest.mark.parametrize("header, words", [
    (b"GGUF" + struct.pack("<IQQ", 3, 1 << 60, 0), ("claims", "tensors")),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 40) + b"general", ("past the end",)),
])
def test_import_of_a_hostile_gguf_is_refused(homellm: Homellm, tmp_path: Path, header: bytes, words: tuple[str]):
    path = tmp_path / "hostile.gguf"
    path.write_bytes(header + b"\0" * 64)
    assert_refused(homellm("import", str(path)), *words)
    assert names(homellm) == ["smollm2:135m"]


def test_import_of_a_missing_file_is_refused(homellm: Homellm, tmp_path: Path):
    assert_refused(homellm("import", str(tmp_path / "absent.gguf")), "no file")


def test_duplicate_names_are_refused(homellm: Homellm, tiny_dense_path: Path, tiny_moe_path: Path):
    homellm("import", str(tiny_dense_path), "--name", "same:name")
    assert_refused(homellm("import", str(tiny_moe_path), "--name", "same:name"), "already stored")
    assert_refused(homellm("cp", "smollm2:135m", "same:name"), "already stored")
    facts = json.loads(homellm("show", "same:name", "--json").stdout)
    assert facts["architecture"] == "llama"


def test_removing_the_builtin_model_is_refused(homellm: Homellm):
    assert_refused(homellm("rm", "smollm2:135m"), "built-in")
    assert names(homellm) == ["smollm2:135m"]


def test_removing_an_unknown_model_is_refused(homellm: Homellm):
    assert_refused(homellm("rm", "ghost:1b"), "ghost:1b")


def test_a_bad_pull_reference_is_refused(homellm: Homellm):
    assert_refused(homellm("pull", "not a reference"), "not a Hugging Face model reference")


def test_a_damaged_store_database_is_one_line(homellm: Homellm, tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "store.db").write_bytes(b"this is not sqlite" * 100)
    assert_refused(homellm("ls"), "cannot open the model store", "not a database")


def test_pull_uses_the_token_saved_by_hf_auth_login(homellm: Homellm, tmp_path: Path, tiny_dense_path: Path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "token").write_text("hf_saved")
    with FakeHub() as hub:
        hub.add_repo("tester/Private-GGUF", {"Private-Q8_0.gguf": tiny_dense_path})
        hub.require_token("hf_saved")
        result = homellm("pull", "hf.co/tester/Private-GGUF:Q8_0", extra_env=hub.env())
        gets = [r for r in hub.requests if r.method == "GET" and r.path.endswith(".gguf")]
    assert result.returncode == 0, result.stderr
    assert gets and all(g.headers["authorization"] == "Bearer hf_saved" for g in gets)


def test_import_of_a_file_that_crashes_llama_cpp_is_refused(homellm: Homellm, tmp_path: Path):
    from ggufs import write_tiny_dense

    crasher = write_tiny_dense(tmp_path / "dup.gguf", duplicate_token=True)
    assert_refused(homellm("import", str(crasher)), "llama.cpp crashed reading dup.gguf", "GGML_ASSERT")
    assert names(homellm) == ["smollm2:135m"]
    assert_refused(homellm("run", str(crasher), "Hello"), "llama.cpp crashed reading")
