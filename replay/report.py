"""The HTML report of a replay: the summary table and three PNG plots (matplotlib, Agg backend).

* ``capacity.png``: per policy that plans (carlink, turbo), the link's true capacity, the
  policy's bandwidth estimate and what it allocated, over time;
* ``options.png``: the option each policy chose per task over time (on-car at 0);
* ``utility.png``: mean utility per policy, with on-car and the oracle as references.

The page is self-contained apart from the PNGs next to it; a SYNTHETIC run says so at the top.
"""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt  # noqa: E402

from carlink.replay.results import ReplayResult, format_table  # noqa: E402

_PLANNERS = ("carlink", "turbo")


def save_figure(fig, path: Path) -> Path:
    """Write a figure as PNG and free it (pyplot keeps every open figure alive)."""
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_capacity(result: ReplayResult, path: Path) -> Path:
    planners = [p for p in _PLANNERS if p in result.runs] or list(result.runs)[:1]
    fig, axes = plt.subplots(len(planners), 1, figsize=(10, 2.8 * len(planners)), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], planners):
        fr = result.runs[name].frames
        t = [f.t for f in fr]
        ax.step(t, [f.capacity_bps / 1e6 for f in fr], where="post", label="capacity (true)", color="0.5")
        ax.step(t, [f.estimate_bps / 1e6 for f in fr], where="post", label="estimate", color="tab:blue")
        ax.step(t, [f.planned_bps / 1e6 for f in fr], where="post", label="planned with", color="tab:green",
                linestyle="--")
        ax.step(t, [f.allocated_bps / 1e6 for f in fr], where="post", label="allocated", color="tab:red")
        ax.set_ylabel("Mbit/s")
        ax.set_title(name)
        ax.legend(loc="upper right", fontsize="small")
    axes[-1, 0].set_xlabel("replay time (s)")
    return save_figure(fig, path)


def plot_options(result: ReplayResult, path: Path) -> Path:
    names = list(result.runs)
    tasks = sorted({r.task for run in result.runs.values() for r in run.tasks})
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 1.8 * len(names) + 0.5), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        run = result.runs[name]
        times = {f.frame: f.t for f in run.frames}
        options = sorted({r.planned for r in run.tasks} - {"on-car"})
        rank = {"on-car": 0, **{o: k + 1 for k, o in enumerate(options)}}
        for task in tasks:
            rs = [r for r in run.tasks if r.task == task]
            ax.plot([times[r.frame] for r in rs], [rank.get(r.planned, 0) for r in rs], marker=".",
                    linestyle="-", linewidth=0.6, label=task)
        ax.set_ylabel(name, fontsize="small")
        ax.set_yticks(range(len(rank)))
        ax.set_yticklabels(list(rank), fontsize=6)
    axes[0, 0].legend(loc="upper right", fontsize="x-small", ncol=max(1, len(tasks)))
    axes[-1, 0].set_xlabel("replay time (s)")
    return save_figure(fig, path)


def plot_utility(result: ReplayResult, path: Path) -> Path:
    names = list(result.summary)
    values = [result.summary[n].mean_utility or 0.0 for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    bars = ax.bar(names, values, color=["tab:green" if n == "carlink" else "tab:gray" for n in names])
    for b, v in zip(bars, values):
        ax.annotate(f"{v:.3f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("mean utility (AP@0.5)")
    return save_figure(fig, path)


def write_report(result: ReplayResult, out_dir: str | Path) -> Path:
    """Write report.html and its PNGs into ``out_dir``; return the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pngs = [plot_capacity(result, out / "capacity.png"), plot_options(result, out / "options.png"),
            plot_utility(result, out / "utility.png")]
    inputs = result.inputs
    banner = ""
    if inputs.get("synthetic"):
        banner = ('<p style="background:#fdd;padding:8px;font-weight:bold">SYNTHETIC DEMONSTRATION: '
                  "frames, trace and profile are generated or illustrative, not measurements. "
                  "Do not draw conclusions from these numbers.</p>")
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in sorted(inputs.items()))
    images = "".join(f'<p><img src="{p.name}" alt="{p.stem}"></p>' for p in pngs)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>carlink replay</title></head>
<body style="font-family:sans-serif;max-width:1000px">
<h1>carlink replay</h1>
{banner}
<h2>Policies</h2>
<pre>{html.escape(format_table(result))}</pre>
<h2>Plots</h2>
{images}
<h2>Inputs</h2>
<table>{rows}</table>
</body></html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
