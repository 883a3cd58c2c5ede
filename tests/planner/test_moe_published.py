"""The MoE planner against published runs with experts in system RAM (llama.cpp's --n-cpu-moe).

Each row is a measurement someone published, with the placement they used; the planner is
asked for the same placement (`cpu_moe_layers`) and must land within 20% of it.
"""

from __future__ import annotations

import pytest

from homellm.hardware.compose import compose_hardware
from homellm.models.catalog import find_model
from homellm.planner.plan import plan

PUBLISHED = [
    # model, quant, GPUs, RAM GB, host memory, --n-cpu-moe, tok/s, source
    ("qwen3:30b-a3b", "Q4_K_M", ("RTX 2080",), 64, "DDR4-3200 quad-channel", 36, 36.7,
     "https://github.com/AlexsJones/llmfit/pull/755 (i9-10900X, ~102 GB/s measured)"),
    ("gpt-oss:20b", "Q4_K_M", ("RTX 2080",), 64, "DDR4-3200 quad-channel", 12, 36.4,
     "https://github.com/AlexsJones/llmfit/pull/775 (same RTX 2080 box; the file is MXFP4)"),
    ("gpt-oss:120b", "Q4_K_M", ("RTX 5090", "RTX 5090"), 128, "DDR5-6000 dual-channel", 3, 108.0,
     "https://github.com/ggml-org/llama.cpp/pull/15077 (host memory not given; the file is MXFP4)"),
]


@pytest.mark.parametrize("model, quant, gpus, ram, memory, n_cpu_moe, published, source", PUBLISHED,
                         ids=[row[0] for row in PUBLISHED])
def test_decode_with_experts_in_ram_matches_published_runs(model, quant, gpus, ram, memory, n_cpu_moe,
                                                           published, source):
    result = plan(find_model(model), compose_hardware(None, list(gpus), ram, memory), 4096, quant_name=quant,
                  cpu_moe_layers=n_cpu_moe)
    assert result.placement.cpu_moe_layers == n_cpu_moe and result.placement.gpu_layers == find_model(model).layers
    assert abs(result.decode_tps - published) / published < 0.20, (result.decode_tps, source)


def test_qwen3_30b_on_a_3060_fits_only_with_experts_in_ram_at_a_published_rate():
    # Published on an RTX 3060 12GB: 22.9 tok/s for a 35B-A3B at IQ3_XXS on a Xeon E5-2650 v4 with
    # -ncmoe (https://jeanfbrito.github.io/posts/running-qwen3.6-35b-moe-rtx3060-ncmoe/), 35-45 tok/s
    # for Qwen3 35B-A3B Q4_K_M without MTP on a Zen 3 desktop
    # (https://specpicks.com/reviews/qwen3-35b-a3b-12gb-rtx-3060-llamacpp-2026).
    shape = find_model("qwen3:30b-a3b")
    hardware = compose_hardware(None, ["RTX 3060 12GB"], 32, "DDR4-3200 dual-channel")
    result = plan(shape, hardware, 4096, quant_name="Q4_K_M")
    assert result.fits and result.placement.gpu_layers == shape.layers and result.placement.cpu_moe_layers > 0
    assert 20 <= result.decode_tps <= 45
    whole = plan(shape, hardware, 4096, quant_name="Q4_K_M", cpu_moe_layers=0)
    assert not whole.fits
    one_fewer = plan(shape, hardware, 4096, quant_name="Q4_K_M", cpu_moe_layers=result.placement.cpu_moe_layers - 1)
    assert not one_fewer.fits  # the smallest number of layers that fits


def test_a_dense_model_never_gets_experts_in_ram():
    hardware = compose_hardware(None, ["RTX 3060 12GB"], 32, "DDR4-3200 dual-channel")
    result = plan(find_model("qwen2.5:32b"), hardware, 4096, quant_name="Q4_K_M")
    assert result.placement.cpu_moe_layers == 0 and result.placement.gpu_layers < find_model("qwen2.5:32b").layers
    from homellm.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="no experts"):
        plan(find_model("qwen2.5:32b"), hardware, 4096, quant_name="Q4_K_M", cpu_moe_layers=4)


def test_suggestions_for_a_given_n_cpu_moe_keep_it():
    hardware = compose_hardware(None, ["RTX 3060 12GB"], 32, "DDR4-3200 dual-channel")
    result = plan(find_model("qwen3:30b-a3b"), hardware, 4096, quant_name="Q4_K_M", cpu_moe_layers=0)
    assert not result.fits
    for suggestion in result.suggestions:  # each was planned with every expert still on the GPU
        if "Q8_0 KV cache" in suggestion.change:
            assert not suggestion.fits
