"""One model split over several machines (llama.cpp RPC): placement, speed, link cost, suggestions, refusals."""

from __future__ import annotations

import re

import pytest

from homellm.errors import InvalidRequestError
from homellm.models.catalog import find_model
from homellm.planner.memory import kv_cache_bytes, split_weights
from homellm.planner.quants import QUANTS, quant
from homellm.planner.split import (
    SPLIT_EFFICIENCY,
    Machine,
    parse_worker,
    parse_workers,
    plan_split,
    split_dict,
)

GB = 1e9
LLAMA_70B = find_model("llama3.1:70b")
THREE = parse_workers(["gpu1:24:936", "gpu2:24:936", "box:64:60"])
TWO_GPUS = THREE[:2]


def test_70b_over_two_gpus_and_a_box_fills_the_fast_machines_first():
    ctx = 32768
    result = plan_split(LLAMA_70B, THREE, ctx, quant_name="Q4_K_M")
    gpu1, gpu2, box = result.shares
    assert result.fits and result.short_bytes == 0 and not result.suggestions
    assert [s.machine.name for s in result.shares] == ["gpu1", "gpu2", "box"]  # llama.cpp's order, as given
    assert sum(s.layers for s in result.shares) == LLAMA_70B.layers
    assert all(s.fits and s.total_bytes <= s.machine.memory_bytes for s in result.shares)
    # By memory alone (llama.cpp's default tensor split) each GPU would get 24/112 of the layers.
    memory_share = LLAMA_70B.layers * 24 / (24 + 24 + 64)
    assert gpu1.layers > memory_share and gpu2.layers > memory_share
    # Bandwidth first: neither GPU has room for one more layer, and the slow box holds only the rest.
    weights = split_weights(LLAMA_70B, "Q4_K_M")
    one_layer = weights.per_layer + kv_cache_bytes(LLAMA_70B, ctx, "F16", 1)
    assert all(s.total_bytes + one_layer > s.machine.memory_bytes for s in (gpu1, gpu2))
    assert 0 < box.layers < gpu1.layers
    # Only the serving machine holds the embeddings and the output head.
    assert gpu1.weights_bytes == gpu1.layers * weights.per_layer + weights.token_embd + weights.output
    assert gpu2.weights_bytes == gpu2.layers * weights.per_layer
    alone = plan_split(LLAMA_70B, THREE[2:], ctx, quant_name="Q4_K_M")
    assert alone.fits and result.decode_tps > alone.decode_tps


def test_decode_time_is_the_machines_reads_plus_the_link():
    result = plan_split(LLAMA_70B, THREE, 32768, quant_name="Q4_K_M")
    seconds = sum(s.seconds_per_token for s in result.shares) + result.link.seconds_per_token
    assert result.decode_tps == pytest.approx(1 / seconds)
    box = result.shares[2]
    # The box reads its layers' weights at least, at its bandwidth times the efficiency.
    assert box.seconds_per_token > box.weights_bytes / (60 * GB * SPLIT_EFFICIENCY)


def test_a_moe_model_reads_only_its_used_experts():
    shape = find_model("qwen3:30b-a3b")
    result = plan_split(shape, parse_workers(["a:10:500", "b:24:500"]), 4096, quant_name="Q4_K_M")
    worker = result.shares[1]
    assert worker.layers > 0  # 18 GB of weights do not fit the 10 GB serving machine
    assert worker.seconds_per_token < 0.5 * worker.weights_bytes / (500 * GB * SPLIT_EFFICIENCY)


def test_q8_70b_on_two_gpus_is_short_and_names_a_quant_that_fits():
    result = plan_split(LLAMA_70B, TWO_GPUS, 8192, quant_name="Q8_0")
    assert not result.fits and result.short_bytes > 0
    overflow = sum(max(0, s.total_bytes - s.machine.memory_bytes) for s in result.shares)
    assert result.short_bytes == overflow
    assert sum(s.layers for s in result.shares) == LLAMA_70B.layers  # every layer is still placed somewhere
    named = [m.group(1) for s in result.suggestions if (m := re.search(r"--quant (\w+)", s))]
    assert len(named) == 1, result.suggestions
    suggested = quant(named[0])
    assert suggested.bits_per_weight < quant("Q8_0").bits_per_weight
    assert plan_split(LLAMA_70B, TWO_GPUS, 8192, quant_name=suggested.name).fits
    # It is the best-quality one that fits: every quant ranked above it (and smaller than Q8_0) does not.
    above = QUANTS[:QUANTS.index(suggested)]
    for q in above:
        if q.bits_per_weight < quant("Q8_0").bits_per_weight and not q.name.endswith("_MOE"):
            assert not plan_split(LLAMA_70B, TWO_GPUS, 8192, quant_name=q.name).fits, q.name


def test_the_added_machine_suggestion_is_the_smallest_that_fits():
    result = plan_split(LLAMA_70B, TWO_GPUS, 8192, quant_name="Q8_0")
    match = next(m for s in result.suggestions if (m := re.search(r"--worker (\w+):(\d+):([\d.]+)", s)))
    name, gb, bandwidth = match.group(1), int(match.group(2)), float(match.group(3))
    assert name not in {"gpu1", "gpu2"}

    def with_extra(size: int) -> bool:
        extra = Machine(name, int(size * GB), bandwidth * GB)
        return plan_split(LLAMA_70B, (*TWO_GPUS, extra), 8192, quant_name="Q8_0").fits

    assert with_extra(gb) and not with_extra(gb - 1)


