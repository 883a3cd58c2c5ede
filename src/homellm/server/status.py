"""GET /homellm/ps (loaded models, slots, queue, memory, expiry) and GET /metrics (Prometheus)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from homellm.scheduler import ModelStatus
from homellm.server.generate import scheduler_of

router = APIRouter()


@router.get("/homellm/ps")
async def ps(request: Request) -> dict[str, Any]:
    """The models loaded now, as `homellm ps --json` prints them, and the upstreams' replicas."""
    upstreams = request.app.state.upstreams
    if upstreams is not None:
        upstreams.refresh()
    report: dict[str, Any] = {"models": [status_dict(s) for s in scheduler_of(request).statuses()],
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
    upstreams = request.app.state.upstreams
    extra = upstream_metrics(upstreams.status()) if upstreams is not None and upstreams.replicas else b""
    split = request.app.state.split
    if split is None:
        local = generate_latest(scheduler_of(request).metrics.registry)
        return Response(local + extra, media_type=CONTENT_TYPE_LATEST)
    # The split process counts its model's requests; this one adds what it knows of the workers.
    workers = (await split.status())["workers"]
    return Response(await split.metrics_text() + worker_metrics(workers) + extra, media_type=CONTENT_TYPE_LATEST)


def upstream_metrics(replicas: list[dict[str, Any]]) -> bytes:
    """Each upstream replica's requests, failures, requests in flight and health, in Prometheus' text format."""
    labels = ["upstream", "url"]
    requests = CounterMetricFamily("homellm_upstream_requests", "Requests forwarded to the replica", labels=labels)
    failures = CounterMetricFamily("homellm_upstream_failures", "Requests the replica refused or broke",
                                   labels=labels)
    in_flight = GaugeMetricFamily("homellm_upstream_in_flight", "Requests the replica is answering now",
                                  labels=labels)
    up = GaugeMetricFamily("homellm_upstream_up", "1 while the replica passes its health check and is not resting",
                           labels=labels)
    for replica in replicas:
        names = [replica["name"], replica["url"]]
        requests.add_metric(names, float(replica["requests"]))
        failures.add_metric(names, float(replica["failures"]))
        in_flight.add_metric(names, float(replica["in_flight"]))
        up.add_metric(names, 1.0 if replica["state"] == "up" else 0.0)
    return _text([requests, failures, in_flight, up])


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
    return _text([up, layers, memory])


def _text(families: list[Metric]) -> bytes:
    registry = CollectorRegistry()
    registry.register(_Families(families))
    return generate_latest(registry)


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def status_dict(status: ModelStatus) -> dict[str, Any]:
    """One loaded model for /homellm/ps."""
    expires = (datetime.fromtimestamp(status.expires_at, timezone.utc).isoformat(timespec="seconds")
               if status.expires_at is not None else None)
    return {
        "name": status.name,
        "state": status.state,
        "error": status.error,
        "context": status.n_ctx,
        "kv_type": status.kv_type.lower(),
        "slots": status.slots,
        "busy_slots": status.busy_slots,
        "queued": status.queued,
        "memory_bytes": status.memory_bytes,
        "expires_at": expires,
        "decode_seconds": round(status.decode_seconds, 3),
        "speculation": speculation_dict(status),
    }


def speculation_dict(status: ModelStatus) -> dict[str, Any]:
    """How a model drafts tokens, and how many of its drafts were accepted."""
    rate = status.acceptance
    return {"mode": status.speculation, "draft": status.draft, "drafted": status.drafted,
            "accepted": status.accepted, "acceptance": round(rate, 4) if rate is not None else None}
