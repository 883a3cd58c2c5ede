"""The device database (`specs.csv`, one published source per row) and forgiving lookup by name."""

from __future__ import annotations

import csv
import difflib
import functools
import re
from importlib import resources

from homellm.errors import InvalidRequestError
from homellm.hardware.types import GIB, Device


@functools.cache
def devices() -> tuple[Device, ...]:
    """Every device in the database."""
    text = resources.files("homellm.hardware").joinpath("specs.csv").read_text(encoding="utf-8")
    return tuple(_device(row) for row in csv.DictReader(text.splitlines()))


def find_device(name: str) -> Device:
    """A device by a forgiving name: "RTX 4090", "rtx4090", "GeForce RTX 3060 12GB".

    An unknown or ambiguous name is refused with the closest matches.
    """
    key = normalize(name)
    index = _index()
    if key in index:
        return index[key]
    stripped = re.sub(r"^(nvidia|geforce|amd|radeon|intel|apple)+", "", key)
    matches = sorted({d.name for k, d in index.items() if stripped and (k.endswith(stripped) or stripped in k)})
    if len(matches) == 1:
        return next(d for d in devices() if d.name == matches[0])
    close = matches[:5] or [index[k].name for k in difflib.get_close_matches(key, list(index), n=4, cutoff=0.6)]
    hint = f"did you mean {', '.join(dict.fromkeys(close))}?" if close else "homellm hw --list shows the known devices"
    what = "matches several devices" if len(matches) > 1 else "is not in the device database"
    raise InvalidRequestError(f"{name!r} {what}", hint=hint, param="gpu")


def normalize(name: str) -> str:
    """Lower case, letters and digits only: "GeForce RTX-4090" and "geforce rtx 4090" agree."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


@functools.cache
def _index() -> dict[str, Device]:
    index: dict[str, Device] = {}
    for device in devices():
        for alias in (device.name, *device.aliases):
            index.setdefault(normalize(alias), device)
    return index


def _device(row: dict[str, str]) -> Device:
    aliases = [a for a in (row.get("aliases") or "").split("|") if a.strip()]
    memory = float(row["memory_gb"]) if row.get("memory_gb") else 0.0
    # GPU and unified memory sizes are sold in binary units: a "24 GB" card holds 24 GiB.
    return Device(
        name=row["name"].strip(), vendor=row["vendor"].strip(), kind=row["kind"].strip(),
        memory_bytes=int(memory * GIB), bandwidth_gbs=float(row["bandwidth_gbs"]),
        fp16_tflops=float(row["fp16_tflops"]) if row.get("fp16_tflops") else None,
        tdp_w=float(row["tdp_w"]) if row.get("tdp_w") else None, backend=row["backend"].strip(),
        source=row.get("source", "").strip(), aliases=tuple(a.strip() for a in aliases),
    )
