"""Plans of real GGUF files use their own tensor bytes, not the catalog's estimates."""

from __future__ import annotations

from pathlib import Path

from homellm.hardware.compose import compose_hardware
from homellm.models.gguf import read_model_facts
from homellm.models.shape import shape_from_facts
from homellm.planner.memory import kv_cache_bytes, split_weights
from homellm.planner.plan import plan


def test_the_builtin_models_shape(builtin_path: Path):
    shape = shape_from_facts("smollm2:135m", read_model_facts(builtin_path))
    assert (shape.layers, shape.kv_heads, shape.head_dim_k, shape.vocab) == (30, 3, 64, 49152)
    assert shape.weights_bytes == 96_576_768 and shape.quant == "Q4_1"
    # 30 layers x 3 KV heads x (64 + 64) x 2 bytes = 23,040 bytes per token
    assert kv_cache_bytes(shape, 4096) == 23_040 * 4096


def test_moe_file_counts_only_the_used_experts_as_active(tiny_moe_path: Path):
    facts = read_model_facts(tiny_moe_path)
    shape = shape_from_facts("tiny:moe", facts)
    assert shape.is_moe and shape.active_parameters < shape.parameters
    split = split_weights(shape, None)
    assert split.experts_per_layer * shape.layers == facts.expert_bytes


def test_a_file_plans_at_its_own_quant_and_exact_size(tiny_dense_path: Path):
    shape = shape_from_facts("tiny:dense", read_model_facts(tiny_dense_path))
    result = plan(shape, compose_hardware(None, [], 8, "DDR4-3200 dual-channel"), 1024)
    assert result.quant == "Q8_0" and result.weights_bytes == shape.weights_bytes and result.fits
