"""Connection-level limits of `homellm serve`: idle, header and body timeouts, and connections at once.

Uvicorn closes a keep-alive connection some seconds after its last response, but it never closes
one that connects and sends nothing, nor one that sends its headers a line every few seconds
(slowloris: it has no timer for headers, and each byte stops its keep-alive timer), and httptools,
which `uvicorn[standard]` picks, keeps every header byte it is sent. So `serve` runs uvicorn with the
protocol class made here, which follows each connection through three phases:

- waiting: no request in progress (just connected, or its last response sent); closed after the
  idle timeout, and the first closed to make room when the connections are at their limit;
- reading headers: from a request's first byte to the end of its headers; answered 408 after the
  header timeout, 431 past `MAX_HEADER_BYTES`;
- busy: the app has the request. Its body is read by `security.AccessMiddleware`, under the body
  timeout and the memory budget for bodies this module hands it in the request's scope.

Past `--max-connections`, a new connection takes the place of the one waiting longest, or else of
the one stuck longest in its headers (either for a second at least); when there is none it is
answered 503 with Retry-After at once, without reading its request, unless its address has fewer
than `LIGHT_CLIENT_CONNECTIONS` open: a reserve past the limit keeps one client's flood of
connections from shutting every other client out.
"""

from __future__ import annotations

import array
import asyncio
import collections
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import h11

from homellm.config import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
)
from homellm.errors import HomellmError, ServerBusyError
from homellm.server.dialects import error_json

try:
    import fcntl
    import termios
except ImportError:  # Windows
    fcntl = termios = None  # type: ignore[assignment]

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]

# Browsers on localhost carry the cookies of every local dev server; 64 KiB holds them with room to spare.
MAX_HEADER_BYTES = 64 * 1024
# Bodies being received at once, past each one's first BODY_FREE_BYTES: 32 bodies of the 8 MiB limit.
# The first bytes are free so that chat requests (a few KiB) are never refused for other clients' bodies.
MAX_BUFFERED_BODY_BYTES = 256 * 1024 * 1024
BODY_FREE_BYTES = 64 * 1024
# A connection may make room for a new one once it has waited (or read headers) this long: one that has
# just connected may have sent its request already, unread yet, and must not be dropped without an answer.
EVICTION_GRACE_SECONDS = 1.0
# How many of the longest waiting a new connection looks at (each a system call) before it is refused.
EVICTION_CANDIDATES = 8
# A connection answered here (503, 408, 431) is half-closed and kept this long, dropping what the client
# still sends, so that closing it does not reset the connection before the client has read the answer.
LINGER_SECONDS = 1.0
RETRY_AFTER_SECONDS = 2
# Past the limit, an address with fewer connections open than this (or than the reserve, if smaller) still
# gets in, up to a tenth of the limit more: a browser opens 6 per host, a well-behaved API client 1 to 4.
LIGHT_CLIENT_CONNECTIONS = 8
# Requests pipelined on one connection waiting behind the one being answered: clients that pipeline at all
# (browsers and curl no longer do) send a few; each costs ~2 KiB, and one read can hold thousands.
MAX_PIPELINED = 16
# Where `AccessMiddleware` finds the body limits in a request's scope (an ASGI extension of this server).
BODY_LIMITS_KEY = "homellm.body_limits"
# Files the server keeps open besides its connections: models, the store, logs, thread wake-ups.
FILES_OF_OUR_OWN = 128

_WAITING, _HEADERS, _BUSY = "waiting", "headers", "busy"


class RequestTimeoutError(HomellmError):
    """A request's headers or body did not arrive within the server's timeout."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class HeadersTooLargeError(HomellmError):
    """A request's headers are larger than the server accepts."""

    status = 431
    type = "invalid_request_error"
    code = "headers_too_large"


@dataclass(frozen=True)
class ConnectionLimits:
    """What `serve --idle-timeout --header-timeout --body-timeout --max-connections` set."""

    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_header_bytes: int = MAX_HEADER_BYTES
    max_buffered_body_bytes: int = MAX_BUFFERED_BODY_BYTES


def http_protocol(limits: ConnectionLimits, parser: str = "auto") -> type[asyncio.Protocol]:
    """Uvicorn's HTTP/1.1 protocol with these limits, for `uvicorn.Config(http=...)`; one class per
    server, its connections counted together. `parser`: "auto" (httptools where installed, as
    uvicorn's `http="auto"` picks, else h11), "httptools" or "h11"."""
    guard = ConnectionGuard(limits)
    if parser != "h11":
        try:
            from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
        except ImportError:
            if parser == "httptools":
                raise
        else:
            return type("GuardedHttpToolsProtocol", (_GuardedHttpTools, HttpToolsProtocol), {"guard": guard})
    from uvicorn.protocols.http.h11_impl import H11Protocol

    return type("GuardedH11Protocol", (_GuardedH11, H11Protocol), {"guard": guard})


