"""The sweep's HTML report: its table and a plot of gain over on-car against capacity scale, one
panel per trace, one line per policy with its 95 % bootstrap interval (matplotlib, Agg)."""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt  # noqa: E402

from carlink.replay.report import save_figure  # noqa: E402
from carlink.replay.sweep import BASELINE  # noqa: E402
from carlink.replay.sweep_stats import SweepSummary, format_sweep_table  # noqa: E402


def plot_gain_vs_scale(summary: SweepSummary, path: Path) -> Path:
    traces = list(dict.fromkeys(g.trace for g in summary.groups))
    cols = min(3, len(traces))
    rows = -(-len(traces) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    policies = [p for p in (summary.groups[0].rows if summary.groups else {}) if p != BASELINE]
    for k, trace in enumerate(traces):
        ax = axes[k // cols, k % cols]
        groups = sorted((g for g in summary.groups if g.trace == trace), key=lambda g: g.scale)
        for p in policies:
            pts = [(g.scale, g.rows[p]) for g in groups if g.rows[p].gain_pp is not None]
            if not pts:
                continue
            x = [s for s, _ in pts]
            y = [r.gain_pp for _, r in pts]
            lo = [r.gain_pp - (r.gain_pp_low if r.gain_pp_low is not None else r.gain_pp) for _, r in pts]
            hi = [(r.gain_pp_high if r.gain_pp_high is not None else r.gain_pp) - r.gain_pp for _, r in pts]
            ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3, label=p,
                        linewidth=2.0 if p == "carlink" else 1.0)
        ax.axhline(0.0, color="0.6", linewidth=0.8)
        ax.set_xscale("log", base=2)
        scales = [g.scale for g in groups]
        ax.set_xticks(scales, [f"{s:g}" for s in scales])
        ax.minorticks_off()
        ax.set_title(trace, fontsize="small")
        ax.set_xlabel("capacity scale")
        ax.set_ylabel("gain over on-car (pp)")
    for k in range(len(traces), rows * cols):
        axes[k // cols, k % cols].axis("off")
    if policies:
        axes[0, 0].legend(fontsize="x-small")
    return save_figure(fig, path)


def write_sweep_report(summary: SweepSummary, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_gain_vs_scale(summary, out / "gain_vs_scale.png")
    inputs = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                     for k, v in sorted(summary.inputs.items()))
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in summary.warnings)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>carlink replay sweep</title></head>
<body style="font-family:sans-serif;max-width:1200px">
<h1>carlink replay sweep</h1>
<p>{html.escape(str(summary.inputs.get("scenes", "")))}</p>
<h2>Gain over on-car against capacity scale</h2>
<p><img src="{png.name}" alt="gain against scale"></p>
<h2>Per trace, scale and policy</h2>
<pre>{html.escape(format_sweep_table(summary))}</pre>
{f"<h2>Warnings</h2><ul>{warnings}</ul>" if warnings else ""}
<h2>Inputs</h2>
<table>{inputs}</table>
</body></html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
