"""This machine as an RPC worker: the device it lends, and llama.cpp's rpc-server loop."""

from __future__ import annotations

import signal
from pathlib import Path

from homellm.engine.llama import default_threads
from homellm.engine.rpc import main_device, serve_worker
from homellm.rpc.workers import Endpoint


def lent_device() -> tuple[str, str, int, int]:
    """The device a worker lends: its llama.cpp name, description, free and total bytes."""
    return main_device()


def lend(endpoint: Endpoint, threads: int | None, cache: Path | None) -> None:
    """Serve llama.cpp's RPC protocol at `endpoint` until the process is ended; never returns."""
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    # The server loop runs in C and never returns to Python: let Ctrl-C and SIGTERM end the process as C would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    serve_worker(str(endpoint), threads or default_threads(), cache)
