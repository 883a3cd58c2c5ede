"""Where tensors go, as llama-server's options say it: `--override-tensor`, `--cpu-moe`, `--n-cpu-moe`.

Data and parsing only; engine/overrides.py hands the overrides to llama.cpp.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from homellm.errors import InvalidRequestError

# llama.cpp's own pattern for expert tensors (common.h, LLM_FFN_EXPS_REGEX): gate, up, down and
# fused gate_up experts, "chexps" included; shared experts (`_shexp`) are not matched.
EXPERT_PATTERN = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"
CPU = "CPU"


@dataclass(frozen=True)
class TensorOverride:
    """Tensors whose names match `pattern` (searched, as llama.cpp does) go to `device`'s memory."""

    pattern: str
    device: str = CPU


def cpu_moe() -> tuple[TensorOverride, ...]:
    """Every expert tensor in system RAM (`--cpu-moe`)."""
    return (TensorOverride(EXPERT_PATTERN),)


def n_cpu_moe(layers: int) -> tuple[TensorOverride, ...]:
    """The experts of the first `layers` layers in system RAM (`--n-cpu-moe N`)."""
    return tuple(TensorOverride(rf"blk\.{i}{EXPERT_PATTERN}") for i in range(layers))


def parse_overrides(text: str) -> tuple[TensorOverride, ...]:
    """`PATTERN=DEVICE[,PATTERN=DEVICE...]`, split on commas as llama-server's `--override-tensor` is."""
    return tuple(parse_override(part) for part in text.split(","))


def parse_override(text: str) -> TensorOverride:
    """`PATTERN=DEVICE`, split at the first `=` as llama-server does; the pattern must compile."""
    pattern, sep, device = text.partition("=")
    if not sep or not pattern or not device.strip():
        raise InvalidRequestError(f"--override-tensor {text!r} is not PATTERN=DEVICE",
                                  hint=r"for example --override-tensor 'blk\.1[0-9]\.ffn_.*_exps=CPU'",
                                  param="override_tensor")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise InvalidRequestError(f"--override-tensor pattern {pattern!r} is not a regular expression: {exc}",
                                  hint=r"escape dots as \. and close every bracket", param="override_tensor") from None
    return TensorOverride(pattern, device.strip())