def test_a_context_too_long_is_met_with_a_shorter_one_that_fits():
    result = plan_split(LLAMA_70B, TWO_GPUS, 131072, quant_name="Q4_K_M")
    assert not result.fits
    shorter = next(int(m.group(1)) for s in result.suggestions if (m := re.search(r"--ctx (\d+)", s)))
    assert shorter < 131072 and plan_split(LLAMA_70B, TWO_GPUS, shorter, quant_name="Q4_K_M").fits
    assert "does not fit" in result.explanation and "gpu" in result.explanation


def test_a_faster_link_costs_less():
    result = plan_split(LLAMA_70B, THREE, 32768, quant_name="Q4_K_M")
    slow, fast = result.link_costs
    assert (slow.gbit, fast.gbit) == (1.0, 10.0)
    assert fast.seconds_per_token < slow.seconds_per_token
    assert fast.prefill_seconds_per_batch < slow.prefill_seconds_per_batch
    # Two workers hold layers; each costs 1 round trip of 0.2 ms and 2 transfers of 8192 F32 values.
    transfer = 8192 * 4 * 8 / 1e9
    assert slow.seconds_per_token == pytest.approx(2 * (0.0002 + 2 * transfer))
    assert slow.prefill_seconds_per_batch == pytest.approx(2 * (0.0002 + 2 * 512 * transfer))
    assert result.link == slow  # the default link is 1 Gbit/s
    faster = plan_split(LLAMA_70B, THREE, 32768, quant_name="Q4_K_M", link_gbit=10)
    assert faster.link == fast and faster.decode_tps > result.decode_tps
    assert "1 Gbit/s" in result.explanation and "10 Gbit/s" in result.explanation


def test_no_worker_holding_layers_costs_no_link():
    shape = find_model("llama3.1:8b")
    machines = parse_workers(["big:80:936", "box:64:60"])
    result = plan_split(shape, machines, 8192, quant_name="Q4_K_M")
    big, box = result.shares
    assert result.fits and big.layers == shape.layers and box.layers == 0
    assert box.total_bytes == 0  # an unused worker holds nothing, not even a compute buffer
    assert result.link.seconds_per_token == 0 and all(c.seconds_per_token == 0 for c in result.link_costs)
    alone = plan_split(shape, machines[:1], 8192, quant_name="Q4_K_M")
    assert result.decode_tps == pytest.approx(alone.decode_tps)
    assert "costs nothing" in result.explanation


def test_split_dict_is_json_ready():
    data = split_dict(plan_split(LLAMA_70B, THREE, 32768, quant_name="Q4_K_M"))
    assert [m["name"] for m in data["machines"]] == ["gpu1", "gpu2", "box"]
    assert data["machines"][0]["serves"] and not data["machines"][1]["serves"]
    assert data["machines"][0]["bandwidth_gbs"] == 936
    assert [c["gbit"] for c in data["link_costs"]] == [1.0, 10.0] and data["fits"] is True


def test_parse_worker_reads_gb_and_gb_per_second():
    machine = parse_worker("gpu1:24:936")
    assert machine == Machine("gpu1", 24_000_000_000, 936e9)
    # An RPC endpoint's host:port is a name too: only the last two fields are numbers.
    assert parse_worker("10.0.0.5:50052:12.5:60").name == "10.0.0.5:50052"


@pytest.mark.parametrize("text, words", [
    ("gpu:24", ["NAME:GB:BW"]),
    ("gpu", ["NAME:GB:BW"]),
    ("gpu:abc:10", ["abc", "not a number"]),
    ("gpu:24:fast", ["fast", "not a number"]),
    ("gpu:-1:10", ["-1"]),
    ("gpu:0:10", ["'0'"]),
    ("gpu:24:0", ["'0'", "bandwidth"]),
    ("gpu:nan:10", ["nan"]),
    ("gpu:24:inf", ["inf"]),
    (":24:10", ["no name"]),
])
def test_bad_workers_are_refused(text: str, words: list[str]):
    with pytest.raises(InvalidRequestError) as caught:
        parse_worker(text)
    assert all(w in caught.value.message for w in words), caught.value.message
    assert caught.value.hint


def test_duplicate_and_missing_workers_are_refused():
    with pytest.raises(InvalidRequestError, match="twice"):
        parse_workers(["a:24:936", "b:24:936", "a:64:60"])
    with pytest.raises(InvalidRequestError):
        parse_workers([])


@pytest.mark.parametrize("kwargs", [{"link_gbit": 0}, {"link_gbit": float("nan")}, {"ctx": 0}, {"kv_type": "q3_k"}])
def test_impossible_split_requests_are_refused(kwargs: dict):
    args = {"ctx": 4096} | kwargs
    with pytest.raises(InvalidRequestError):
        plan_split(LLAMA_70B, THREE, **args)
    with pytest.raises(InvalidRequestError):
        plan_split(LLAMA_70B, (), 4096)