def light_client_reserve(max_connections: int) -> int:
    """Connections past the limit that addresses with few connections open may still take."""
    return max(1, max_connections // 10)


def fit_open_files(max_connections: int) -> int:
    """Raise this process's soft limit on open files so that `max_connections` and the light clients'
    reserve fit beside its own files (up to the hard limit); the number of connections that fit."""
    try:
        import resource
    except ImportError:  # Windows has no per-process limit to raise
        return max_connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    own = FILES_OF_OUR_OWN + light_client_reserve(max_connections)
    want = max_connections + own
    if soft != resource.RLIM_INFINITY and soft < want:
        raised = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):  # macOS caps the soft limit below some hard limits
            pass
    if soft == resource.RLIM_INFINITY:
        return max_connections
    return max(1, min(max_connections, soft - own))


# The body's limits, used by security.AccessMiddleware where it reads the body


@dataclass
class BodyBudget:
    """Bytes of request bodies being received at once, across every connection of a server."""

    limit: int
    held: int = 0


@dataclass(frozen=True)
class BodyLimits:
    """How long a request's body may take to arrive, and the budget its bytes are counted in."""

    timeout: float = DEFAULT_BODY_TIMEOUT
    budget: BodyBudget | None = None

    def meter(self) -> BodyMeter:
        """A meter for one body, its deadline starting now."""
        return BodyMeter(self, asyncio.get_running_loop().time() + self.timeout)


# Used where no server of ours put limits in the scope (tests through ASGI, other servers): the timeout only.
DEFAULT_BODY_LIMITS = BodyLimits()


def body_limits(scope: dict[str, Any]) -> BodyLimits:
    """The body limits the server put in the request's scope, or the default timeout without a budget."""
    return (scope.get("extensions") or {}).get(BODY_LIMITS_KEY, DEFAULT_BODY_LIMITS)


@dataclass
class BodyMeter:
    """One body's deadline and its bytes in the budget; `close` gives them back."""

    limits: BodyLimits
    deadline: float
    seen: int = 0
    held: int = 0

    async def receive(self, receive: Receive) -> Message:
        """The client's next message, or `RequestTimeoutError` once the deadline has passed."""
        remaining = self.deadline - asyncio.get_running_loop().time()
        try:
            if remaining <= 0:
                raise asyncio.TimeoutError
            return await asyncio.wait_for(receive(), remaining)
        except asyncio.TimeoutError:
            raise RequestTimeoutError(
                f"the request body did not arrive within {self.limits.timeout:g} s",
                hint="send the whole body at once; the server's --body-timeout sets the limit") from None

    def count(self, size: int) -> None:
        """Count `size` more bytes of the body; `ServerBusyError` when bodies being received would pass the budget."""
        self.seen += size
        budget = self.limits.budget
        charge = max(0, self.seen - BODY_FREE_BYTES) - self.held
        if budget is None or charge <= 0:
            return
        if budget.held + charge > budget.limit:
            raise ServerBusyError(f"the server is receiving {budget.held} bytes of request bodies already",
                                  hint=f"retry in {RETRY_AFTER_SECONDS} s", retry_after=RETRY_AFTER_SECONDS)
        budget.held += charge
        self.held += charge

    def close(self) -> None:
        """Give the body's bytes back to the budget (the body is whole, or refused)."""
        if self.limits.budget is not None:
            self.limits.budget.held -= self.held
        self.held = 0


def closing_send(send: Send, exc: HomellmError) -> Send:
    """A send whose response closes the connection (the rest of a refused body is not read), with
    Retry-After when `exc` says when to come back."""
    extra = [(b"connection", b"close")]
    if isinstance(exc, ServerBusyError):
        extra.append((b"retry-after", str(exc.retry_after).encode()))

    async def send_closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return send_closing


# The connections


