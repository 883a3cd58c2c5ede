"""The benchmarks' server processes: started on a free loopback port, waited for, stopped.

    server = homellm_serve("--ctx", "4096", home=tmp, log=Path(tmp) / "serve.log")
    ...  # requests to server.base_url
    server.stop()
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

HOST = "127.0.0.1"
HOMELLM = str(Path(sys.executable).with_name("homellm"))  # the venv's, not whichever is first on PATH
LOG_TAIL_CHARS = 4000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`command`, with "{port}" in it (and in `log`) replaced by a free loopback port, started and
    waited for until `health` answers 200.

    `env` is added to this process's environment (a None value removes the variable); output goes to
    `log` where given, else nowhere. Raises RuntimeError with the log's tail when the process exits or
    `timeout` seconds pass first.
    """

    def __init__(self, command: list[str], health: str = "/health", env: dict[str, str | None] | None = None,
                 log: str | Path | None = None, timeout: float = 120.0) -> None:
        self.port = free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self.command = [part.replace("{port}", str(self.port)) for part in command]
        self.log_path = Path(str(log).replace("{port}", str(self.port))) if log is not None else None
        full_env = {**os.environ, **(env or {})}
        self._log = self.log_path.open("wb") if self.log_path else None
        self.proc = subprocess.Popen(self.command, stdout=self._log or subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
                                     env={key: value for key, value in full_env.items() if value is not None})
        self._wait(health, timeout)

    def _wait(self, health: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.base_url + health, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                problem = f"exited with status {self.proc.returncode}"
            elif time.monotonic() > deadline:
                problem = f"did not answer {health} with 200 in {timeout:g} s"
            else:
                time.sleep(0.2)
                continue
            self.stop()
            raise RuntimeError(f"{' '.join(self.command)}: {problem}\n{self.log_tail()}")

    def log_tail(self) -> str:
        if self.log_path is None:
            return "(no log kept)"
        return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]

    def rss(self) -> int:
        """The process's resident memory in bytes (psutil where installed, else /proc)."""
        try:
            import psutil

            return psutil.Process(self.proc.pid).memory_info().rss
        except ImportError:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self._log:
            self._log.close()


def homellm_serve(*args: str, home: str | Path | None = None, env: dict[str, str | None] | None = None,
                  log: str | Path | None = None, timeout: float = 120.0) -> ServerProcess:
    """`homellm serve --port {port} *args`, with HOMELLM_HOME set to `home` where given."""
    home_env: dict[str, str | None] = {"HOMELLM_HOME": str(home)} if home is not None else {}
    return ServerProcess([HOMELLM, "serve", "--port", "{port}", *args], env={**home_env, **(env or {})}, log=log,
                         timeout=timeout)
