"""KV cache types on the real engine: the type reaches llama.cpp's cache, and answers survive a quantized one."""

from __future__ import annotations

from pathlib import Path

import llama_cpp
import pytest

from homellm.engine.kv_cache import ggml_kv_types, needs_flash_attention
from homellm.engine.llama import EngineOptions, LlamaEngine
from homellm.errors import InvalidRequestError
from homellm.generation import SamplingParams

PROMPT = "The capital of France is Paris. The capital of Germany is Berlin. " * 8


def cached_state_bytes(path: Path, kv_type: str) -> tuple[int, int]:
    """The serialized state of one sequence after PROMPT (its cells, at the cache's types), and the
    token greedy decoding picks next."""
    engine = LlamaEngine(path, EngineOptions(n_ctx=512, kv_type=kv_type))
    try:
        batch = engine.new_batch()
        tokens = engine.tokenize(PROMPT)
        index = batch.add_run(tokens, 0, 0, logits_last=True)
        engine.decode(batch)
        sampler = engine.sampler(SamplingParams(temperature=0.0, repeat_penalty=1.0), None)
        try:
            token = engine.sample(sampler, index)
        finally:
            sampler.close()
        return engine.sequence_state_bytes(0), token
    finally:
        engine.close()


def test_a_quantized_cache_holds_its_block_size_per_element_and_keeps_the_answer(builtin_path: Path):
    f16, f16_token = cached_state_bytes(builtin_path, "F16")
    q8, q8_token = cached_state_bytes(builtin_path, "Q8_0")
    q4, _ = cached_state_bytes(builtin_path, "Q4_0")
    split, _ = cached_state_bytes(builtin_path, "Q8_0/F16")
    # The state is the cells' K and V bytes plus a few fixed fields: ratios within 2% of the block sizes.
    assert q8 / f16 == pytest.approx(34 / 64, rel=0.02)
    assert q4 / f16 == pytest.approx(18 / 64, rel=0.02)
    assert split / f16 == pytest.approx((34 / 64 + 1) / 2, rel=0.02)
    assert q8_token == f16_token  # the same next token after a repetitive prompt


def test_kv_type_names_map_to_ggml_types_and_a_quantized_v_needs_flash_attention():
    assert ggml_kv_types("q8_0") == (llama_cpp.GGML_TYPE_Q8_0, llama_cpp.GGML_TYPE_Q8_0)
    assert ggml_kv_types("F16/Q4_0") == (llama_cpp.GGML_TYPE_F16, llama_cpp.GGML_TYPE_Q4_0)
    assert needs_flash_attention("f16/q8_0") and not needs_flash_attention("q8_0/f16")


def test_an_unknown_kv_type_is_refused_before_anything_loads(builtin_path: Path):
    with pytest.raises(InvalidRequestError, match="'q3_k' is not a KV cache type"):
        LlamaEngine(builtin_path, EngineOptions(n_ctx=256, kv_type="q3_k"))
