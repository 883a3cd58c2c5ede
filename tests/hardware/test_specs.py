"""The device database: enough devices, each with a source, and the published figures REFERENCE.md names."""

from __future__ import annotations

import pytest

from homellm.hardware.specs import devices, find_device
from homellm.models.catalog import catalog


def test_at_least_40_devices_each_with_a_source():
    rows = devices()
    assert len(rows) >= 40
    assert all(d.source.startswith("http") for d in rows)
    assert {d.vendor for d in rows} >= {"nvidia", "amd", "intel", "apple", "cpu"}


@pytest.mark.parametrize("name, bandwidth", [("RTX 3090", 936), ("RTX 4090", 1008), ("RTX 5090", 1792),
                                             ("RX 7900 XTX", 960), ("Arc A770", 560)])
def test_published_bandwidths(name: str, bandwidth: float):
    assert find_device(name).bandwidth_gbs == bandwidth


def test_dual_channel_ddr4_3200_is_51_2_gbs():
    device = find_device("DDR4-3200 dual-channel")
    assert device.kind == "cpu" and device.bandwidth_gbs == pytest.approx(51.2)


def test_the_catalog_has_the_models_the_issue_names():
    names = {shape.name for shape in catalog().values()}
    assert len(names) >= 20
    assert {"llama3.1:8b", "llama3.1:70b", "qwen3:8b", "qwen3:30b-a3b", "gemma3:27b", "gpt-oss:20b",
            "gpt-oss:120b", "deepseek-r1:671b"} <= names


def test_catalog_moe_models_have_fewer_active_parameters():
    for shape in {s.name: s for s in catalog().values()}.values():
        if shape.is_moe:
            assert 0 < shape.active_parameters < shape.parameters and shape.experts_used < shape.experts
        else:
            assert shape.active_parameters == shape.parameters
