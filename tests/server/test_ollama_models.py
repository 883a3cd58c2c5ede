"""Ollama's model routes with the official `ollama` client against real `homellm serve` processes: list, show,
ps, version, the root health probe, pull from a loopback Hub, copy, delete, and `--ollama-port`."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import openai
import pytest
from conftest import HOMELLM, ServerProcess, free_port
from hubserver import FakeHub

from homellm import __version__

KEY = "s3cret"
TINY_REPO = "tester/Tiny-GGUF"
TINY = "tiny:q8_0"  # the name the store gives hf.co/tester/Tiny-GGUF:Q8_0


@pytest.fixture(scope="module")
def ollama_client(server: ServerProcess) -> ollama.Client:
    return ollama.Client(host=server.base_url)


@pytest.fixture(scope="module")
def hub(tiny_dense_path: Path) -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add_repo(TINY_REPO, {"Tiny-Q8_0.gguf": tiny_dense_path})
        fake.add_repo("tester/Bad-GGUF", {"Bad-Q8_0.gguf": tiny_dense_path})
        fake.corrupt("Bad-Q8_0.gguf")
        yield fake


class StoreServer(ServerProcess):
    """A server with its own store and a key, pulling from the fake Hub, also on an Ollama port."""

    ollama_url: str

    def ollama(self, base_url: str | None = None) -> ollama.Client:
        return ollama.Client(host=base_url or self.base_url, headers={"Authorization": f"Bearer {KEY}"})


@pytest.fixture(scope="module")
def store_server(hub: FakeHub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreServer]:
    ollama_port = free_port()
    proc = StoreServer(["--api-key", KEY, "--ollama-port", str(ollama_port), "--keep-alive", "1m"],
                       tmp_path_factory.mktemp("ollama-store"), env=hub.env())
    proc.ollama_url = f"http://127.0.0.1:{ollama_port}"
    proc.wait_ready()
    yield proc
    proc.stop()


def listed(client: ollama.Client) -> list[str]:
    return sorted(m.model for m in client.list().models)


# The shared server: the built-in model

def test_list_gives_the_builtin_model_with_its_details(ollama_client: ollama.Client) -> None:
    model = next(m for m in ollama_client.list().models if m.model == "smollm2:135m")
    assert model.size > 50_000_000 and len(model.digest) == 64 and model.modified_at is not None
    details = model.details
    assert (details.format, details.family, details.families) == ("gguf", "llama", ["llama"])
    assert (details.parameter_size, details.quantization_level) == ("134.52M", "Q4_1")  # as Ollama prints them


def test_show_gives_modelinfo_capabilities_template_and_sampling(server: ServerProcess,
                                                                ollama_client: ollama.Client) -> None:
    shown = ollama_client.show("smollm2:135m")
    info = shown.modelinfo
    assert info["general.architecture"] == "llama" and info["general.parameter_count"] == 134_515_008
    assert (info["llama.context_length"], info["llama.embedding_length"], info["llama.block_count"]) == (8192, 576, 30)
    assert (info["llama.attention.head_count"], info["llama.attention.head_count_kv"]) == (9, 3)
    assert info["general.file_type"] == 3 and info["tokenizer.ggml.tokens"] == []  # long arrays left out
    assert "general.name" not in info and "tokenizer.chat_template" not in info
    assert shown.capabilities == ["completion", "tools"]
    assert "<|im_start|>" in shown.template and shown.license == "apache-2.0"
    assert shown.details.quantization_level == "Q4_1"
    assert "temperature" in shown.parameters and "top_k" in shown.parameters
    # Ollama's default tag, and the name Copilot is shown by.
    assert ollama_client.show("smollm2").details.family == "llama"
    copilot = httpx.post(f"{server.base_url}/api/show", json={"model": "smollm2:135m"},
                         headers={"User-Agent": "GitHubCopilotChat/0.30.0"}).json()
    assert copilot["model_info"]["general.basename"] == "smollm2:135m"


def test_ps_lists_the_model_a_request_used(ollama_client: ollama.Client, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="smollm2:135m", messages=[{"role": "user", "content": "Hi"}], max_tokens=1)
    running = {m.model: m for m in ollama_client.ps().models}
    model = running["smollm2:135m"]
    assert model.name == "smollm2:135m" and model.size > 0 and model.context_length > 0
    assert model.details.family == "llama" and model.expires_at is not None and model.size_vram == 0


def test_version_passes_the_clients_minimum(server: ServerProcess) -> None:
    body = httpx.get(f"{server.base_url}/api/version").json()
    assert tuple(int(p) for p in body["version"].split(".")) >= (0, 6, 4)  # VS Code Copilot's minimum
    assert body["homellm"] == __version__
    assert httpx.head(f"{server.base_url}/api/version").status_code == 200


def test_root_answers_ollama_clients_and_browsers(server: ServerProcess) -> None:
    probe = httpx.get(f"{server.base_url}/")
    assert probe.status_code == 200 and probe.text == "Ollama is running"
    assert probe.headers["content-type"].startswith("text/plain") and "Accept" in probe.headers["vary"]
    head = httpx.head(f"{server.base_url}/")
    assert head.status_code == 200 and head.content == b""
    browser = httpx.get(f"{server.base_url}/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert browser.headers["content-type"].startswith("text/html") and "<html" in browser.text
    assert "script-src 'self'" in browser.headers["content-security-policy"]


@pytest.mark.parametrize("call", ["show", "delete", "copy"])
def test_an_unknown_model_is_404(ollama_client: ollama.Client, call: str) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        if call == "copy":
            ollama_client.copy("nobody:here", "somebody:else")
        else:
            getattr(ollama_client, call)("nobody:here")
    assert refused.value.status_code == 404 and "not found" in refused.value.error


def test_bad_inputs_are_4xx_in_ollamas_shape_and_the_server_keeps_serving(server: ServerProcess,
                                                                          ollama_client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as bare:
        ollama_client.pull("llama3.2")
    assert bare.value.status_code == 400 and "hf.co/OWNER/REPO:QUANT" in bare.value.error
    with pytest.raises(ollama.ResponseError) as builtin:
        ollama_client.delete("smollm2:135m")
    assert builtin.value.status_code == 400 and "built-in" in builtin.value.error
    api = server.base_url + "/api"
    for method, path, body in [("POST", "/show", b'{"model": "smollm2'), ("POST", "/show", b"{}"),
                               ("POST", "/pull", b'{"stream": false}'), ("POST", "/copy", b'{"source": "a"}'),
                               ("DELETE", "/delete", b'{"model": 5}'), ("POST", "/copy", b'[1, 2]'),
                               ("POST", "/copy", b'{"source": "smollm2:135m", "destination": "../evil"}')]:
        answer = httpx.request(method, api + path, content=body, headers={"Content-Type": "application/json"})
        assert 400 <= answer.status_code < 500, (path, body, answer.text)
        assert set(answer.json()) == {"error"} and answer.json()["error"], answer.text
    assert "smollm2:135m" in listed(ollama_client)


# A server of its own: pull, copy, delete, and the second port

def test_pull_streams_progress_then_the_model_is_listed_and_shown(store_server: StoreServer,
                                                                  tiny_dense_path: Path) -> None:
    client = store_server.ollama()
    lines = list(client.pull(f"hf.co/{TINY_REPO}:Q8_0", stream=True))
    statuses = [line.status for line in lines]
    assert statuses[0] == "pulling manifest" and statuses[-3:] == ["verifying sha256 digest", "writing manifest",
                                                                   "success"]
    progress = [line for line in lines if line.total]
    size = tiny_dense_path.stat().st_size
    assert progress and all(line.total == size and 0 <= line.completed <= size for line in progress)
    assert progress[-1].completed == size and progress[-1].digest.startswith("sha256:")
    assert progress[-1].status == f"pulling {progress[-1].digest[7:19]}"
    assert TINY in listed(client)
    assert client.show(TINY).capabilities == ["completion", "tools"]
    # Pulled again, as Ollama's clients name it (no quant: the repository's only one): nothing to download.
    again = list(client.pull(f"hf.co/{TINY_REPO}:latest", stream=True))
    assert [line.status for line in again] == ["pulling manifest", "success"]
    assert client.pull(TINY).status == "success"  # a stored name: updated from where it came from


def test_pull_errors_before_and_after_the_stream_starts(store_server: StoreServer) -> None:
    client = store_server.ollama()
    with pytest.raises(ollama.ResponseError) as missing:
        list(client.pull("hf.co/nobody/nothing:Q8_0", stream=True))
    assert missing.value.status_code == 404 and "nobody/nothing" in missing.value.error
    with pytest.raises(ollama.ResponseError) as corrupt:  # found out after the download: the stream's last line
        list(client.pull("hf.co/tester/Bad-GGUF:Q8_0", stream=True))
    assert "sha256" in corrupt.value.error
    assert "bad:q8_0" not in listed(client)


def test_copy_then_delete_a_loaded_model(store_server: StoreServer) -> None:
    client = store_server.ollama()
    if TINY not in listed(client):
        client.pull(f"hf.co/{TINY_REPO}:Q8_0")
    client.copy(TINY, "tiny:copy")
    assert {TINY, "tiny:copy"} <= set(listed(client))
    with pytest.raises(ollama.ResponseError) as taken:
        client.copy(TINY, "tiny:copy")
    assert taken.value.status_code == 409
    client.delete("tiny:copy")
    assert "tiny:copy" not in listed(client) and TINY in listed(client)
    store_server.client(api_key=KEY).completions.create(model=TINY, prompt="a", max_tokens=1)
    assert TINY in [m.model for m in client.ps().models]
    client.delete(TINY)
    assert TINY not in listed(client)
    deadline = time.monotonic() + 20
    while TINY in [m.model for m in client.ps().models]:  # let go once idle
        assert time.monotonic() < deadline, "the deleted model stayed loaded"
        time.sleep(0.2)


def test_the_ollama_port_serves_the_same_api_with_the_same_checks(store_server: StoreServer) -> None:
    port = store_server.ollama_url.rsplit(":", 1)[1]
    assert listed(store_server.ollama(store_server.ollama_url)) == listed(store_server.ollama())
    assert httpx.get(f"http://localhost:{port}/").text == "Ollama is running"  # as Ollama's clients probe it
    assert httpx.get(f"{store_server.ollama_url}/api/tags").status_code == 401  # the key holds here too
    rebound = httpx.get(f"{store_server.ollama_url}/api/tags", headers={"Host": "evil.example:" + port,
                                                                          "Authorization": f"Bearer {KEY}"})
    assert rebound.status_code == 403 and "error" in rebound.json()


def test_a_taken_ollama_port_is_refused_before_any_model_loads(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run([HOMELLM, "serve", "--port", str(free_port()), "--ollama-port", str(port)],
                                env={**os.environ, "HOMELLM_HOME": str(tmp_path), "HOMELLM_API_KEY": ""},
                                capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and f"127.0.0.1:{port}" in output and "--ollama-port" in output, output
    assert "serving" not in output and time.monotonic() - started < 30  # refused before the model was named
