"""`homellm ps`: what a running server has loaded, asked over its HTTP API."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from homellm.cli.options import JsonOption
from homellm.cli.output import human_bytes, new_table, out
from homellm.config import Settings
from homellm.errors import HomellmError


def ps(
    host: Annotated[str | None, typer.Option(help="The server's address [default: 127.0.0.1, or HOMELLM_HOST].")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="The server's port [default: 8435, or HOMELLM_PORT].")] = None,
    as_json: JsonOption = False,
) -> None:
    """List what a running `homellm serve` serves: models (slots busy, queue, memory, when each unloads),
    upstream replicas and RPC workers."""
    settings = Settings.from_env()
    host = host or settings.host
    port = port or settings.port
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    report = _fetch(f"http://{shown}:{port}/homellm/ps", settings.api_key)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    out.print(_models_table(report["models"]))
    if report.get("upstreams"):
        out.print(_upstreams_table(report["upstreams"]))
    if report.get("workers"):
        out.print(_workers_table(report["workers"]))


def _table(columns: tuple[str, ...], numeric: tuple[str, ...], title: str | None = None) -> Table:
    """An empty table with these columns, the numeric ones right-aligned."""
    table = new_table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="right" if column in numeric else "left")
    return table


def _models_table(models: list[dict[str, Any]]) -> Table:
    table = _table(("NAME", "STATE", "CONTEXT", "KV", "SLOTS BUSY", "QUEUED", "MEMORY", "UNLOADS"),
                   ("CONTEXT", "SLOTS BUSY", "QUEUED", "MEMORY"))
    for m in models:
        table.add_row(m["name"], m["state"], f"{m['context']:,}", m.get("kv_type", "f16"), f"{m['busy_slots']}/{m['slots']}",
                      str(m["queued"]),
                      human_bytes(m["memory_bytes"]) if m["memory_bytes"] else "?", _until(m))
    return table


def _upstreams_table(replicas: list[dict[str, Any]]) -> Table:
    table = _table(("NAME", "URL", "STATE", "IN FLIGHT", "REQUESTS", "FAILURES"), ("IN FLIGHT", "REQUESTS", "FAILURES"),
                   title="upstreams")
    for r in replicas:
        table.add_row(r["name"], r["url"], r["state"], str(r["in_flight"]), str(r["requests"]), str(r["failures"]))
    return table


def _workers_table(workers: list[dict[str, Any]]) -> Table:
    table = _table(("WORKER", "STATE", "LAYERS", "DEVICE", "FREE", "TOTAL"), ("LAYERS", "FREE", "TOTAL"),
                   title="RPC workers")
    for w in workers:
        devices = w.get("devices") or [{}]
        for i, d in enumerate(devices):
            table.add_row(w["endpoint"] if i == 0 else "", w["state"] if i == 0 else "",
                          str(w.get("layers", 0)) if i == 0 else "", d.get("description", "?"),
                          human_bytes(d["free_bytes"]) if "free_bytes" in d else "?",
                          human_bytes(d["total_bytes"]) if "total_bytes" in d else "?")
    return table


def _fetch(url: str, api_key: str | None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(url, headers=headers, timeout=5)
    except httpx.HTTPError as exc:
        raise HomellmError(f"no homellm server answers at {url}: {exc}",
                           hint="start one with `homellm serve`, or give its --host and --port") from None
    if response.status_code != 200:
        raise HomellmError(f"{url} answered {response.status_code}: {response.text[:200]}",
                           hint="set HOMELLM_API_KEY to the server's key" if response.status_code == 401 else "")
    return response.json()


def _until(model: dict[str, Any]) -> str:
    if model["busy_slots"] or model["queued"]:
        return "busy"
    if model["expires_at"] is None:
        return "never"
    seconds = (datetime.fromisoformat(model["expires_at"]) - datetime.now(timezone.utc)).total_seconds()
    return "now" if seconds < 1 else f"in {seconds / 60:.0f} min" if seconds >= 90 else f"in {seconds:.0f} s"
