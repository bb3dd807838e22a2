"""Plot each task's service-level staircase (utility vs critical bandwidth) to a PNG (matplotlib Agg)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # no display on cars, servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from carlink.allocator.utility import Step  # noqa: E402


def plot_staircases(
    curves: Sequence[tuple[str, list[Step]]],
    path: str | Path,
    *,
    title: str = "",
    max_mbps: float | None = None,
) -> Path:
    """One panel per task: the staircase as a step line, each step's option marked and named.

    ``curves`` holds (task name, steps from :func:`carlink.allocator.utility.staircase`). The x
    axis ends a little past the costliest feasible step (or at ``max_mbps``).
    """
    if not curves:
        raise ValueError("no task to plot")
    n = len(curves)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols, 3.6 * rows), squeeze=False)
    top = max((s.bandwidth_bps for _, steps in curves for s in steps), default=0.0) / 1e6
    xmax = max_mbps if max_mbps is not None else max(top * 1.15, 1.0)
    for ax, (name, steps) in zip(axes.flat, curves):
        xs = [s.bandwidth_bps / 1e6 for s in steps] + [xmax]
        ys = [s.utility for s in steps] + [steps[-1].utility]
        ax.step(xs, ys, where="post", color="tab:blue", linewidth=2)
        for s in steps:
            ax.plot(s.bandwidth_bps / 1e6, s.utility, "o", color="tab:green" if s.on_car else "tab:orange")
            ax.annotate(s.option, (s.bandwidth_bps / 1e6, s.utility), textcoords="offset points",
                        xytext=(3, -10), fontsize=6)
        ax.set_title(name)
        ax.set_xlim(0, xmax)
        ax.set_ylim(0, max(1e-3, max(s.utility for s in steps)) * 1.15)
        ax.set_xlabel("critical bandwidth (Mbit/s)")
        ax.set_ylabel("utility")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
