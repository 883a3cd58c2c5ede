"""Shared fixtures: the built-in model loaded once, and real `homellm serve` processes on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest

from homellm.engine.llama import EngineOptions, LlamaEngine
from homellm.models.builtin import BUILTIN_NAME, builtin_model_path
from homellm.models.resolve import ModelRef
from homellm.scheduler import Scheduler

if TYPE_CHECKING:
    from homellm.embed.registry import EmbeddingModels

sys.path.insert(0, str(Path(__file__).parent))

HOMELLM = str(Path(sys.executable).with_name("homellm"))

# A subprocess's timeout follows from what it does: starting Python and loading the built-in model take
# under STARTUP_SECONDS, and it decodes at SLOWEST_TOKENS_PER_SECOND or more, on a slow 2-core machine
# with the other core busy (it decodes at 100-200 tokens/s there when idle).
STARTUP_SECONDS = 60
SLOWEST_TOKENS_PER_SECOND = 15


def pytest_configure(config: pytest.Config) -> None:
    """Compile homellm's modules once, before any test starts `homellm` in a subprocess."""
    # Where PYTHONDONTWRITEBYTECODE is set (it is on the shared 2-core test machine), no process writes
    # bytecode, so in a fresh clone each of the suite's 300 or so `homellm` processes compiled every
    # module it imports again: 0.15 s of CPU per command and 0.2 s per server, most of a minute in all.
    # compileall writes the bytecode whatever that variable says, skips files already compiled, and
    # is quiet where the source folder is read-only.
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("homellm")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        compileall.compile_dir(folder, quiet=2)


def generation_timeout(tokens: int, starts: int = 1) -> float:
    """Seconds to allow a command that starts `starts` times and generates up to `tokens` tokens."""
    return starts * STARTUP_SECONDS + tokens / SLOWEST_TOKENS_PER_SECOND


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def error_message(path: str, body: Any) -> str:
    """The message of an error body in the dialect of `path` (OpenAI, Anthropic or Ollama);
    KeyError or AssertionError when the body is not in that dialect's shape."""
    from homellm.server.dialects import dialect_of

    dialect = dialect_of(path)
    if dialect == "anthropic":
        assert body["type"] == "error" and isinstance(body["error"]["type"], str)
        message = body["error"]["message"]
    elif dialect == "ollama":
        message = body["error"]
    else:
        assert isinstance(body["error"]["type"], str)
        message = body["error"]["message"]
    assert isinstance(message, str) and message
    return message


class ServerProcess:
    """`homellm serve` in a subprocess, stopped when the test is done with it."""

    def __init__(self, args: list[str], home: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "HOMELLM_HOME": str(home)}
        full_env.pop("HOMELLM_API_KEY", None)  # a developer's own key must not leak into tests
        full_env.update(env or {})
        self.log = home / f"serve-{self.port}.log"
        self._log_file = self.log.open("wb")
        self.process = subprocess.Popen(
            [HOMELLM, "serve", "--port", str(self.port), *args],
            env=full_env, stdout=self._log_file, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> "ServerProcess":
        """Wait until /health answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not ready: {self.log.read_text()}")

    def client(self, api_key: str = "none", **kwargs: object) -> openai.OpenAI:
        """The official OpenAI client pointed at this server, without retries."""
        return openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=api_key, max_retries=0, **kwargs)

    def stop(self) -> None:
        """Terminate the server and wait for it."""
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log_file.close()


@pytest.fixture(scope="session")
def builtin_path() -> Path:
    """The built-in GGUF file."""
    return builtin_model_path()


@pytest.fixture(scope="session")
def engine(builtin_path: Path) -> Iterator[LlamaEngine]:
    """The built-in model, loaded once for every engine test."""
    loaded = LlamaEngine(builtin_path, EngineOptions(n_ctx=2048))
    yield loaded
    loaded.close()


@pytest.fixture(scope="session")
def scheduler(builtin_path: Path) -> Iterator[Scheduler]:
    """The real scheduler serving the built-in model in 4 slots of 2048 tokens."""
    loaded = Scheduler()
    loaded.add(ModelRef(BUILTIN_NAME, builtin_path), EngineOptions(n_ctx=2048, n_parallel=4)).wait_loaded()
    yield loaded
    loaded.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`homellm serve` with the built-in model, no key."""
    proc = ServerProcess([], tmp_path_factory.mktemp("home")).wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def client(server: ServerProcess) -> openai.OpenAI:
    """An OpenAI client for the shared server."""
    return server.client()


@pytest.fixture(scope="session")
def tiny_dense_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random `llama` GGUF with the built-in vocabulary, written once."""
    from ggufs import write_tiny_dense

    return write_tiny_dense(tmp_path_factory.mktemp("tiny") / "tiny-dense.gguf")


@pytest.fixture(scope="session")
def greedy_model_path(builtin_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in model with recommended sampling in its file: temperature 0 and top_k 20."""
    from ggufs import copy_with_metadata

    return copy_with_metadata(builtin_path, tmp_path_factory.mktemp("sampling") / "greedy.gguf",
                              {"general.sampling.temp": 0.0, "general.sampling.top_k": 20})


@pytest.fixture(scope="session")
def tiny_moe_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random `qwen3moe` GGUF (4 experts, 2 used) with the built-in vocabulary, written once."""
    from ggufs import write_tiny_moe

    return write_tiny_moe(tmp_path_factory.mktemp("tiny") / "tiny-moe.gguf")


@pytest.fixture(scope="session")
def docs_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOMELLM_HOME whose store holds the converted embedding model (converted once per session)."""
    from homellm.models.minilm import ensure_embedding_model
    from homellm.models.store import Store

    home = tmp_path_factory.mktemp("docs-home")
    ensure_embedding_model(Store(home))
    return home


@pytest.fixture(scope="session")
def embedding_models(docs_home: Path) -> Iterator["EmbeddingModels"]:
    """The embedding models of `docs_home`, loaded once and shared by the document tests."""
    from homellm.embed.registry import EmbeddingModels
    from homellm.models.store import Store

    models = EmbeddingModels(Store(docs_home))
    yield models
    models.close()


@pytest.fixture(scope="session")
def docs_server(docs_home: Path) -> Iterator[ServerProcess]:
    """`homellm serve` with the built-in model on `docs_home`, where tests make collections."""
    proc = ServerProcess([], docs_home).wait_ready()
    yield proc
    proc.stop()
