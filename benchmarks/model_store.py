"""How fast the store reads a GGUF header, refuses hostile ones, and imports a file.

Prints, in one run:
- header read of the built-in model (98 MB, 49k-token vocabulary): homellm's checked reader
  against `gguf.GGUFReader` (llama.cpp's Python reader), medians of several reads;
- hostile headers: the time to refuse each, and what each reader raises;
- `Store.add` of the built-in model (copy, sha256, header check, rename) against a plain
  `shutil.copyfile` of the same file, as MB/s.

Usage: python benchmarks/model_store.py [--repeat N]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import gguf

from homellm.models.builtin import builtin_model_path
from homellm.models.gguf import read_model_facts
from homellm.models.store import Store


def timed(action: Callable[[], object], repeat: int) -> float:
    """Median seconds of `repeat` runs."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def hostile_files(folder: Path) -> dict[str, Path]:
    """Small files whose headers lie."""
    def write(name: str, body: bytes) -> Path:
        path = folder / f"{name}.gguf"
        path.write_bytes(body + b"\0" * 256)
        return path

    head = b"GGUF" + struct.pack("<I", 3)
    key = struct.pack("<Q", 7) + b"general"
    return {
        "2^60 tensors": write("tensors", head + struct.pack("<QQ", 1 << 60, 0)),
        "2^60 keys": write("keys", head + struct.pack("<QQ", 0, 1 << 60)),
        "2^40-byte string": write("string", head + struct.pack("<QQ", 0, 1) + struct.pack("<Q", 1 << 40)),
        "2^60-item array": write("array", head + struct.pack("<QQ", 0, 1) + key + struct.pack("<IIQ", 9, 4, 1 << 60)),
        "tensor past the end": write("offset", head + struct.pack("<QQ", 1, 0) + struct.pack("<Q", 1) + b"t"
                                     + struct.pack("<IQIQ", 1, 8, 0, 1 << 40)),
    }


def outcome(action: Callable[[], object]) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        action()
        result = "accepted"
    except Exception as exc:  # which error each reader raises is what is measured
        result = type(exc).__name__
    return time.perf_counter() - start, result


GUARD_BYTES = 4 << 30
_PROBE = """
import sys, time, gguf
start = time.perf_counter()
try:
    gguf.GGUFReader(sys.argv[1])
    result = "accepted"
except Exception as exc:
    result = type(exc).__name__
print(f"{time.perf_counter() - start} {result}")
"""


def guarded_reader_outcome(path: Path) -> tuple[float, str]:
    """GGUFReader on a hostile file, in a child limited to 4 GiB and 60 s: some of them exhaust memory."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (GUARD_BYTES, GUARD_BYTES))

    start = time.perf_counter()
    try:
        child = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True,
                               timeout=60, preexec_fn=limit)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - start, "still running after 60 s"
    if child.returncode != 0:
        return time.perf_counter() - start, f"child died (exit {child.returncode}, over 4 GiB?)"
    seconds, result = child.stdout.split(maxsplit=1)
    return float(seconds), result.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    model = builtin_model_path()

    ours = timed(lambda: read_model_facts(model), args.repeat)
    theirs = timed(lambda: gguf.GGUFReader(model), max(1, args.repeat // 2))
    print(f"header of {model.name} ({model.stat().st_size / 1e6:.0f} MB), median of {args.repeat}:")
    print(f"  homellm read_model_facts   {ours * 1000:8.1f} ms")
    print(f"  gguf.GGUFReader            {theirs * 1000:8.1f} ms   ({theirs / ours:.1f}x homellm's time)")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print("\nhostile headers (time to refuse, what is raised):")
        for label, path in hostile_files(folder).items():
            our_time, our_error = outcome(lambda: read_model_facts(path))
            their_time, their_error = guarded_reader_outcome(path)
            print(f"  {label:22} homellm {our_time * 1000:6.2f} ms {our_error:24} "
                  f"GGUFReader {their_time * 1000:6.2f} ms {their_error}")

        size_mb = model.stat().st_size / 1e6
        copies, imports = [], []
        for round_ in range(args.repeat):
            target = folder / f"copy-{round_}.gguf"
            start = time.perf_counter()
            shutil.copyfile(model, target)
            copies.append(time.perf_counter() - start)
            target.unlink()
            store = Store(folder / f"home-{round_}")
            start = time.perf_counter()
            store.add([model], "bench:copy", "benchmark")
            imports.append(time.perf_counter() - start)
            shutil.rmtree(folder / f"home-{round_}")
        copy_rate = size_mb / statistics.median(copies)
        import_rate = size_mb / statistics.median(imports)
        print(f"\nimport of {size_mb:.0f} MB, median of {args.repeat}:")
        print(f"  shutil.copyfile                      {copy_rate:8.0f} MB/s")
        print(f"  Store.add (copy, sha256, check, fsync) {import_rate:6.0f} MB/s   "
              f"({import_rate / copy_rate:.2f}x the plain copy)")


if __name__ == "__main__":
    main()
