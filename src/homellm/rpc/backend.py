"""The process that holds a model split across RPC workers, kept apart from the server's own.

llama.cpp aborts the process whose worker connection fails, so `homellm serve --rpc` does not
load the split model itself: it runs a second `homellm serve` on a loopback port with a key
of its own (the "split process"), forwards the local models' requests to it, and stays up when
a worker dies and takes the split process with it. The request in flight then gets a clean
error naming the lost worker, /health stays 200, /homellm/ps reports the worker lost, and the
split process is started again on the next request once every worker answers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from homellm.errors import HomellmError, ModelLoadError, WorkerLostError
from homellm.rpc.workers import STALL_SECONDS, Endpoint, require_reachable, unreachable
from homellm.upstreams.registry import Upstream
from homellm.upstreams.router import Replica

log = logging.getLogger("homellm.rpc")
LOAD_TIMEOUT = 1800.0  # a large model sent over a home network takes minutes
POLL_SECONDS = 0.25
STOP_SECONDS = 5.0
WATCH_SECONDS = 2.0


@dataclass
class SplitBackend:
    """The split process: how to start it, where it listens, and what it was last seen doing."""

    endpoints: Sequence[Endpoint]
    serve_args: Sequence[str]  # `homellm serve` options for the split process, besides address and workers
    rpc_text: str
    stall_seconds: float = STALL_SECONDS
    key: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)  # never in a log line
    starts: int = 0
    ready: bool = False  # the current split process has loaded its model
    loaded_once: bool = False  # /health says "loading" until the first load is done
    load_error: str | None = None  # why the last load failed, while no load has succeeded since
    _process: subprocess.Popen[bytes] | None = None
    _replica: Replica | None = None
    _lock: asyncio.Lock | None = None
    _last_error: str | None = None
    _stalled: float | None = None  # how long the decode step had hung when the watch stopped the process
    _workers: list[dict[str, Any]] = field(default_factory=list)  # the split process's report of each worker

    @property
    def replica(self) -> Replica:
        """The split process as the proxy sees it: one replica with its own key."""
        assert self._replica is not None, "start() first"
        return self._replica

    @property
    def _base(self) -> str:
        return self.replica.upstream.url.removesuffix("/v1")

    def running(self) -> bool:
        """Whether the split process is alive (it may still be loading)."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the split process on a fresh loopback port; it connects to the workers and loads the model."""
        port = _free_loopback_port()  # fresh each time: another program may have taken the last one
        self._replica = Replica(Upstream("rpc", f"http://127.0.0.1:{port}/v1"), key=self.key)
        command = [sys.executable, "-m", "homellm", "serve", "--host", "127.0.0.1", "--port", str(port),
                   "--rpc-direct", self.rpc_text, *self.serve_args]
        # GGML_NO_BACKTRACE: a lost worker aborts the process, and gdb's backtrace of that says nothing new.
        env = {**os.environ, "HOMELLM_API_KEY": self.key, "GGML_NO_BACKTRACE": "1"}
        self.ready, self._stalled = False, None
        self._process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
        self.starts += 1

    def wait_ready(self, timeout: float = LOAD_TIMEOUT) -> None:
        """Block until the split process has loaded its model; raise when it failed or died."""
        asyncio.run(self.wait_ready_async(timeout))

    async def wait_ready_async(self, timeout: float = LOAD_TIMEOUT) -> None:
        """Wait until the split process has loaded its model; stop it and raise when it failed or died."""
        try:
            await self._wait_loaded(timeout)
        except HomellmError as exc:
            self.load_error = exc.one_line()
            self.close()  # a process that failed to load must not take requests
            raise
        self.ready = self.loaded_once = True
        self.load_error = None

    async def _wait_loaded(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if not self.running():
                    raise await self._death_error("while loading")
                report = await _get_json(client, f"{self._base}/homellm/ps", self.key)
                if report is not None and self._loaded(report):
                    return
                await asyncio.sleep(POLL_SECONDS)
        raise ModelLoadError(f"the split model did not load within {timeout:.0f} s",
                             hint="check the workers' logs and the link between the machines")

    def _loaded(self, report: dict[str, Any]) -> bool:
        models = report.get("models", [])
        self._workers = report.get("workers", [])
        failed = [m for m in models if m.get("state") == "failed"]
        if failed:
            raise ModelLoadError(f"the split model failed to load: {failed[0].get('error')}",
                                 hint="see the server log")
        return bool(models) and all(m.get("state") == "ready" for m in models)

    async def _death_error(self, when: str) -> WorkerLostError:
        lost = await self.lost_workers()
        where = ", ".join(str(e) for e in lost) if lost else "no worker is unreachable now"
        return WorkerLostError(f"the split model's process stopped {when} ({where})",
                               hint="restart `homellm worker` on the lost machine; the next request reconnects")

    async def lost_workers(self) -> list[Endpoint]:
        """The workers that refuse a connection now."""
        return list(await asyncio.to_thread(unreachable, self.endpoints))

    async def ensure_ready(self) -> None:
        """Wait for the split process to be loaded; start it again if it died, once every worker answers."""
        if self.ready and self.running():
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one restart, however many requests wait for it
            if self.ready and self.running():
                return
            if not self.running():
                await asyncio.to_thread(require_reachable, self.endpoints)
                log.warning("starting the split model's process again (start %d)", self.starts + 1)
                self.start()
            await self.wait_ready_async()

    async def failure_message(self) -> tuple[str, str]:
        """What to tell a client whose answer broke (message, error code): which worker was lost, if one was."""
        for _ in range(int(2.0 / POLL_SECONDS)):  # llama.cpp aborts within moments of the failure
            if not self.running():
                break
            await asyncio.sleep(POLL_SECONDS)
        self.ready = self.ready and self.running()
        lost = await self.lost_workers()
        hung = (f" (a decode step hung for {self._stalled:.0f} s, so the split process was stopped)"
                if self._stalled is not None else "")
        if lost:
            self._last_error = f"lost {', '.join(str(e) for e in lost)}{hung}"
            return (f"the RPC worker {', '.join(str(e) for e in lost)} was lost mid-answer{hung}; "
                    "the request failed and the server keeps running"), "worker_lost"
        if hung:
            self._last_error = f"a decode step hung{hung}"
            return (f"the split model stopped answering{hung}: a worker or its link failed without closing "
                    "the connection; restart `homellm worker` on the workers"), "worker_lost"
        return "the split model's process failed mid-answer; see the server log", "upstream_failed"

    async def watch(self) -> None:
        """Stop the split process when a decode step hangs past `stall_seconds`, for the server's life.

        A worker that vanishes without closing its connection (a power cut, a pulled cable) leaves
        llama.cpp waiting for its reply forever; stopping the process fails the requests cleanly.
        """
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                await asyncio.sleep(WATCH_SECONDS)
                try:
                    await self._stop_if_hung(client)
                except Exception:  # noqa: BLE001 - the watch must go on
                    log.exception("watching the split process failed")

    async def _stop_if_hung(self, client: httpx.AsyncClient) -> None:
        if not (self.ready and self.running()):
            return
        report = await _get_json(client, f"{self._base}/homellm/ps", self.key)
        if report is None:
            return
        hung = max((float(m.get("decode_seconds") or 0.0) for m in report.get("models", [])), default=0.0)
        if hung > self.stall_seconds and self._process is not None:
            log.warning("a decode step of the split model has run %.0f s; stopping its process", hung)
            self._stalled = hung
            self._process.kill()

    async def status(self) -> dict[str, Any]:
        """The split process's models, and every worker with its state, for /homellm/ps."""
        report = None
        if self.running():
            async with httpx.AsyncClient(timeout=2.0) as client:
                report = await _get_json(client, f"{self._base}/homellm/ps", self.key)
        if report is not None:
            self._workers = report.get("workers", self._workers)
        models = report.get("models", []) if report else []
        lost = set() if self.running() else set(await self.lost_workers())
        known = {w.get("endpoint"): w for w in self._workers}
        workers = []
        for endpoint in self.endpoints:
            state = ("connected" if self.ready else "connecting") if self.running() else \
                "lost" if endpoint in lost else "up"
            workers.append({**known.get(str(endpoint), {"endpoint": str(endpoint), "devices": [], "layers": 0}),
                            "state": state})
        return {"models": models, "workers": workers, "starts": self.starts, "last_error": self._last_error}

    async def metrics_text(self) -> bytes:
        """The split process's Prometheus text (its models' series), empty while it is down."""
        if not self.running():
            return b""
        async with httpx.AsyncClient(timeout=2.0) as client:
            try:
                response = await client.get(f"{self._base}/metrics", headers={"Authorization": f"Bearer {self.key}"})
            except httpx.HTTPError:
                return b""
        return response.content if response.status_code == 200 else b""

    def close(self) -> None:
        """Stop the split process."""
        self.ready = False
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _get_json(client: httpx.AsyncClient, url: str, key: str) -> dict[str, Any] | None:
    try:
        response = await client.get(url, headers={"Authorization": f"Bearer {key}"})
        return response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
