"""GGUF quant types: bits per weight as llama.cpp writes whole files, and their published quality.

File-level bits per weight are higher than the block sizes alone, because the
K-quant mixes keep some tensors (attn_v, ffn_down, output) at higher
precision. Figures: llama.cpp tools/quantize/README.md (Llama-3.1-8B files)
and the tools/perplexity/README.md "LLaMA 3 8b Scoreboard" (mean KL divergence
against F16, Wikitext-2), as collected in ../shared/research/planners.md §5.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from homellm.errors import InvalidRequestError


@dataclass(frozen=True)
class Quant:
    """One GGUF file type as the planner sees it."""

    name: str
    bits_per_weight: float
    kl_mean: float | None  # mean KL divergence from F16 on Llama-3-8B; None where unpublished
    speed_factor: float  # decode efficiency relative to Q4_K (dequantisation cost), planners.md §4.8


# What a model is planned at when neither a file nor the user names a quant (Ollama's default too).
DEFAULT_QUANT = "Q4_K_M"

# Ordered from best quality to smallest.
QUANTS: tuple[Quant, ...] = (
    Quant("F32", 32.0, 0.0, 1.25),
    Quant("BF16", 16.0, 0.00055, 1.25),
    Quant("F16", 16.0, 0.00055, 1.25),
    Quant("Q8_0", 8.50, 0.00136, 1.2),
    Quant("Q6_K", 6.56, 0.00545, 1.08),
    Quant("Q5_K_M", 5.70, 0.01076, 1.08),
    Quant("Q5_K_S", 5.57, 0.01660, 1.08),
    Quant("Q5_0", 5.54, None, 1.05),
    Quant("Q4_K_M", 4.89, 0.03127, 1.0),
    Quant("IQ4_NL", 4.68, 0.03574, 1.0),
    Quant("Q4_K_S", 4.67, 0.04314, 1.0),
    Quant("Q4_1", 5.0, None, 1.0),
    Quant("Q4_0", 4.64, 0.07194, 1.0),
    Quant("IQ4_XS", 4.46, 0.03633, 0.98),
    Quant("MXFP4_MOE", 4.25, None, 1.0),
    Quant("Q3_K_L", 4.30, 0.08718, 0.9),
    Quant("Q3_K_M", 4.00, 0.10191, 0.9),
    Quant("IQ3_M", 3.76, 0.10253, 0.85),
    Quant("Q3_K_S", 3.64, 0.22822, 0.9),
    Quant("IQ3_XXS", 3.25, 0.18363, 0.8),
    Quant("Q2_K", 3.16, 0.44513, 0.7),
    Quant("IQ2_M", 2.93, 0.32599, 0.65),
    Quant("IQ2_XXS", 2.38, 0.81202, 0.6),
    Quant("IQ1_S", 2.00, 2.21, 0.55),
)
_BY_NAME = {q.name: q for q in QUANTS}

# Bytes per cached element of each KV cache type (block bytes / block size); planners.md §5.2.
KV_TYPES: dict[str, float] = {"F32": 4.0, "F16": 2.0, "BF16": 2.0, "Q8_0": 34 / 32, "Q5_1": 24 / 32,
                              "Q5_0": 22 / 32, "Q4_1": 20 / 32, "Q4_0": 18 / 32, "IQ4_NL": 18 / 32}

# Quality bands of mean KL divergence (planners.md §5.2).
BANDS = ((0.01, "indistinguishable"), (0.04, "good"), (0.12, "noticeable"), (float("inf"), "degraded"))


def quant(name: str) -> Quant:
    """A quant by name (case-insensitive); an unknown one is refused with the closest names."""
    key = name.strip().upper().replace("-", "_")
    if key in _BY_NAME:
        return _BY_NAME[key]
    close = difflib.get_close_matches(key, list(_BY_NAME), n=3, cutoff=0.5)
    raise InvalidRequestError(f"{name!r} is not a GGUF quant type homellm knows",
                              hint=f"did you mean {', '.join(close)}?" if close else
                              f"known: {', '.join(_BY_NAME)}", param="quant")


def kv_bytes_per_element(kv_type: str) -> float:
    """Bytes per element of a KV cache type; an unknown one is refused."""
    return KV_TYPES[kv_type_name(kv_type)]


def kv_type_name(kv_type: str, param: str = "kv_type") -> str:
    """A KV cache type's name as llama.cpp spells it, upper-case (q8_0: Q8_0); an unknown one is refused."""
    key = kv_type.strip().upper()
    if key not in KV_TYPES:
        raise InvalidRequestError(f"{kv_type!r} is not a KV cache type",
                                  hint=f"use one of {', '.join(k.lower() for k in KV_TYPES)}", param=param)
    return key


def kv_pair(kv_type: str) -> tuple[str, str]:
    """The K and V cache types of a KV type: one name for both ("Q8_0"), or "K/V" ("Q8_0/F16")."""
    k, slash, v = kv_type.partition("/")
    return kv_type_name(k), kv_type_name(v if slash else k)


def kv_label(k: str, v: str) -> str:
    """The KV type of a K and a V cache type: one name when they agree, else "K/V"."""
    k, v = kv_type_name(k), kv_type_name(v)
    return k if k == v else f"{k}/{v}"


def quality_band(kl_mean: float | None) -> str:
    """How a quant's loss reads to a person."""
    if kl_mean is None:
        return "unmeasured"
    return next(label for limit, label in BANDS if kl_mean < limit)
