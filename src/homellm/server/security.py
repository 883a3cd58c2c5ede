"""Safe defaults: loopback bind, API key, Host allow-list, body size limit.

Ollama's CVE-2024-28224 (DNS rebinding) and the many Ollama servers found open
on the internet are the precedent: a local server is reachable from any web
page the user visits unless it checks the Host header, and from the network
if it binds more than loopback.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from homellm.errors import (
    AuthenticationError,
    HomellmError,
    HostNotAllowedError,
    OriginNotAllowedError,
    RequestTooLargeError,
    ServerBusyError,
    UnsafeBindError,
)
from homellm.server.body_checks import check_json_body
from homellm.server.connections import (
    BodyLimits,
    RequestTimeoutError,
    body_limits,
    closing_send,
)
from homellm.server.dialects import dialect_of, error_json

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
PUBLIC_PATHS = ("/health",)
# The chat page and its files hold no data; the page asks for the key before it calls the API.
PAGE_PATHS = ("/",)
PAGE_PREFIX = "/static/"
# Origins of pages that desktop apps show, never web sites (Ollama's default allow-list has them too).
APP_SCHEMES = ("app", "tauri", "vscode-webview", "vscode-file")
# A body checked on the event loop takes under a millisecond; a larger one is checked in a thread.
BODY_CHECKED_INLINE = 64 * 1024


def is_loopback(host: str) -> bool:
    """Whether a bind address is reachable from this machine only."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond loopback without an API key."""
    if not is_loopback(host) and not api_key:
        raise UnsafeBindError(
            f"refusing to listen on {host} without an API key: anyone on the network could use it",
            hint="pass --api-key KEY or set HOMELLM_API_KEY, or bind 127.0.0.1",
        )


@dataclass(frozen=True)
class AccessPolicy:
    """Who may talk to the server."""

    bind_host: str = "127.0.0.1"
    api_key: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    max_body_bytes: int = 8 * 1024 * 1024
    cors_origins: tuple[str, ...] = ()
    _names: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        names = {_strip_port(n).lower() for n in (*LOOPBACK_NAMES, self.bind_host, *self.allowed_hosts)}
        object.__setattr__(self, "_names", frozenset(names))

    def host_allowed(self, host_header: str) -> bool:
        """Whether a Host header names this server (DNS rebinding defence)."""
        host = _strip_port(host_header).lower()
        if host in self._names or host.endswith(".localhost"):
            return True
        # Bound to every interface, the server is reached by its addresses; a DNS
        # rebinding page can only send a name, never an IP literal.
        return self.bind_host.strip("[]") in ("0.0.0.0", "::") and _is_ip(host)

    @property
    def cors(self) -> bool:
        """Whether CORS is on (`--cors-origin`)."""
        return bool(self.cors_origins)

    def origin_allowed(self, origin: str) -> bool:
        """Whether a browser page at `origin` may send requests: a page of this server's own hosts (the
        chat page, another local port), a desktop app's own scheme (as Ollama allows them: VS Code
        webviews, Electron and Tauri apps), or an origin named with --cors-origin.

        A page elsewhere cannot read the answers without CORS, but without this check it could still
        send "simple" requests (a POST with a text/plain body, which Ollama's routes read as JSON):
        pull, copy and generate on the user's machine from any web site they visit.
        """
        if origin in self.cors_origins or "*" in self.cors_origins:
            return True
        scheme, _, rest = origin.partition("://")
        if scheme in APP_SCHEMES:
            return True
        return scheme in ("http", "https") and bool(rest) and self.host_allowed(rest)

    def key_ok(self, authorization: str | None, x_api_key: str | None = None) -> bool:
        """Whether the request carries the key: `Authorization: Bearer KEY`, or `x-api-key: KEY` as
        Anthropic's clients send it (constant-time compares)."""
        if self.api_key is None:
            return True
        key = self.api_key.encode()
        scheme, _, token = (authorization or "").partition(" ")
        bearer = scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key)
        return bearer or (x_api_key is not None and hmac.compare_digest(x_api_key.strip().encode(), key))


