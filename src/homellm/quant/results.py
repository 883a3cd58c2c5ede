"""Sweeps kept in SQLite under HOMELLM_HOME; the planner reads the measured KL of a model's quants."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from homellm.errors import StoreError

if TYPE_CHECKING:  # the planner reads results without loading llama.cpp
    from homellm.quant.sweep import Sweep

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    created  REAL NOT NULL,
    model    TEXT NOT NULL,
    result   TEXT NOT NULL  -- JSON of quant.sweep.Sweep
);
"""


class QuantResults:
    """`$HOMELLM_HOME/quant.db`."""

    FILE = "quant.db"

    def __init__(self, home: Path) -> None:
        self.path = home / self.FILE
        try:
            home.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(self.path)) as conn:
                conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"the quant results at {self.path} cannot be used: {exc}",
                             hint="check the folder's permissions, or move the file aside") from None

    def save(self, result: Sweep) -> None:
        """Keep a sweep."""
        with closing(sqlite3.connect(self.path)) as conn, conn:
            conn.execute("INSERT INTO sweeps (created, model, result) VALUES (?, ?, ?)",
                         (time.time(), result.model, json.dumps(asdict(result))))

    def measured_kl(self, model: str) -> dict[str, float]:
        """Mean KL by quant for a model, from its sweeps (the latest figure of each quant)."""
        with closing(sqlite3.connect(self.path)) as conn:
            rows = conn.execute("SELECT result FROM sweeps WHERE model = ? ORDER BY id", (model,)).fetchall()
        kl: dict[str, float] = {}
        for (text,) in rows:
            for row in json.loads(text)["rows"]:
                kl[row["quant"]] = row["kl_mean"]
        return kl
