"""Hardware to plan for: this machine, or devices named from the database, with a RAM size."""

from __future__ import annotations

import math

from homellm.errors import InvalidRequestError
from homellm.hardware.specs import find_device
from homellm.hardware.types import Device, Hardware

GB = 1_000_000_000
MAX_RAM_GB = 100_000


def compose_hardware(machine: Hardware | None, gpus: list[str], ram_gb: float | None,
                     memory: str | None = None) -> Hardware:
    """Named GPUs replace this machine's; `ram_gb` and `memory` (a RAM configuration) replace its RAM.

    Without a machine (nothing detected), a host is still needed: `memory` names it, or
    dual-channel DDR5-5600 stands in.
    """
    if ram_gb is not None and not (math.isfinite(ram_gb) and 0 < ram_gb < MAX_RAM_GB):
        raise InvalidRequestError(f"{ram_gb:g} GB of RAM is not a size",
                                  hint=f"give a number of GB between 0 and {MAX_RAM_GB:,}", param="ram")
    named = [find_device(name) for name in gpus]
    for device in named:
        if device.kind == "cpu":
            raise InvalidRequestError(f"{device.name} is a RAM configuration, not a GPU",
                                      hint=f'give it with --memory "{device.name}"', param="gpu")
    unified = [d for d in named if d.kind in ("apple", "apu")]
    if unified:
        host = unified[0].with_memory(int(ram_gb * GB)) if ram_gb else unified[0]
        return Hardware((host, *[d for d in named if d is not unified[0]]))
    host = _host(machine, ram_gb, memory)
    accelerators = tuple(named) if gpus else (machine.accelerators if machine else ())
    if machine and not gpus and machine.host.kind != "cpu":
        return Hardware((host, *[d for d in accelerators if d is not machine.host]), machine.notes)
    return Hardware((*accelerators, host), machine.notes if machine and not gpus else ())


def _host(machine: Hardware | None, ram_gb: float | None, memory: str | None) -> Device:
    if memory:
        base = find_device(memory)
        if base.kind != "cpu":
            raise InvalidRequestError(f"{base.name} is not a RAM configuration",
                                      hint='name one such as "DDR5-6000 dual-channel"', param="memory")
    elif machine is not None:
        base = machine.host
    else:
        base = find_device("DDR5-5600 dual-channel")
    if ram_gb is not None:
        return base.with_memory(int(ram_gb * GB))
    if not base.memory_bytes and machine is not None:
        return base.with_memory(machine.host.memory_bytes)  # a RAM kind for this machine's amount
    if not base.memory_bytes:
        raise InvalidRequestError(f"{base.name} has no size", hint="give --ram GB", param="ram")
    return base