class AccessMiddleware:
    """Host allow-list, API key and body size, checked before any route runs."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope["headers"])
        try:
            self._check(scope, headers)
        except HomellmError as exc:
            await send_error(send, exc, scope["path"])
            return
        try:
            replay = await self._read_body(receive, body_limits(scope))
        except (RequestTimeoutError, RequestTooLargeError, ServerBusyError) as exc:
            # The rest of the body may still be on its way: answer, then close rather than read it.
            await send_error(closing_send(send, exc), exc, scope["path"])
            return
        except HomellmError as exc:
            await send_error(send, exc, scope["path"])
            return
        await self.app(scope, replay, send)

    def _check(self, scope: Scope, headers: dict[str, str]) -> None:
        if not self.policy.host_allowed(headers.get("host", "")):
            raise HostNotAllowedError(
                f"Host {headers.get('host', '')!r} is not allowed",
                hint="reach the server as localhost, or start it with --allowed-host NAME",
            )
        origin = headers.get("origin")
        if origin is not None and not self.policy.origin_allowed(origin):
            raise OriginNotAllowedError(
                f"requests from web pages at {origin!r} are not allowed",
                hint="open the page from this server, or start it with --cors-origin ORIGIN",
            )
        # A CORS preflight carries no key by design; it only exists when CORS is on.
        preflight = self.policy.cors and scope["method"] == "OPTIONS"
        if not _public(scope) and not preflight and not self.policy.key_ok(headers.get("authorization"),
                                                                              headers.get("x-api-key")):
            raise AuthenticationError(
                "missing or wrong API key",
                hint="send the header 'Authorization: Bearer <key>' (or 'x-api-key: <key>') with the server's key",
            )
        length = headers.get("content-length")
        if length and length.isdigit() and int(length) > self.policy.max_body_bytes:
            raise _too_large(self.policy.max_body_bytes)

    async def _read_body(self, receive: Receive, limits: BodyLimits) -> Receive:
        """Read the whole body within the limits, check its JSON, and hand the app a receive that replays it.

        Content-Length may be absent (chunked) or lie, so what arrives is counted;
        reading first lets an oversized, slow or poisonous body be answered before any route runs.
        The body must arrive within the server's body timeout (408, ending a body sent a byte at a
        time), and bodies being received at once stay within its memory budget (503).
        """
        chunks: list[bytes] = []
        seen = 0
        meter = limits.meter()
        try:
            while True:
                message = await meter.receive(receive)
                if message["type"] != "http.request":
                    return replay_body(message, receive)
                chunk = message.get("body", b"")
                seen += len(chunk)
                if seen > self.policy.max_body_bytes:
                    raise _too_large(self.policy.max_body_bytes)
                meter.count(len(chunk))
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
        finally:
            meter.close()
        body = b"".join(chunks)
        if len(body) > BODY_CHECKED_INLINE:
            await asyncio.to_thread(check_json_body, body)
        else:
            check_json_body(body)
        return replay_body({"type": "http.request", "body": body, "more_body": False}, receive)


def _public(scope: Scope) -> bool:
    path = scope["path"]
    if path in PUBLIC_PATHS:
        return True
    page = path in PAGE_PATHS or path.startswith(PAGE_PREFIX)
    return page and scope["method"] in ("GET", "HEAD")


def replay_body(first: Message, receive: Receive) -> Receive:
    """A receive that hands `first` (the whole body) to the app once, then the client's messages."""
    pending = [first]

    async def replay() -> Message:
        # After the body, the next message is the client's disconnect, from the server.
        return pending.pop() if pending else await receive()

    return replay


async def wait_for_disconnect(receive: Receive) -> None:
    """Return when the client hangs up; the body must have been read already."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def send_error(send: Send, exc: HomellmError, path: str) -> None:
    """Answer with an error in the shape of the path's dialect, outside FastAPI's handlers."""
    body = json.dumps(error_json(dialect_of(path), exc.status, exc.one_line(), exc.type, exc.code,
                                 exc.param)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if isinstance(exc, AuthenticationError):
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _too_large(limit: int) -> RequestTooLargeError:
    return RequestTooLargeError(f"request body is larger than {limit} bytes",
                                hint="send a shorter request")


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}


def _strip_port(host: str) -> str:
    if host.count(":") > 1 and not host.startswith("["):
        return host  # a bare IPv6 address
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False