class ConnectionGuard:
    """The connections of one server: how many are admitted, and which could make room for a new one."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.body_limits = BodyLimits(limits.body_timeout, BodyBudget(limits.max_buffered_body_bytes))
        self._admitted: set[_Guarded] = set()
        self._by_address: collections.Counter[str] = collections.Counter()
        self._reserve = light_client_reserve(limits.max_connections)
        self._light = min(LIGHT_CLIENT_CONNECTIONS, self._reserve)
        # When each entered its phase; insertion-ordered, so the first has been in it longest.
        self._waiting: dict[_Guarded, float] = {}
        self._reading: dict[_Guarded, float] = {}

    def admit(self, conn: _Guarded) -> bool:
        """Count a new connection in, evicting a waiting or stuck one at the limit, or taking a place in
        the reserve for light clients; False when all are busy."""
        if len(self._admitted) >= self.limits.max_connections:
            victim = self._evictable()
            if victim is not None:
                self.forget(victim)
                victim.evict()
            elif not self._may_use_reserve(conn.address):
                return False
        self._admitted.add(conn)
        self._by_address[conn.address] += 1
        return True

    def _may_use_reserve(self, address: str) -> bool:
        return (self._by_address[address] < self._light
                and len(self._admitted) < self.limits.max_connections + self._reserve)

    def entered(self, conn: _Guarded, phase: str) -> None:
        """Note a connection's new phase (moved to the end of its line)."""
        self._waiting.pop(conn, None)
        self._reading.pop(conn, None)
        if conn not in self._admitted:
            return
        if phase == _WAITING:
            self._waiting[conn] = time.monotonic()
        elif phase == _HEADERS:
            self._reading[conn] = time.monotonic()

    def forget(self, conn: _Guarded) -> None:
        """A connection is closed, or about to be."""
        if conn in self._admitted:
            self._admitted.remove(conn)
            self._by_address[conn.address] -= 1
            if not self._by_address[conn.address]:
                del self._by_address[conn.address]
        self._waiting.pop(conn, None)
        self._reading.pop(conn, None)

    def _evictable(self) -> _Guarded | None:
        """The connection waiting longest, else the one longest in its headers: past the grace, and with
        nothing sent that the server has not read yet (a busy event loop may not have read a request for a
        while; closing its connection would drop the request without an answer)."""
        now = time.monotonic()
        for line in (self._waiting, self._reading):
            for conn, since in itertools.islice(line.items(), EVICTION_CANDIDATES):
                if now - since < EVICTION_GRACE_SECONDS:
                    break  # the rest of the line came later
                if not conn.has_unread_bytes():
                    return conn
        return None


