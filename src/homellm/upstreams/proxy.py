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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from homellm.errors import HomellmError
from homellm.server.security import replay_body, wait_for_disconnect
from homellm.upstreams.registry import Upstream, UpstreamRegistry

if TYPE_CHECKING:
    from homellm.rpc.backend import SplitBackend

log = logging.getLogger("homellm.upstreams")
PROXIED_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
REST_SECONDS = 10.0  # a replica that refused a connection is not tried again before this
HEALTH_SECONDS = 10.0  # every replica's /models is asked this often; one that does not answer is marked down
MODELS_TTL = 10.0
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 600.0

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Failure = Callable[[], Awaitable[tuple[str, str]]]  # what to tell the client when the answer breaks: message, code


@dataclass
class Replica:
    """One upstream server as the router tracks it."""

    upstream: Upstream
    in_flight: int = 0
    down_until: float = 0.0
    requests: int = 0
    failures: int = 0
    healthy: bool = True  # the last health check's verdict
    key: str | None = None  # a key of homellm's own making (the split process's), sent instead of the upstream's


@dataclass
class UpstreamRouter:
    """The replicas of every upstream, and the HTTP client that talks to them."""

    registry: UpstreamRegistry
    replicas: dict[str, list[Replica]] = field(default_factory=dict)
    _models: tuple[float, list[dict[str, Any]]] = (0.0, [])
    _client: httpx.AsyncClient | None = None
    _stamp: tuple[int, int] | None | bool = False  # the file's (mtime, size) when last read; False: never

    def refresh(self) -> None:
        """Read the registry again when its file changed (`homellm upstream add` may have run), keeping
        the counters; every POST asks, so an unchanged file costs one stat."""
        stamp = self.registry.stamp()
        if stamp == self._stamp:
            return
        known = {(r.upstream.name, r.upstream.url): r for rs in self.replicas.values() for r in rs}
        fresh: dict[str, list[Replica]] = {}
        for upstream in self.registry.list():
            replica = known.get((upstream.name, upstream.url))
            if replica is None or replica.upstream != upstream:
                replica = Replica(upstream)
            fresh.setdefault(upstream.name, []).append(replica)
        self.replicas = fresh
        self._stamp = stamp

    def match(self, model: Any) -> tuple[str, str] | None:
        """(upstream name, the model's name there) for `NAME/MODEL`, or None for a local model."""
        if not isinstance(model, str) or "/" not in model:
            return None
        name, _, remote = model.partition("/")
        if name not in self.replicas or not remote:
            return None
        return name, remote

    def client(self) -> httpx.AsyncClient:
        """One pooled client for every upstream."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT))
        return self._client

    def candidates(self, name: str, remote: str) -> list[Replica]:
        """Replicas offering the model, least busy first, rested ones last."""
        now = time.monotonic()
        offered = [r for r in self.replicas.get(name, []) if r.upstream.models is None or remote in r.upstream.models]
        return sorted(offered, key=lambda r: (r.down_until > now or not r.healthy, r.in_flight, r.requests))

    async def check_health(self) -> None:
        """Ask every replica for its models; one that does not answer is tried last until it does again."""
        try:
            self.refresh()
        except HomellmError:
            return
        replicas = [r for rs in self.replicas.values() for r in rs]
        answers = await asyncio.gather(*(self._answers(r) for r in replicas))
        for replica, healthy in zip(replicas, answers):
            if replica.healthy and not healthy:
                log.warning("upstream %s at %s fails its health check", replica.upstream.name, replica.upstream.url)
            replica.healthy = healthy

    async def _answers(self, replica: Replica) -> bool:
        response = await self._get_models(replica)
        return response is not None and response.status_code < 500

    async def _get_models(self, replica: Replica) -> httpx.Response | None:
        """The replica's answer to GET /models, or None when it gave none."""
        try:
            return await self.client().get(f"{replica.upstream.url}/models", headers=_auth(replica),
                                           timeout=CONNECT_TIMEOUT)
        except httpx.HTTPError:
            return None

    async def watch_health(self) -> None:
        """`check_health` every HEALTH_SECONDS, for the server's life; a check that breaks is logged, not fatal."""
        while True:
            try:
                await self.check_health()
            except Exception:  # noqa: BLE001 - the next round must still run
                log.exception("upstream health check failed")
            await asyncio.sleep(HEALTH_SECONDS)

    async def models(self) -> list[dict[str, Any]]:
        """`NAME/MODEL` cards of every upstream's models (cached for a few seconds; a dead upstream lists none)."""
        stamp, cards = self._models
        if time.monotonic() - stamp < MODELS_TTL:
            return cards
        cards = []
        for name, replicas in self.replicas.items():
            seen: set[str] = set()
            for replica in replicas:
                for model in await self._list(replica):
                    if model not in seen and (replica.upstream.models is None or model in replica.upstream.models):
                        seen.add(model)
                        cards.append({"id": f"{name}/{model}", "object": "model", "created": 0, "owned_by": name,
                                      "homellm": {"kind": "upstream", "upstream": name}})
        self._models = (time.monotonic(), cards)
        return cards

    async def _list(self, replica: Replica) -> list[str]:
        response = await self._get_models(replica)
        if response is None or response.status_code != 200:
            return []
        try:
            return [m["id"] for m in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            return []

    def status(self) -> list[dict[str, Any]]:
        """Every replica with its state, for /api/ps and /metrics."""
        now = time.monotonic()
        return [{"name": r.upstream.name, "url": r.upstream.url, "in_flight": r.in_flight, "requests": r.requests,
                 "failures": r.failures,
                 "state": "down" if not r.healthy else "resting" if r.down_until > now else "up"}
                for rs in self.replicas.values() for r in rs]

    async def close(self) -> None:
        """Close the pooled client (a later request opens another)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None


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
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in PROXIED_PATHS:
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
        target = self.router.match(request.get("model")) if isinstance(request, dict) else None
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
            await _send_json(send, exc.status, _error(exc.one_line(), exc.code or "worker_lost"))
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
                    "POST", f"{replica.upstream.url}{path[len('/v1'):]}", content=payload,
                    # identity: the body is relayed as it comes, so it must not arrive compressed
                    headers={"Content-Type": "application/json", "Accept-Encoding": "identity",
                             **_auth(replica)})
                try:
                    response = await self.router.client().send(upstream_request, stream=True)
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    replica.failures += 1
                    if failure is not None:  # one process of homellm's own: no other replica to try
                        await _send_json(send, 502, _error(*await failure()))
                        return
                    replica.down_until = time.monotonic() + REST_SECONDS
                    log.warning("upstream %s at %s refused the connection (%s); trying the next replica",
                                name, replica.upstream.url, type(exc).__name__)
                    continue
                except httpx.HTTPError as exc:
                    replica.failures += 1
                    reason = await failure() if failure else (f"upstream {name} failed before answering "
                                                              f"({type(exc).__name__})", "upstream_failed")
                    await _send_json(send, 502, _error(*reason))
                    return
                try:
                    await _relay_until_disconnect(response, receive, send, failure)
                finally:
                    await response.aclose()
                return
            finally:
                replica.in_flight -= 1
        await _send_json(send, 502, _error(f"no replica of upstream {name} could be reached for {remote}",
                                           "upstream_unreachable"))


def _error(message: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "server_error", "param": "model", "code": code}}


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


def _auth(replica: Replica) -> dict[str, str]:
    key = replica.key or replica.upstream.api_key()
    return {"Authorization": f"Bearer {key}"} if key else {}


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
