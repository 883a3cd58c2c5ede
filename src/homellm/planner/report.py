"""Plans and hardware as JSON-able dictionaries: the `--json` output and the HTTP API share them."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from homellm.hardware.types import Device, Hardware
from homellm.planner.plan import Plan
from homellm.planner.speed import efficiency

if TYPE_CHECKING:  # a data type only: the planner does no detection
    from homellm.hardware.detect import MachineReport


def plan_dict(plan: Plan, hardware: Hardware) -> dict[str, Any]:
    """A plan with the hardware it was made for."""
    return {
        "model": plan.model, "quant": plan.quant, "quality": plan.quality, "kl_mean": plan.kl_mean,
        "kl_source": plan.kl_source,
        "weights_bytes": plan.weights_bytes, "kv_cache_bytes": plan.kv_cache_bytes, "total_bytes": plan.total_bytes,
        "fits": plan.fits, "decode_tps": round(plan.decode_tps, 2), "prefill_tps": round(plan.prefill_tps, 1),
        "placement": asdict(plan.placement),
        "devices": [{**asdict(load), "total_bytes": load.total_bytes, "fits": load.fits} for load in plan.devices],
        "speed_by_depth": [{"ctx": ctx, "decode_tps": round(tps, 2)} for ctx, tps in plan.speed_by_depth],
        "warnings": list(plan.warnings), "suggestions": [asdict(s) for s in plan.suggestions],
        "efficiency_source": plan.efficiency_source, "explanation": plan.explanation,
        "hardware": [device_dict(d) for d in hardware.devices],
    }


def machine_dict(report: MachineReport) -> dict[str, Any]:
    """This machine: CPU, RAM and devices (`homellm hw --json`, GET /homellm/hardware)."""
    cpu = report.cpu
    return {
        "cpu": {"model": cpu.model, "physical_cores": cpu.physical_cores, "logical_cores": cpu.logical_cores,
                "flags": list(cpu.flags), "ghz": cpu.ghz},
        "ram_total_bytes": report.ram_total_bytes, "ram_available_bytes": report.ram_available_bytes,
        "devices": [device_dict(d) for d in report.hardware.devices], "notes": list(report.notes),
    }


def device_dict(device: Device) -> dict[str, Any]:
    """A device with the efficiency the planner gives it."""
    eff = efficiency(device)
    return {"name": device.name, "vendor": device.vendor, "kind": device.kind, "backend": device.backend,
            "memory_bytes": device.memory_bytes, "free_bytes": device.free_bytes,
            "bandwidth_gbs": device.bandwidth_gbs, "fp16_tflops": device.fp16_tflops, "tdp_w": device.tdp_w,
            "efficiency": eff.value, "efficiency_source": eff.source, "device_class": eff.device_class,
            "source": device.source}
