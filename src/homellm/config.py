"""Settings read from the environment, and the paths homellm writes to."""

from __future__ import annotations

import os
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


def default_home(env: dict[str, str] | None = None) -> Path:
    """The user's data directory for homellm: XDG on Linux, Application Support on macOS, LOCALAPPDATA on Windows."""
    env = dict(os.environ) if env is None else env
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "homellm"
    if sys.platform == "win32" and env.get("LOCALAPPDATA"):
        return Path(env["LOCALAPPDATA"]) / "homellm"
    data = env.get("XDG_DATA_HOME")
    return (Path(data) if data else Path.home() / ".local" / "share") / "homellm"


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
