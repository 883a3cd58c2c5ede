"""Requests for `NAME/MODEL` go to upstream NAME: bodies, streams and errors pass through unchanged.

The proxy sits in front of the app as ASGI middleware (after the access checks), so a request
for an upstream is never validated against homellm's own limits: what vLLM or llama-server
accepts, it accepts. Replicas of one upstream take requests least-busy first, and a replica
that refuses the connection is skipped (and rested for a while) in favour of the next.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httpx

from homellm.errors import HomellmError
from homellm.server.dialects import dialect_of, error_json
from homellm.server.security import replay_body, wait_for_disconnect
from homellm.upstreams.router import REST_SECONDS, Replica, UpstreamRouter

if TYPE_CHECKING:
    from homellm.rpc.backend import SplitBackend

log = logging.getLogger("homellm.upstreams")
PROXIED_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
# The split process is a homellm server too: every dialect's generations go there (upstreams speak OpenAI only).
SPLIT_PATHS = (*PROXIED_PATHS, "/v1/messages", "/v1/messages/count_tokens", "/v1/responses", "/api/chat",
               "/api/generate")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Failure = Callable[[], Awaitable[tuple[str, str]]]  # what to tell the client when the answer breaks: message, code


class UpstreamProxy:
    """ASGI middleware: POSTs to the OpenAI routes that name `NAME/MODEL` are forwarded.

    With a split backend (`serve --rpc`), the local models' requests go to its process too.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], router: UpstreamRouter,
                 split: SplitBackend | None = None) -> None:
        self.app = app
        self.router = router
        self.split = split

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # the server starts: health checks run as long as it does
            watches = [asyncio.ensure_future(self.router.watch_health())]
            if self.split is not None:
                watches.append(asyncio.ensure_future(self.split.watch()))
            try:
                await self.app(scope, receive, send)
            finally:
                for watch in watches:
                    watch.cancel()
                await asyncio.gather(*watches, return_exceptions=True)
                await self.router.close()
            return
        served = SPLIT_PATHS if self.split is not None else PROXIED_PATHS
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in served:
            await self.app(scope, receive, send)
            return
        body, replay = await _read_body(receive)
        try:
            self.router.refresh()
        except HomellmError as exc:  # a damaged upstreams.json must not take local models down
            log.warning("upstreams unavailable: %s", exc.one_line())
            self.router.replicas = {}
        try:
            request = json.loads(body) if body else None
        except ValueError:
            request = None
        openai_path = scope["path"] in PROXIED_PATHS
        target = self.router.match(request.get("model")) if isinstance(request, dict) and openai_path else None
        if target is not None:
            name, remote = target
            await self._forward(scope["path"], json.dumps({**request, "model": remote}).encode(), name, remote,
                                self.router.candidates(name, remote), receive, send)
        elif self.split is not None:
            await self._forward_split(scope["path"], body, receive, send)
        else:
            await self.app(scope, replay, send)

    async def _forward_split(self, path: str, body: bytes, receive: Receive, send: Send) -> None:
        """A local model's request, to the split process (started again first if a worker took it down)."""
        split = self.split
        assert split is not None
        try:
            await split.ensure_ready()
        except HomellmError as exc:
            await _send_json(send, exc.status, _error(exc.one_line(), exc.code or "worker_lost", path, exc.status))
            return
        await self._forward(path, body, "rpc", "the split model", [split.replica], receive, send,
                            failure=split.failure_message)

    async def _forward(self, path: str, payload: bytes, name: str, remote: str, replicas: list[Replica],
                       receive: Receive, send: Send, failure: Failure | None = None) -> None:
        for replica in replicas:
            replica.in_flight += 1
            replica.requests += 1
            try:
                upstream_request = self.router.client().build_request(
                    "POST", _url(replica, path), content=payload,
                    # identity: the body is relayed as it comes, so it must not arrive compressed
                    headers={"Content-Type": "application/json", "Accept-Encoding": "identity",
                             **replica.auth_headers()})
                try:
                    response = await self.router.client().send(upstream_request, stream=True)
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    replica.failures += 1
                    if failure is not None:  # one process of homellm's own: no other replica to try
                        await _send_json(send, 502, _error(*await failure(), path))
                        return
                    replica.down_until = time.monotonic() + REST_SECONDS
                    log.warning("upstream %s at %s refused the connection (%s); trying the next replica",
                                name, replica.upstream.url, type(exc).__name__)
                    continue
                except httpx.HTTPError as exc:
                    replica.failures += 1
                    reason = await failure() if failure else (f"upstream {name} failed before answering "
                                                              f"({type(exc).__name__})", "upstream_failed")
                    await _send_json(send, 502, _error(*reason, path))
                    return
                try:
                    await _relay_until_disconnect(response, receive, send, failure)
                finally:
                    await response.aclose()
                return
            finally:
                replica.in_flight -= 1
        await _send_json(send, 502, _error(f"no replica of upstream {name} could be reached for {remote}",
                                           "upstream_unreachable", path))


def _url(replica: Replica, path: str) -> str:
    """Where the request goes: an upstream's base URL ends in /v1; homellm's other dialects sit beside it."""
    base = replica.upstream.url
    return base + path[len("/v1"):] if path.startswith("/v1/") else base.removesuffix("/v1") + path


def _error(message: str, code: str, path: str, status: int = 502) -> dict[str, Any]:
    return error_json(dialect_of(path), status, message, "server_error", code, "model")


async def _relay_until_disconnect(response: httpx.Response, receive: Receive, send: Send,
                                  failure: Failure | None = None) -> None:
    """Relay the answer; a client that hangs up stops it (and so the upstream's work) at once."""
    relay = asyncio.ensure_future(_relay(response, send, failure))
    hangup = asyncio.ensure_future(wait_for_disconnect(receive))
    try:
        await asyncio.wait({relay, hangup}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (relay, hangup):
            task.cancel()
        await asyncio.gather(relay, hangup, return_exceptions=True)
    if relay.done() and not relay.cancelled() and relay.exception() is not None:
        raise relay.exception()  # type: ignore[misc]


async def _relay(response: httpx.Response, send: Send, failure: Failure | None = None) -> None:
    """The upstream's status, content type and body, streamed as they come."""
    headers = [(b"content-type", response.headers.get("content-type", "application/json").encode())]
    if "retry-after" in response.headers:
        headers.append((b"retry-after", response.headers["retry-after"].encode()))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    try:
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except httpx.HTTPError as exc:
        # Headers are gone: the stream ends with an error event, as a local failure's does.
        message, code = await failure() if failure else (f"the upstream failed mid-answer ({type(exc).__name__})",
                                                         "upstream_failed")
        event = {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
        await send({"type": "http.response.body", "body": b"data: " + json.dumps(event).encode() + b"\n\n",
                    "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(body).encode(), "more_body": False})


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body, and a receive that hands it to the app again.

    The access middleware before this one has read the body within its limit already and
    hands it over as one message, so this is one `receive`.
    """
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    return body, replay_body({"type": "http.request", "body": body, "more_body": False}, receive)