class _Guarded:
    """The phases, timers and limits, mixed into uvicorn's HTTP protocols before them in the MRO.

    Uses what both of uvicorn's protocols have: `transport`, `loop`, `app`, `cycle` (replaced when
    a request's headers are done), `timeout_keep_alive_task` (armed when a response leaves nothing
    pipelined), `on_response_complete`.
    """

    guard: ClassVar[ConnectionGuard]
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    app: ASGIApp
    cycle: Any
    timeout_keep_alive_task: asyncio.TimerHandle | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self.app = _with_body_limits(self.app, self.guard.body_limits)
        self._phase = _WAITING
        self._timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._answered = False  # by this module: what the client still sends is dropped
        self.address = ""  # the client's, for the light clients' reserve; set when connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self.guard.admit(self):
            self._refuse()
            return
        self._enter(_WAITING)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self.guard.forget(self)
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self._answered:
            return  # dropped: the answer is sent, the connection closes soon
        cycle = self.cycle
        super().data_received(data)  # type: ignore[misc]
        if self.transport.is_closing():
            return
        if self.cycle is not cycle:  # a request's headers are done: the app has it
            self._enter(_BUSY)
        elif self._phase == _HEADERS:
            self._header_bytes += len(data)
            if self._header_bytes > self.guard.limits.max_header_bytes:
                self._answer_and_close(HeadersTooLargeError(
                    f"the request's headers are larger than {self.guard.limits.max_header_bytes} bytes",
                    hint="send fewer or shorter headers"))

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        # Uvicorn arms its keep-alive timer when no pipelined request follows: nothing is in progress.
        if self.timeout_keep_alive_task is not None:
            self._enter(_WAITING)

    def handle_websocket_upgrade(self, *args: Any) -> None:
        self._cancel_timer()  # the websocket protocol owns the connection from here
        self.guard.forget(self)
        super().handle_websocket_upgrade(*args)  # type: ignore[misc]

    def evict(self) -> None:
        """Close to make room for a new connection: silently when waiting, with a 408 when reading headers."""
        if self._phase == _HEADERS:
            self._headers_late()
        else:
            self._close()

    def has_unread_bytes(self) -> bool:
        """Whether the client has sent bytes the event loop has not handed this protocol yet
        (unknown, and so False, where the socket cannot be asked: Windows)."""
        sock = self.transport.get_extra_info("socket")
        if sock is None or fcntl is None:
            return False
        pending = array.array("i", [0])
        try:
            fcntl.ioctl(sock.fileno(), termios.FIONREAD, pending)
        except (OSError, ValueError):
            return False
        return pending[0] > 0

    def _request_started(self) -> None:
        """The first byte of a request arrived (from the subclass, which knows its parser)."""
        if self._phase == _WAITING:
            self._header_bytes = 0
            self._enter(_HEADERS)

    def _enter(self, phase: str) -> None:
        self._phase = phase
        self._cancel_timer()
        self.guard.entered(self, phase)
        limits = self.guard.limits
        if phase == _WAITING:
            self._timer = self.loop.call_later(limits.idle_timeout, self._close)
        elif phase == _HEADERS:
            self._timer = self.loop.call_later(limits.header_timeout, self._headers_late)

    def _headers_late(self) -> None:
        self._answer_and_close(RequestTimeoutError(
            f"the request's headers did not arrive within {self.guard.limits.header_timeout:g} s",
            hint="send the headers at once; the server's --header-timeout sets the limit"))

    def _refuse(self) -> None:
        busy = ServerBusyError(f"the server has {self.guard.limits.max_connections} connections open",
                               hint=f"retry in {RETRY_AFTER_SECONDS} s; the server's --max-connections sets the limit",
                               retry_after=RETRY_AFTER_SECONDS)
        self._answer_and_close(busy, [("retry-after", str(RETRY_AFTER_SECONDS))])

    def _answer_and_close(self, exc: HomellmError, headers: list[tuple[str, str]] | None = None) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            self._close()  # never an answer in the middle of a response
            return
        self._answered = True
        self._cancel_timer()
        self.guard.forget(self)
        self.transport.write(_raw_answer(exc, headers))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._timer = self.loop.call_later(LINGER_SECONDS, self._close)

    def _close(self) -> None:
        self._cancel_timer()
        self.guard.forget(self)
        if not self.transport.is_closing():
            self.transport.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _GuardedHttpTools(_Guarded):
    """httptools parses every request in what it is fed, however many are pipelined in one read: past
    MAX_PIPELINED waiting, the rest is dropped unparsed into requests, and the connection closes after
    the last one kept (h11 parses one request at a time by itself)."""

    pipeline: Any
    _overflow = False

    def on_message_begin(self) -> None:
        if self._overflow:
            return
        super().on_message_begin()  # type: ignore[misc]
        self._request_started()

    def on_url(self, url: bytes) -> None:
        if not self._overflow:
            super().on_url(url)  # type: ignore[misc]

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._overflow:
            super().on_header(name, value)  # type: ignore[misc]

    def on_headers_complete(self) -> None:
        if not self._overflow and len(self.pipeline) >= MAX_PIPELINED:
            self._overflow = True
            self.cycle.keep_alive = False  # the last request kept: closed after its answer
        if not self._overflow:
            super().on_headers_complete()  # type: ignore[misc]

    def on_body(self, body: bytes) -> None:
        if not self._overflow:
            super().on_body(body)  # type: ignore[misc]

    def on_message_complete(self) -> None:
        if not self._overflow:
            super().on_message_complete()  # type: ignore[misc]


class _GuardedH11(_Guarded):
    def data_received(self, data: bytes) -> None:
        if not self._answered and self.conn.their_state is h11.IDLE:  # type: ignore[attr-defined]
            self._request_started()
        super().data_received(data)


def _with_body_limits(app: ASGIApp, limits: BodyLimits) -> ASGIApp:
    """The app, with the server's body limits in each HTTP request's scope."""

    async def app_with_limits(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope["extensions"] = {**(scope.get("extensions") or {}), BODY_LIMITS_KEY: limits}
        await app(scope, receive, send)

    return app_with_limits


def _raw_answer(exc: HomellmError, headers: list[tuple[str, str]] | None = None) -> bytes:
    """A whole HTTP/1.1 error response that closes the connection, written before any request is parsed
    (in OpenAI's error shape: the path, and so the dialect, may not be known yet)."""
    body = json.dumps(error_json("openai", exc.status, exc.one_line(), exc.type, exc.code, exc.param)).encode()
    lines = [f"HTTP/1.1 {exc.status} {HTTPStatus(exc.status).phrase}", "content-type: application/json",
             f"content-length: {len(body)}", "connection: close",
             *(f"{name}: {value}" for name, value in headers or ())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
