"""`serve --spec ngram` and `serve --draft MODEL` behind the OpenAI API: drafts counted in /metrics,
/homellm/ps and /api/ps; bad values and unfit drafts refused before the server starts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import HOMELLM, ServerProcess, free_port, generation_timeout
from ggufs import copy_with_metadata, write_tiny_dense

from homellm.models.minilm import EMBEDDING_NAME

TEXT = ("Tenants must give written notice at least thirty days before the end of the month in which they "
        "intend to leave. The deposit is returned within fourteen days of the keys being handed back.")


def test_a_speculating_server_answers_and_reports_its_drafts(tmp_path: Path):
    server = ServerProcess(["--ctx", "1024", "--parallel", "2", "--spec", "ngram"], tmp_path).wait_ready()
    try:
        client = server.client(timeout=generation_timeout(120))
        answer = client.chat.completions.create(
            model="smollm2:135m", max_tokens=120, temperature=0,
            messages=[{"role": "user", "content": f"Repeat this text word for word:\n\n{TEXT}"}])
        assert "thirty days" in answer.choices[0].message.content
        [model] = httpx.get(f"{server.base_url}/homellm/ps").json()["models"]
        spec = model["speculation"]
        assert spec["mode"] == "ngram" and spec["drafted"] > 0 and 0 < spec["accepted"] <= spec["drafted"]
        assert spec["acceptance"] == pytest.approx(spec["accepted"] / spec["drafted"], abs=1e-3)
        [ollama] = httpx.get(f"{server.base_url}/api/ps").json()["models"]
        assert ollama["speculation"]["drafted"] == spec["drafted"]
        metrics = httpx.get(f"{server.base_url}/metrics").text
        drafted = next(line for line in metrics.splitlines() if line.startswith("homellm_draft_tokens_total{"))
        assert float(drafted.rsplit(" ", 1)[1]) == spec["drafted"]
        assert "homellm_draft_accepted_tokens_total{" in metrics
    finally:
        server.stop()


def _serve_fails(home: Path, *args: str) -> str:
    run = subprocess.run([HOMELLM, "serve", "--port", str(free_port()), *args], capture_output=True, text=True,
                         timeout=120, env={"HOMELLM_HOME": str(home), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) <= 2  # the error and its hint
    return run.stderr


def test_an_unknown_speculation_mode_is_a_one_line_error(tmp_path: Path):
    assert "'medusa' is not a speculation mode" in _serve_fails(tmp_path, "--spec", "medusa")


def test_speculation_for_an_embedding_model_is_refused(docs_home: Path):
    stderr = _serve_fails(docs_home, "--model", EMBEDDING_NAME, "--spec", "ngram")
    assert "embedding model" in stderr and "--spec" in stderr


def test_a_server_with_a_draft_model_says_which_drafts(tmp_path: Path, builtin_path: Path):
    # The built-in file drafts for the built-in model: the same size is allowed, only larger is not.
    server = ServerProcess(["--ctx", "1024", "--draft", str(builtin_path)], tmp_path).wait_ready()
    try:
        client = server.client(timeout=generation_timeout(24))
        answer = client.chat.completions.create(
            model="smollm2:135m", max_tokens=24, temperature=0,
            messages=[{"role": "user", "content": "Write a story about a lighthouse."}])
        assert answer.usage.completion_tokens > 0
        [model] = httpx.get(f"{server.base_url}/homellm/ps").json()["models"]
        spec = model["speculation"]
        assert spec["mode"] == "draft" and spec["draft"] == builtin_path.stem
        assert 0 <= spec["accepted"] <= spec["drafted"]
        [ollama] = httpx.get(f"{server.base_url}/api/ps").json()["models"]
        assert ollama["speculation"]["draft"] == builtin_path.stem
    finally:
        server.stop()


def test_ngram_speculation_and_a_draft_model_together_are_refused(tmp_path: Path, builtin_path: Path):
    stderr = _serve_fails(tmp_path, "--spec", "ngram", "--draft", str(builtin_path))
    assert "--spec ngram and --draft" in stderr


@pytest.fixture(scope="module")
def unfit_drafts(builtin_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("drafts")
    return {
        "tiny": write_tiny_dense(folder / "tiny.gguf"),
        "short": copy_with_metadata(builtin_path, folder / "short.gguf", {"llama.context_length": np.uint32(512)}),
        "other-pre": copy_with_metadata(builtin_path, folder / "other-pre.gguf", {"tokenizer.ggml.pre": "llama-bpe"}),
    }


@pytest.mark.parametrize(("target", "draft", "says"), [
    ("tiny", "builtin", "cannot draft for tiny: it is larger"),
    ("builtin", "short", "cannot draft for smollm2:135m: it was trained on 512 tokens of context"),
    ("builtin", "other-pre", "cannot draft for smollm2:135m: their tokenizer.ggml.pre differ"),
    ("builtin", "no-such-model", "no-such-model"),
])
def test_an_unfit_draft_is_refused_before_the_server_starts(tmp_path: Path, builtin_path: Path, unfit_drafts,
                                                            target: str, draft: str, says: str):
    def path(name: str) -> str:
        return str(builtin_path if name == "builtin" else unfit_drafts.get(name, name))

    model = ["--model", path(target)] if target != "builtin" else []  # else the built-in model by its name
    stderr = _serve_fails(tmp_path, "--ctx", "1024", *model, "--draft", path(draft))
    assert says in stderr, stderr


def test_an_embedding_model_cannot_draft(docs_home: Path):
    stderr = _serve_fails(docs_home, "--draft", EMBEDDING_NAME)
    assert "cannot draft" in stderr and "embedding model" in stderr
