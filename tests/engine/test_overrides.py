"""Tensor overrides: experts of the tiny MoE model kept in system RAM, as llama.cpp's log reports."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from homellm.cli.options import tensor_overrides
from homellm.engine.llama import EngineOptions, LlamaEngine
from homellm.errors import InvalidRequestError
from homellm.generation import SamplingParams
from homellm.models.resolve import ModelRef
from homellm.planner.overrides import (
    EXPERT_PATTERN,
    TensorOverride,
    cpu_moe,
    n_cpu_moe,
    parse_override,
)
from homellm.scheduler import Scheduler

EXPERTS = {f"blk.{layer}.ffn_{part}_exps.weight" for layer in (0, 1) for part in ("gate", "up", "down")}


def greedy_text(path: Path, overrides: tuple[TensorOverride, ...]) -> str:
    scheduler = Scheduler()
    scheduler.add(ModelRef("tiny:moe", path), EngineOptions(n_ctx=256, tensor_overrides=overrides)).wait_loaded()

    async def complete() -> str:
        generation = await scheduler.complete("tiny:moe", "The capital of France is",
                                              SamplingParams(max_tokens=16, temperature=0.0))
        text, finished = await generation.collect()
        assert finished.completion_tokens >= 1
        return text

    try:
        return asyncio.run(complete())
    finally:
        scheduler.close()


def test_cpu_moe_places_every_expert_tensor_in_ram_as_llama_cpp_reports(tiny_moe_path: Path):
    engine = LlamaEngine(tiny_moe_path, EngineOptions(n_ctx=256, tensor_overrides=cpu_moe()))
    try:
        assert engine.placements == {name: "CPU" for name in EXPERTS}
        assert engine.unmatched_overrides == []
    finally:
        engine.close()


def test_n_cpu_moe_places_only_the_first_layers_experts(tiny_moe_path: Path):
    engine = LlamaEngine(tiny_moe_path, EngineOptions(n_ctx=256, tensor_overrides=n_cpu_moe(1)))
    try:
        assert set(engine.placements) == {name for name in EXPERTS if name.startswith("blk.0.")}
    finally:
        engine.close()


def test_the_same_greedy_text_with_and_without_experts_in_ram(tiny_moe_path: Path):
    assert greedy_text(tiny_moe_path, cpu_moe()) == greedy_text(tiny_moe_path, ())


def test_patterns_that_match_nothing_are_reported(tiny_moe_path: Path, tiny_dense_path: Path):
    stray = TensorOverride(r"blk\.7\.attn_q")
    engine = LlamaEngine(tiny_moe_path, EngineOptions(n_ctx=256, tensor_overrides=(stray, *cpu_moe())))
    try:
        assert engine.unmatched_overrides == [stray.pattern] and len(engine.placements) == 6
    finally:
        engine.close()
    dense = LlamaEngine(tiny_dense_path, EngineOptions(n_ctx=256, tensor_overrides=cpu_moe()))
    try:
        assert dense.unmatched_overrides == [EXPERT_PATTERN] and dense.placements == {}
    finally:
        dense.close()


@pytest.mark.parametrize("text, message", [
    ("blk\\.(=CPU", "not a regular expression"),
    ("ffn_up_exps", "not PATTERN=DEVICE"),
    ("=CPU", "not PATTERN=DEVICE"),
    ("ffn_up_exps=", "not PATTERN=DEVICE"),
])
def test_a_bad_override_is_a_clear_error(text: str, message: str):
    with pytest.raises(InvalidRequestError, match=message):
        parse_override(text)


def test_an_unknown_device_names_the_devices_there_are(tiny_moe_path: Path):
    with pytest.raises(InvalidRequestError, match="no device named 'GPU7'") as info:
        LlamaEngine(tiny_moe_path, EngineOptions(n_ctx=256, tensor_overrides=(parse_override("exps=GPU7"),)))
    assert "CPU" in info.value.hint


def test_command_line_overrides_put_explicit_patterns_first():
    assert tensor_overrides(False, None, None) is None
    ordered = tensor_overrides(False, 2, [r"blk\.5\..*=CPU"])
    assert ordered is not None and [o.pattern for o in ordered][0] == r"blk\.5\..*"
    assert len(ordered) == 3
    with pytest.raises(InvalidRequestError, match="--cpu-moe and --n-cpu-moe"):
        tensor_overrides(True, 3, None)


def test_comma_separated_overrides_split_as_llama_server_splits_them():
    ordered = tensor_overrides(False, None, [r"exps=CPU,attn_q=CPU"])
    assert ordered == (TensorOverride("exps", "CPU"), TensorOverride("attn_q", "CPU"))
