"""`serve --spec ngram` behind the OpenAI API: the same answer, drafts counted in /metrics,
/homellm/ps and /api/ps; bad values refused before the server starts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
from conftest import HOMELLM, ServerProcess, free_port, generation_timeout

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
