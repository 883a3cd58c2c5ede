"""What serve, run and chat load, and what a server loads on request: the planner's experts in RAM
become llama.cpp tensor overrides."""

from __future__ import annotations

from pathlib import Path

from homellm.hardware.compose import compose_hardware
from homellm.hardware.types import Device, Hardware
from homellm.models.gguf import read_model_facts
from homellm.models.resolve import ModelRef
from homellm.models.shape import shape_from_facts
from homellm.models.store import Store
from homellm.planner.overrides import n_cpu_moe, parse_override
from homellm.planner.plan import plan
from homellm.scheduler import Placement


def small_gpu_hardware(shape) -> Hardware:
    """A GPU just too small for the tiny MoE model whole, found by asking the planner."""
    host = compose_hardware(None, [], 16, "DDR4-3200 dual-channel").host
    for size in range(500 << 20, 700 << 20, 4096):
        gpu = Device(name="Small GPU", vendor="nvidia", kind="gpu", memory_bytes=size, bandwidth_gbs=300,
                     fp16_tflops=10, backend="cuda")
        hardware = Hardware((gpu, host))
        placement = plan(shape, hardware, 256).placement
        if placement.gpu_layers == shape.layers and placement.cpu_moe_layers:
            return hardware
    raise AssertionError("no GPU size puts experts in RAM")


def test_the_planners_experts_in_ram_are_loaded_as_overrides(tiny_moe_path: Path, tmp_path: Path):
    shape = shape_from_facts("tiny-moe", read_model_facts(tiny_moe_path))
    hardware = small_gpu_hardware(shape)
    ref = ModelRef("tiny-moe", tiny_moe_path)
    planned = Placement(Store(tmp_path / "home"), hardware).plan(ref, 256)
    layers = plan(shape, hardware, 256).placement.cpu_moe_layers
    assert planned.options.tensor_overrides == n_cpu_moe(layers) and planned.options.n_gpu_layers == -1
    given = (parse_override("exps=CPU"),)
    assert Placement(Store(tmp_path / "home"), hardware).plan(ref, 256, given).options.tensor_overrides == given


def test_a_dense_model_on_this_machine_gets_no_overrides(tiny_dense_path: Path, tmp_path: Path):
    ref = ModelRef("tiny-dense", tiny_dense_path)
    hardware = compose_hardware(None, ["RTX 3060 12GB"], 32, "DDR4-3200 dual-channel")
    assert Placement(Store(tmp_path / "home"), hardware).plan(ref, 256).options.tensor_overrides == ()
