"""`serve --kv-type`: a quantized KV cache behind the OpenAI API, reported by /homellm/ps; bad names refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
from conftest import HOMELLM, ServerProcess, free_port, generation_timeout


def test_a_server_with_a_q8_keys_cache_answers_and_reports_it(tmp_path: Path):
    server = ServerProcess(["--ctx", "1024", "--parallel", "2", "--kv-type", "q8_0", "--kv-type-v", "f16"],
                           tmp_path).wait_ready()
    try:
        answer = server.client(timeout=generation_timeout(16)).chat.completions.create(
            model="smollm2:135m", messages=[{"role": "user", "content": "Name the capital of France."}],
            max_tokens=16, temperature=0)
        assert "Paris" in answer.choices[0].message.content
        [model] = httpx.get(f"{server.base_url}/homellm/ps").json()["models"]
        assert (model["kv_type"], model["context"]) == ("q8_0/f16", 1024)
        table = subprocess.run([HOMELLM, "ps", "--port", str(server.port)], capture_output=True, text=True)
        assert "q8_0/f16" in table.stdout
    finally:
        server.stop()


def test_unknown_kv_types_are_one_line_errors_before_the_server_starts(tmp_path: Path):
    for flag, value in (("--kv-type", "q3_k"), ("--kv-type-k", "int8"), ("--kv-type-v", "")):
        run = subprocess.run([HOMELLM, "serve", "--port", str(free_port()), flag, value], capture_output=True,
                             text=True, timeout=60, env={"HOMELLM_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
        assert run.returncode == 1, run.stderr
        assert f"{value!r} is not a KV cache type" in run.stderr and "Traceback" not in run.stderr
        assert len(run.stderr.strip().splitlines()) <= 2  # the error and its hint
