"""GET /api/ps (loaded models, slots, queue, memory, expiry) and GET /metrics (Prometheus)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from homellm.scheduler import ModelStatus, Scheduler

router = APIRouter()


def _scheduler(request: Request) -> Scheduler:
    return request.app.state.scheduler


@router.get("/api/ps")
async def ps(request: Request) -> dict[str, Any]:
    """The models loaded now, as `homellm ps --json` prints them, and the upstreams' replicas."""
    upstreams = request.app.state.upstreams
    if upstreams is not None:
        upstreams.refresh()
    return {"models": [status_dict(s) for s in _scheduler(request).statuses()],
            "upstreams": upstreams.status() if upstreams is not None else []}


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Requests, tokens, latencies, queue depth and busy slots by model, in Prometheus' text format."""
    return Response(generate_latest(_scheduler(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)


def status_dict(status: ModelStatus) -> dict[str, Any]:
    """One loaded model for /api/ps."""
    expires = (datetime.fromtimestamp(status.expires_at, timezone.utc).isoformat(timespec="seconds")
               if status.expires_at is not None else None)
    return {
        "name": status.name,
        "state": status.state,
        "error": status.error,
        "context": status.n_ctx,
        "slots": status.slots,
        "busy_slots": status.busy_slots,
        "queued": status.queued,
        "memory_bytes": status.memory_bytes,
        "expires_at": expires,
    }
