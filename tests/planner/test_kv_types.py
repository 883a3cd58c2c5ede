"""KV cache types in the planner: K and V apart, names, and the type a context asked for needs to fit."""

from __future__ import annotations

import pytest

from homellm.errors import DoesNotFitError, InvalidRequestError
from homellm.hardware.compose import compose_hardware
from homellm.hardware.types import Hardware
from homellm.models.catalog import find_model
from homellm.planner.memory import kv_cache_bytes
from homellm.planner.plan import plan
from homellm.planner.quants import kv_label, kv_pair
from homellm.planner.serving import fit_for_serving

LLAMA_8B = "llama3.1:8b"


def ram_only(gb: float) -> Hardware:
    return compose_hardware(None, [], gb, "DDR5-5600 dual-channel")


def test_one_name_is_both_caches_and_a_slash_names_each():
    assert kv_pair("q8_0") == ("Q8_0", "Q8_0")
    assert kv_pair("Q8_0/f16") == ("Q8_0", "F16")
    assert kv_label("q4_0", "Q4_0") == "Q4_0" and kv_label("q8_0", "f16") == "Q8_0/F16"


@pytest.mark.parametrize("bad", ["q3_k", "q8_0/", "/f16", "q8_0/f16/f16", "", "fp8"])
def test_unknown_kv_types_are_refused_naming_the_known_ones(bad: str):
    with pytest.raises(InvalidRequestError) as info:
        kv_pair(bad)
    assert "q8_0" in info.value.hint


def test_k_and_v_apart_cost_the_mean_of_the_two_for_equal_head_sizes():
    shape = find_model(LLAMA_8B)
    both_f16, both_q8 = kv_cache_bytes(shape, 32768, "F16"), kv_cache_bytes(shape, 32768, "Q8_0")
    assert kv_cache_bytes(shape, 32768, "Q8_0/F16") == (both_f16 + both_q8) // 2
    assert plan(shape, ram_only(64), 32768, "q8_0/f16").placement.kv_type == "Q8_0/F16"


def _ctx_that_fits_only_with_q8(shape, hardware: Hardware) -> int:
    """The largest power-of-two context that does not fit with F16 and does with Q8_0."""
    ctx = 4096
    while plan(shape, hardware, ctx * 2, "F16", suggest=False).fits:
        ctx *= 2
    assert plan(shape, hardware, ctx * 2, "Q8_0", suggest=False).fits
    return ctx * 2


def test_a_context_given_that_fits_only_with_a_q8_cache_gets_one_and_says_so():
    shape, hardware = find_model(LLAMA_8B), ram_only(12)
    ctx = _ctx_that_fits_only_with_q8(shape, hardware)
    chosen = fit_for_serving(shape, hardware, ctx, 4096)
    assert (chosen.placement.ctx, chosen.placement.kv_type, chosen.fits) == (ctx, "Q8_0", True)
    assert "Q8_0 KV cache" in chosen.warnings[0] and "--kv-type f16" in chosen.warnings[0]
    assert "decodes slower" in chosen.warnings[0]  # a CPU-only machine: measured 0.70x at 4k


def test_with_a_gpu_the_chosen_cache_says_nothing_of_cpu_speed():
    shape, hardware = find_model(LLAMA_8B), compose_hardware(None, ["RTX 4060"], 8, "DDR5-5600 dual-channel")
    chosen = fit_for_serving(shape, hardware, _ctx_that_fits_only_with_q8(shape, hardware), 4096)
    assert chosen.placement.kv_type == "Q8_0"
    assert "decodes slower" not in chosen.warnings[0]


def test_a_kv_type_given_is_kept_even_when_another_would_fit():
    shape, hardware = find_model(LLAMA_8B), ram_only(12)
    ctx = _ctx_that_fits_only_with_q8(shape, hardware)
    with pytest.raises(DoesNotFitError) as info:
        fit_for_serving(shape, hardware, ctx, 4096, kv_type="F16")
    assert "q8_0" in info.value.hint.lower()  # the planner's own suggestion
    assert fit_for_serving(shape, hardware, 4096, 4096).placement.kv_type == "F16"  # fits: the default stays


def test_without_a_context_given_the_cache_stays_f16_and_the_context_halves():
    shape, hardware = find_model(LLAMA_8B), ram_only(12)
    chosen = fit_for_serving(shape, hardware, None, 131072)
    assert chosen.placement.kv_type == "F16" and chosen.fits and chosen.placement.ctx < 131072
