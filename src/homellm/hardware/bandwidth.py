"""A quick read test of this machine's RAM bandwidth, for planning on the CPU."""

from __future__ import annotations

import time

import numpy as np

PROBE_BYTES = 256 << 20  # well past any cache


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
