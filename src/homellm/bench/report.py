"""The bench plot: tokens/s against context depth, measured beside predicted (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from homellm.errors import InvalidRequestError


def plot_bench(result: dict[str, Any], path: Path) -> Path:
    """Write a PNG with decode and prefill rates by depth; the bars span the measured min and max."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    if path.suffix.lower() != ".png":
        raise InvalidRequestError(f"{path.name} is not a .png file", hint="give --plot NAME.png", param="plot")
    depths = [d["depth"] for d in result["depths"]]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for axis, kind, label in ((axes[0], "decode", "decode"), (axes[1], "prefill", "prompt processing")):
        measured = [d[f"{kind}_tps"] for d in result["depths"]]
        low = [m - d[f"{kind}_range"][0] for m, d in zip(measured, result["depths"], strict=True)]
        high = [d[f"{kind}_range"][1] - m for m, d in zip(measured, result["depths"], strict=True)]
        axis.errorbar(depths, measured, yerr=[low, high], marker="o", capsize=4, label="measured")
        axis.plot(depths, [d[f"predicted_{kind}_tps"] for d in result["depths"]], marker="s", linestyle="--",
                  label="predicted")
        axis.set_title(f"{label}, tokens/s")
        axis.set_xlabel("context depth (tokens)")
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(f"{result['model']} on {result['device']} ({result['llama_cpp_version']})")
    try:
        figure.savefig(path, dpi=100)
    except OSError as exc:
        raise InvalidRequestError(f"cannot write {path}: {exc.strerror}", hint="check the folder", param="plot") from None
    finally:
        plt.close(figure)
    return path
