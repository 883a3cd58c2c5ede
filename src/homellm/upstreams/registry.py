"""The OpenAI-compatible servers homellm puts behind its API, kept in `HOMELLM_HOME/upstreams.json`.

Entries that share a name are replicas of one upstream: requests go to the least busy one.
Keys are never stored, only the name of the environment variable that holds one.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

from homellm.errors import InvalidRequestError, StoreError

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Upstream:
    """One replica of an upstream: its name, its OpenAI base URL (ending in /v1), and which models it offers."""

    name: str
    url: str
    api_key_env: str | None = None
    models: tuple[str, ...] | None = None  # None: every model it lists

    def api_key(self) -> str | None:
        """The key, read from its environment variable when a request is sent."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None


def normalise_url(url: str) -> str:
    """An http(s) URL of an OpenAI-compatible server, as its base ending in /v1."""
    parsed = urlparse(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InvalidRequestError(f"{url!r} is not an http(s) URL", hint="for example http://192.168.1.20:8000/v1",
                                  param="url")
    if parsed.username or parsed.password:
        raise InvalidRequestError("the URL holds credentials, which would be shown in lists and logs",
                                  hint="give the key with --api-key-env VAR instead", param="url")
    base = url.strip().rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"


class UpstreamRegistry:
    """The upstreams file: read on each use, written whole through a temporary file."""

    def __init__(self, home: Path) -> None:
        self.path = home / "upstreams.json"

    def list(self) -> list[Upstream]:
        """Every replica, in the order they were added."""
        if not self.path.exists():
            return []
        try:
            raw = json.loads(self.path.read_text())
            return [Upstream(e["name"], e["url"], e.get("api_key_env"),
                             tuple(e["models"]) if e.get("models") is not None else None) for e in raw]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{self.path} is unreadable: {exc}",
                             hint="fix or delete the file, then add the upstreams again") from None

    def stamp(self) -> tuple[int, int] | None:
        """(mtime in ns, size) of the file, None when there is none: it changes whenever the file does."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def add(self, name: str, url: str, api_key_env: str | None = None,
            models: list[str] | None = None) -> Upstream:
        """Add a replica; the same name and URL twice is refused."""
        if not _NAME.match(name):
            raise InvalidRequestError(f"{name!r} is not a valid upstream name",
                                      hint="lower-case letters, digits, '.', '_' and '-'", param="name")
        if api_key_env is not None and not _ENV.match(api_key_env):
            raise InvalidRequestError(f"{api_key_env!r} is not an environment variable name",
                                      hint="give the variable's name, never the key itself", param="api_key_env")
        entry = Upstream(name, normalise_url(url), api_key_env,
                         tuple(m.strip() for m in models if m.strip()) if models else None)
        entries = self.list()
        if any(e.name == name and e.url == entry.url for e in entries):
            raise InvalidRequestError(f"{name} already has the replica {entry.url}", param="url")
        self._write([*entries, entry])
        return entry

    def remove(self, name: str, url: str | None = None) -> list[Upstream]:
        """Remove an upstream's replicas (or the one at `url`); returns what was removed."""
        entries = self.list()
        target = normalise_url(url) if url else None
        gone = [e for e in entries if e.name == name and (target is None or e.url == target)]
        if not gone:
            raise InvalidRequestError(f"no upstream named {name!r}" + (f" at {target}" if target else ""),
                                      hint="homellm upstream ls lists them", param="name")
        self._write([e for e in entries if e not in gone])
        return gone

    def _write(self, entries: list[Upstream]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".json.partial")
        body = [{**asdict(e), "models": list(e.models) if e.models is not None else None} for e in entries]
        temporary.write_text(json.dumps(body, indent=2))
        os.replace(temporary, self.path)
