"""A quick read test of this machine's RAM bandwidth, for planning on the CPU.

Faulting in the probe's 256 MiB takes most of a second on some machines, and every
`plan`, `serve`, `run` and `chat` wants the figure: it is measured once per boot and kept.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

PROBE_BYTES = 256 << 20  # well past any cache
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")  # Linux: new at every boot
CACHE_FILE = "host-bandwidth.json"


def host_bandwidth_gbs(seconds: float, cache_dir: Path | None) -> float:
    """This machine's RAM bandwidth: probed once per boot, then read from `cache_dir` (None: always probed)."""
    boot = _boot_id()
    path = cache_dir / CACHE_FILE if cache_dir is not None and boot else None
    if path is not None and (saved := _saved(path, boot)) is not None:
        return saved
    gbs = probe_bandwidth_gbs(seconds)
    if path is not None:
        _save(path, boot, gbs)
    return gbs


def probe_bandwidth_gbs(seconds: float = 0.3) -> float:
    """The best GB/s of repeated sums over a 256 MiB array (one thread), within about `seconds`."""
    data = np.ones(PROBE_BYTES // 8, dtype=np.float64)
    data.sum()  # fault the pages in before timing
    best = 0.0
    deadline = time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        data.sum()
        elapsed = time.perf_counter() - start
        best = max(best, data.nbytes / elapsed / 1e9)
        if time.perf_counter() > deadline:
            return best


def _boot_id() -> str | None:
    try:
        return BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def _saved(path: Path, boot: str | None) -> float | None:
    """The figure saved during this boot, if the file holds a sane one."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    gbs = saved.get("gbs") if isinstance(saved, dict) and saved.get("boot") == boot else None
    return float(gbs) if isinstance(gbs, (int, float)) and not isinstance(gbs, bool) and 0 < gbs < 100_000 else None


def _save(path: Path, boot: str | None, gbs: float) -> None:
    """Keep the figure; a cache that cannot be written costs a probe next time, nothing more."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(handle, "w") as file:
            file.write(json.dumps({"boot": boot, "gbs": gbs}))
        os.replace(partial, path)
    except OSError:
        pass
