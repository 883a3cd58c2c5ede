"""Bench results kept in SQLite under HOMELLM_HOME, and the efficiencies they measured for the planner."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from homellm.bench.runner import BenchResult, machine_fingerprint
from homellm.errors import StoreError
from homellm.hardware.detect import MachineReport, detect
from homellm.hardware.types import Hardware

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created     REAL NOT NULL,
    fingerprint TEXT NOT NULL,
    device      TEXT NOT NULL,
    model       TEXT NOT NULL,
    digest      TEXT NOT NULL,
    llama_cpp   TEXT NOT NULL,
    efficiency  REAL NOT NULL,
    result      TEXT NOT NULL  -- JSON of bench.runner.BenchResult
);
"""


class BenchResults:
    """`$HOMELLM_HOME/bench.db`."""

    def __init__(self, home: Path) -> None:
        self.path = home / "bench.db"
        try:
            home.mkdir(parents=True, exist_ok=True)
            with closing(self._connect()) as conn:
                conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the bench results at {self.path}: {exc}",
                             hint="set HOMELLM_HOME to a writable folder") from None

    def add(self, result: BenchResult) -> None:
        """Keep a run."""
        with closing(self._connect()) as conn, conn:
            conn.execute("INSERT INTO results (created, fingerprint, device, model, digest, llama_cpp, efficiency, "
                         "result) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (result.created, result.machine_fingerprint, result.device, result.model,
                          result.model_digest, result.llama_cpp_version, result.measured_efficiency,
                          json.dumps(asdict(result))))

    def history(self) -> list[dict[str, Any]]:
        """Every run, newest first."""
        with closing(self._connect()) as conn:
            rows = conn.execute("SELECT result FROM results ORDER BY created DESC, id DESC").fetchall()
        return [json.loads(row[0]) for row in rows]

    def efficiencies(self, fingerprint: str) -> dict[str, float]:
        """The newest measured efficiency of each device of one machine."""
        with closing(self._connect()) as conn:
            rows = conn.execute("SELECT device, efficiency FROM results WHERE fingerprint = ? "
                                "ORDER BY created ASC, id ASC", (fingerprint,)).fetchall()
        return {device: eff for device, eff in rows}

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)


def with_measured_efficiency(hardware: Hardware, measured: dict[str, float]) -> Hardware:
    """This machine's devices carrying the efficiencies its bench runs measured."""
    return replace(hardware, devices=tuple(replace(d, efficiency=measured[d.name]) if d.name in measured else d
                                           for d in hardware.devices))


def this_machine(home: Path, probe_seconds: float = 0.3) -> MachineReport:
    """This machine as detected, with the efficiencies earlier bench runs measured on it."""
    report = detect(probe_seconds)
    measured = BenchResults(home).efficiencies(machine_fingerprint(report))
    return replace(report, hardware=with_measured_efficiency(report.hardware, measured))
