"""The sweep plot: quality lost (mean KL divergence) against file size, one point per quant (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

from homellm.errors import InvalidRequestError
from homellm.quant.sweep import Sweep


def plot_sweep(result: Sweep, path: Path) -> Path:
    """Write a PNG: size in MB across, mean KL from the reference up (log scale), each point named."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    if path.suffix.lower() != ".png":
        raise InvalidRequestError(f"{path.name} is not a .png file", hint="give --plot NAME.png", param="plot")
    figure, axis = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    sizes = [row.size_bytes / 1e6 for row in result.rows]
    kls = [max(row.kl_mean, 1e-6) for row in result.rows]
    axis.plot(sizes, kls, marker="o")
    for i, (row, x, y) in enumerate(zip(result.rows, sizes, kls, strict=True)):
        # Alternate above and below: neighbouring quants can sit close together.
        axis.annotate(f"{row.quant} ({row.bits_per_weight:.2f} bpw)", (x, y), textcoords="offset points",
                      xytext=(6, 5 if i % 2 == 0 else -13), fontsize=8)
    axis.set_yscale("log")
    axis.set_xlabel("file size (MB)")
    axis.set_ylabel(f"mean KL divergence from {result.reference}")
    axis.set_title(f"{result.model}: quality against size ({result.tokens:,} tokens, ctx {result.ctx})")
    axis.grid(True, which="both", alpha=0.3)
    axis.margins(x=0.2, y=0.15)  # room for the labels
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
