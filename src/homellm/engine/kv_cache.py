"""KV cache types as llama.cpp takes them (`-ctk`/`-ctv`): the names homellm uses, and ggml's type ids."""

from __future__ import annotations

from homellm.planner.quants import kv_pair

# ggml's `enum ggml_type` values of the types llama.cpp accepts for its caches (the planner's KV_TYPES).
GGML_KV_TYPES: dict[str, int] = {"F32": 0, "F16": 1, "BF16": 30, "Q8_0": 8, "Q5_1": 7, "Q5_0": 6, "Q4_1": 3,
                                 "Q4_0": 2, "IQ4_NL": 20}
UNQUANTIZED = ("F32", "F16", "BF16")


def ggml_kv_types(kv_type: str) -> tuple[int, int]:
    """ggml's type ids of the K and V caches of `kv_type` (one name, or "K/V"); an unknown name is refused."""
    k, v = kv_pair(kv_type)
    return GGML_KV_TYPES[k], GGML_KV_TYPES[v]


def needs_flash_attention(kv_type: str) -> bool:
    """llama.cpp keeps a quantized V cache only with flash attention on."""
    return kv_pair(kv_type)[1] not in UNQUANTIZED
