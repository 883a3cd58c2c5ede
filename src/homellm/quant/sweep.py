"""`homellm quant sweep`: one model at several quants, each measured against a 16-bit reference."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from homellm.engine.llama import EngineOptions, LlamaEngine
from homellm.models.gguf import ModelFacts
from homellm.models.resolve import ModelRef
from homellm.quant.evaluate import evaluate
from homellm.quant.quantize import UNQUANTIZED, check_type, run_quantizer

DEFAULT_TYPES = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K")
DECODE_STEPS = 64
Say = Callable[[str], None]


@dataclass(frozen=True)
class SweepRow:
    """One quant of the model, measured."""

    quant: str
    size_bytes: int
    bits_per_weight: float
    ppl: float
    kl_mean: float
    kl_p99: float
    kl_max: float
    top1_agreement: float
    decode_tps: float


@dataclass(frozen=True)
class Sweep:
    """Every quant measured on the same text against the same reference."""

    model: str
    reference: str  # the reference's type: F16 (made from the source when it is quantized), BF16 or F32
    reference_requantized: bool
    ref_ppl: float
    ctx: int
    chunks: int
    tokens: int
    rows: tuple[SweepRow, ...]


def sweep(source: ModelRef, facts: ModelFacts, types: tuple[str, ...], text: str, scratch: Path, ctx: int = 512,
          chunks: int | None = 8, threads: int | None = None, say: Say = lambda _: None) -> Sweep:
    """Quantize `source` to each type from a 16-bit reference and measure each; only the figures are kept."""
    checked = tuple(check_type(t) for t in types)
    work = scratch / f"sweep-{uuid.uuid4().hex}"
    work.mkdir(parents=True)
    try:
        current = (facts.file_type or "").upper()
        requantized = current not in UNQUANTIZED
        reference = source.path
        if requantized:
            say(f"making an F16 reference from {source.name} ({current})")
            reference = work / "reference-F16.gguf"
            run_quantizer(source.path, reference, "F16", True, threads)
        rows: list[SweepRow] = []
        ref_ppl, tokens = 0.0, 0
        for file_type in checked:
            say(f"quantizing to {file_type}")
            path = work / f"{file_type}.gguf"
            run_quantizer(reference, path, file_type, requantized, threads)
            say(f"measuring {file_type}")
            result = evaluate(path, text, ctx, chunks, ref=reference, threads=threads)
            size = path.stat().st_size
            rows.append(SweepRow(file_type, size, size * 8 / facts.parameters, result.ppl, result.kl_mean or 0.0,
                                 result.kl_p99 or 0.0, result.kl_max or 0.0, result.top1_agreement or 0.0,
                                 _decode_tps(path, threads)))
            ref_ppl, tokens = result.ref_ppl or 0.0, result.tokens
            path.unlink()
        return Sweep(source.name, "F16" if requantized else current, requantized, ref_ppl, ctx,
                     chunks or 0, tokens, tuple(rows))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _decode_tps(path: Path, threads: int | None) -> float:
    engine = LlamaEngine(path, EngineOptions(n_ctx=256, n_threads=threads))
    try:
        engine.fill(list(range(100, 132)))
        return DECODE_STEPS / engine.time_steps(100, DECODE_STEPS)
    finally:
        engine.close()
