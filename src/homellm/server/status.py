"""GET /api/ps (loaded models, slots, queue, memory, expiry) and GET /metrics (Prometheus)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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
    report: dict[str, Any] = {"models": [status_dict(s) for s in _scheduler(request).statuses()],
                              "upstreams": upstreams.status() if upstreams is not None else []}
    split = request.app.state.split
    if split is not None:  # the split model lives in its own process, which reports it
        report.update(await split.status())
    elif request.app.state.workers is not None:  # this is that process
        report["workers"] = request.app.state.workers
    return report


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Requests, tokens, latencies, queue depth and busy slots by model, in Prometheus' text format."""
    split = request.app.state.split
    if split is None:
        return Response(generate_latest(_scheduler(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)
    # The split process counts its model's requests; this one adds what it knows of the workers.
    workers = (await split.status())["workers"]
    return Response(await split.metrics_text() + worker_metrics(workers), media_type=CONTENT_TYPE_LATEST)


def worker_metrics(workers: list[dict[str, Any]]) -> bytes:
    """Each RPC worker's state, memory and layers, in Prometheus' text format."""
    up = GaugeMetricFamily("homellm_rpc_worker_up", "1 while the RPC worker is connected or answers", labels=["worker"])
    layers = GaugeMetricFamily("homellm_rpc_worker_layers", "Model layers placed on the RPC worker", labels=["worker"])
    memory = GaugeMetricFamily("homellm_rpc_worker_memory_bytes", "The RPC worker's device memory when the model "
                               "was loaded", labels=["worker", "kind"])
    for worker in workers:
        name = worker["endpoint"]
        up.add_metric([name], 0.0 if worker["state"] == "lost" else 1.0)
        layers.add_metric([name], float(worker.get("layers", 0)))
        for device in worker.get("devices", []):
            memory.add_metric([name, "free"], float(device["free_bytes"]))
            memory.add_metric([name, "total"], float(device["total_bytes"]))
    registry = CollectorRegistry()
    registry.register(_Families([up, layers, memory]))
    return generate_latest(registry)


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


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
