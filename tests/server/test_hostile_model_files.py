"""A model file whose chat template is hostile is refused when it loads; the server keeps serving the rest."""

from __future__ import annotations

import subprocess

import openai
import pytest
from conftest import HOMELLM, ServerProcess
from ggufs import copy_with_metadata

DOUBLING = ("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
            "{{ ns.s }}")


@pytest.fixture(scope="module")
def served_with_hostile_file(tmp_path_factory, builtin_path):
    home = tmp_path_factory.mktemp("hostile-home")
    hostile = copy_with_metadata(builtin_path, home / "hostile.gguf", {"tokenizer.chat_template": DOUBLING})
    imported = subprocess.run([HOMELLM, "import", str(hostile), "--name", "hostile"], capture_output=True,
                              text=True, env={"HOMELLM_HOME": str(home), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert imported.returncode == 0, imported.stderr
    proc = ServerProcess([], home).wait_ready()
    yield proc
    proc.stop()


def test_hostile_template_is_refused_at_load_and_the_server_keeps_serving(served_with_hostile_file):
    client = served_with_hostile_file.client()
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="hostile", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert info.value.status_code >= 500
    assert "unsafe operation" in info.value.body["message"]
    done = client.chat.completions.create(model="smollm2:135m", max_tokens=8, temperature=0,
                                          messages=[{"role": "user", "content": "Name the capital of France."}])
    assert "Paris" in done.choices[0].message.content
