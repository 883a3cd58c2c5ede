"""While a model loads, /health says 503 and requests wait; then both go through."""

import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from conftest import free_port
from ggufs import write_unknown_architecture

from homellm.engine.llama import EngineOptions, LlamaEngine, load_engine
from homellm.models.resolve import resolve_model
from homellm.scheduler import Scheduler
from homellm.server.app import create_app


@pytest.fixture
def slow_loading_server():
    gate = threading.Event()

    def load_when_released(path: Path, options: EngineOptions) -> LlamaEngine:
        gate.wait(30)
        return load_engine(path, options)

    scheduler = Scheduler(load=load_when_released)
    scheduler.add(resolve_model(None), EngineOptions(n_ctx=1024))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(scheduler), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", gate
    gate.set()
    server.should_exit = True
    thread.join(10)
    scheduler.close()


def test_health_is_503_while_loading_then_200(slow_loading_server):
    base_url, gate = slow_loading_server
    loading = httpx.get(f"{base_url}/health")
    assert loading.status_code == 503
    assert loading.json() == {"status": "loading"}
    gate.set()
    deadline = time.monotonic() + 30
    while httpx.get(f"{base_url}/health").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_request_sent_while_loading_is_answered_once_loaded(slow_loading_server):
    base_url, gate = slow_loading_server
    result = {}

    def ask() -> None:
        body = {"messages": [{"role": "user", "content": "Name the capital of France."}], "temperature": 0}
        result["response"] = httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=60)

    thread = threading.Thread(target=ask)
    thread.start()
    time.sleep(0.3)
    assert "response" not in result  # waiting for the model, not refused
    gate.set()
    thread.join(60)
    assert result["response"].status_code == 200
    assert "Paris" in result["response"].json()["choices"][0]["message"]["content"]


def test_model_that_fails_to_load_reports_why(tmp_path):
    bogus = write_unknown_architecture(tmp_path / "bogus.gguf")
    scheduler = Scheduler()
    runner = scheduler.add(resolve_model(str(bogus)), EngineOptions(n_ctx=256))
    with pytest.raises(Exception, match="bogus.gguf"):
        runner.wait_loaded(30)
    status = scheduler.statuses()[0]
    assert status.state == "failed" and "bogus.gguf" in status.error
    scheduler.close()
