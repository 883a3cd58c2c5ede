"""Where weights go, as llama-server's options say it: --cpu-moe, --n-cpu-moe, --override-tensor."""

from __future__ import annotations

from typing import Annotated

import typer

from homellm.engine.overrides import TensorOverride, cpu_moe, n_cpu_moe, parse_overrides
from homellm.errors import InvalidRequestError

CpuMoeOption = Annotated[bool, typer.Option(
    "--cpu-moe", help="Keep every expert tensor of a mixture-of-experts model in system RAM.")]
NCpuMoeOption = Annotated[int | None, typer.Option(
    "--n-cpu-moe", min=0, help="Keep the experts of the first N layers in system RAM [default: the planner's choice].")]
OverrideTensorOption = Annotated[list[str] | None, typer.Option(
    "--override-tensor", "-ot", help=r"PATTERN=DEVICE[,PATTERN=DEVICE...]: tensors whose names match go to that "
                                     r"device's memory (repeatable; e.g. 'blk\.[0-9]\.ffn_.*_exps=CPU'). On serve it "
                                     r"applies to --model; models loaded on request get the planner's placement.")]


def tensor_overrides(all_experts: bool, first_layers: int | None,
                     patterns: list[str] | None) -> tuple[TensorOverride, ...] | None:
    """The overrides asked for on the command line, or None to let the planner place experts.

    Explicit patterns come first, so they win over --cpu-moe and --n-cpu-moe, as in llama-server.
    """
    if all_experts and first_layers is not None:
        raise InvalidRequestError("--cpu-moe and --n-cpu-moe say the same thing twice",
                                  hint="give one: --cpu-moe for every layer, --n-cpu-moe N for the first N")
    if not all_experts and first_layers is None and not patterns:
        return None
    explicit = tuple(o for text in patterns or () for o in parse_overrides(text))
    experts = cpu_moe() if all_experts else n_cpu_moe(first_layers or 0)
    return explicit + experts
