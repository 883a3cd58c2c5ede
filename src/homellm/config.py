"""Settings read from the environment, and the paths homellm writes to."""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from homellm.errors import InvalidRequestError

DEFAULT_HOST = "127.0.0.1"
# Away from Ollama (11434), LM Studio (1234), llama-server (8080), vLLM (8000), Jan (1337).
DEFAULT_PORT = 8435
DEFAULT_CTX = 4096
# Chat requests are small; 8 MiB leaves room for long documents pasted into a prompt.
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
# Connection limits of `homellm serve` (server/connections.py). A connection with no request in
# progress is closed after the idle timeout (uvicorn's keep-alive default; clients reconnect).
DEFAULT_IDLE_TIMEOUT = 5.0
# Clients send their headers in one packet; 10 s is slow networks' worth of slack, and ends slowloris.
DEFAULT_HEADER_TIMEOUT = 10.0
# The whole body, from the end of the headers: 8 MiB in 60 s needs 140 kB/s.
DEFAULT_BODY_TIMEOUT = 60.0
# `serve` raises its soft limit on open files to hold them; an idle connection costs ~4 KiB of memory.
DEFAULT_MAX_CONNECTIONS = 1000


def default_home(env: dict[str, str] | None = None) -> Path:
    """The user's data directory for homellm: XDG on Linux, Application Support on macOS, LOCALAPPDATA on Windows."""
    env = dict(os.environ) if env is None else env
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "homellm"
    if sys.platform == "win32" and env.get("LOCALAPPDATA"):
        return Path(env["LOCALAPPDATA"]) / "homellm"
    data = env.get("XDG_DATA_HOME")
    return (Path(data) if data else Path.home() / ".local" / "share") / "homellm"


def default_cache(env: dict[str, str] | None = None) -> Path:
    """Where homellm keeps what it can measure again (XDG_CACHE_HOME on Linux, Caches on macOS)."""
    env = dict(os.environ) if env is None else env
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "homellm"
    if sys.platform == "win32" and env.get("LOCALAPPDATA"):
        return Path(env["LOCALAPPDATA"]) / "homellm" / "cache"
    cache = env.get("XDG_CACHE_HOME")
    return (Path(cache) if cache else Path.home() / ".cache") / "homellm"


@dataclass(frozen=True)
class Settings:
    """What the environment says, before command-line flags override it."""

    home: Path = field(default_factory=default_home)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    api_key: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        """Read HOMELLM_HOME, HOMELLM_HOST, HOMELLM_PORT and HOMELLM_API_KEY."""
        env = dict(os.environ) if env is None else env
        port_text = env.get("HOMELLM_PORT", "")
        try:
            port = int(port_text) if port_text else DEFAULT_PORT
        except ValueError:
            raise InvalidRequestError(
                f"HOMELLM_PORT is {port_text!r}, not a port number",
                hint="set it to a number such as 8435, or unset it",
            ) from None
        home = env.get("HOMELLM_HOME")
        return cls(
            home=Path(home).expanduser() if home else default_home(env),
            host=env.get("HOMELLM_HOST") or DEFAULT_HOST,
            port=port,
            api_key=env.get("HOMELLM_API_KEY") or None,
        )


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_keep_alive(value: str | float | None, param: str = "keep_alive") -> float | None:
    """Seconds to keep a model loaded, as Ollama reads `keep_alive`: "5m", "1h30m", 300, -1 (forever).

    None stays None (the server's default applies); a negative value means forever.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise _bad_duration(value, param)
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip().lower()
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        try:
            seconds = sign * float(body)
        except ValueError:
            parts = _DURATION.findall(body)
            if not body or "".join(n + u for n, u in parts) != body:
                raise _bad_duration(value, param) from None
            seconds = sign * sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if math.isnan(seconds):
        raise _bad_duration(value, param)
    return math.inf if seconds < 0 else seconds


def _bad_duration(value: object, param: str) -> InvalidRequestError:
    return InvalidRequestError(f"{param} is {value!r}, not a duration",
                               hint='use seconds (300), a duration ("5m", "1h30m", "0") or -1 for forever',
                               param=param)
