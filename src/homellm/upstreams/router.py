"""The replicas of every upstream: which one takes a request (least busy first), and which are healthy.

A replica that refuses a connection rests for a while; every replica's /models is asked
now and then, and one that does not answer is marked down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from homellm.errors import HomellmError
from homellm.upstreams.registry import Upstream, UpstreamRegistry

log = logging.getLogger("homellm.upstreams")
REST_SECONDS = 10.0  # a replica that refused a connection is not tried again before this
HEALTH_SECONDS = 10.0  # every replica's /models is asked this often; one that does not answer is marked down
MODELS_TTL = 10.0
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 600.0


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

    def auth_headers(self) -> dict[str, str]:
        """The Authorization header for a request to this replica, if it takes a key."""
        key = self.key or self.upstream.api_key()
        return {"Authorization": f"Bearer {key}"} if key else {}


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
            return await self.client().get(f"{replica.upstream.url}/models", headers=replica.auth_headers(),
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
        """Every replica with its state, for /homellm/ps and /metrics."""
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
