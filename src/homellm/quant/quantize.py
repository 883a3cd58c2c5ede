"""`homellm quantize`: a model quantized by llama.cpp and registered in the store, or nothing at all."""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from homellm.engine.quantize import QuantizeReport, file_types, quantize_file
from homellm.errors import InvalidRequestError, ModelExistsError, StoreError
from homellm.models.gguf import ModelFacts
from homellm.models.names import normalize_name
from homellm.models.resolve import ModelRef
from homellm.models.shape import shape_from_facts
from homellm.models.store import Store, StoredModel
from homellm.planner.memory import weights_bytes
from homellm.planner.quants import QUANTS
from homellm.quant.imatrix import read_imatrix

UNQUANTIZED = ("F32", "F16", "BF16")
DISK_MARGIN = 1.10  # the prediction is per type, not per tensor; leave room
JOIN_SECONDS = 0.1


@dataclass(frozen=True)
class Quantized:
    """The stored result and what llama.cpp reported."""

    model: StoredModel
    report: QuantizeReport
    predicted_bytes: int


def check_type(name: str) -> str:
    """A type llama.cpp's quantizer writes, by its name; else an error listing them."""
    key = name.strip().upper().replace("-", "_")
    if key not in file_types():
        raise InvalidRequestError(f"{name!r} is not a type llama.cpp can quantize to",
                                  hint=f"one of: {', '.join(supported_types())}", param="to")
    return key


def supported_types() -> list[str]:
    """The quantizer's types, the common ones first."""
    common = [q.name for q in QUANTS if q.name in file_types()]
    return common + sorted(t for t in file_types() if t not in common)


def default_name(source: str, file_type: str) -> str:
    """smollm2:135m -> smollm2:135m-q8_0; a file's stem tiny-dense -> tiny-dense:q8_0."""
    return f"{source}-{file_type.lower()}" if ":" in source else f"{source}:{file_type.lower()}"


def quantize_model(store: Store, source: ModelRef, facts: ModelFacts, to: str, name: str | None = None,
                   allow_requantize: bool = False, threads: int | None = None,
                   progress: Callable[[int, int], None] | None = None, imatrix: Path | None = None) -> Quantized:
    """Quantize `source` to `to` and store it under `name`; on any failure or interruption nothing is left.

    `imatrix` is an importance matrix from llama-imatrix (GGUF format), which the IQ1-IQ3 types need.
    """
    file_type = check_type(to)
    current = (facts.file_type or "").upper()
    if current == file_type:
        raise InvalidRequestError(f"{source.name} is already {file_type}", hint="pick another --to", param="to")
    if current not in UNQUANTIZED and not allow_requantize:
        raise InvalidRequestError(
            f"{source.name} is already quantized ({current or 'unknown type'}); quantizing it again rounds "
            "already-rounded weights, so the result is worse than the same type made from F16 or BF16",
            hint="quantize the F16/BF16 original, or pass --allow-requantize to accept the loss", param="to")
    target_name = normalize_name(name or default_name(source.name, file_type))
    if store.exists(target_name):
        raise ModelExistsError(f"a model named {target_name} exists", hint="give another --name, or remove it first")
    importance = read_imatrix(imatrix) if imatrix is not None else None
    predicted = _predicted_bytes(source, facts, file_type)
    scratch = store.home / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(scratch).free
    if predicted * DISK_MARGIN > free:
        raise StoreError(f"{file_type} of {source.name} needs about {predicted / 1e9:.1f} GB and "
                         f"{free / 1e9:.1f} GB are free at {scratch}", hint="free disk space, or pick a smaller type")
    partial = scratch / f"quantize-{uuid.uuid4().hex}.gguf"
    try:
        report = run_quantizer(source.path, partial, file_type, allow_requantize, threads, progress, importance)
        stored = store.add([partial], target_name, f"quantized from {source.name} to {file_type}", move=True)
    finally:
        try:
            partial.unlink(missing_ok=True)  # interrupted or refused: no stray file
        except OSError:  # Windows keeps a file open by the quantizer; the interruption matters more
            pass
    return Quantized(stored, report, predicted)


def _predicted_bytes(source: ModelRef, facts: ModelFacts, file_type: str) -> int:
    known = {q.name for q in QUANTS}
    if file_type in known:
        return weights_bytes(shape_from_facts(source.name, facts), file_type)
    return facts.parameters * 2  # a type the planner has no table for: at most F16's size


def run_quantizer(source: Path, target: Path, file_type: str, allow_requantize: bool, threads: int | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  imatrix: dict[str, np.ndarray] | None = None) -> QuantizeReport:
    """The quantizer on a thread, so Ctrl-C reaches the caller's; a thread it leaves dies with the process.

    (llama.cpp logs through a Python callback on the thread that quantizes, where an
    interruption would be swallowed.)
    """
    outcome: dict[str, object] = {}

    def work() -> None:
        try:
            outcome["report"] = quantize_file(source, target, file_type, allow_requantize, threads, progress, imatrix)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="quantize", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(JOIN_SECONDS)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["report"]  # type: ignore[return-value]
