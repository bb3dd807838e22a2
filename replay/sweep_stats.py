"""The sweep's summary: per trace, capacity scale and policy, what the replays add up to.

Replays of one (trace, scale) group (scene sets x trace offsets) are pooled task-frame by
task-frame (sums of weight x utility over the task-frames whose utility is defined). Per policy:

* mean utility, and its gain over on-car in percentage points, with a 95 % bootstrap interval
  over replays (replays drawn with replacement, ``BOOTSTRAP_DRAWS`` draws, numpy's default
  generator with a fixed seed: the same inputs give the same interval);
* share of the oracle's gain: (policy - on-car) / (oracle - on-car), where the oracle ran and gained;
* cloud hit rate (answers used / uploads sent), deadline misses (count, and share of the
  task-frames), bytes sent.

:meth:`SweepSummary.to_json` is deterministic byte for byte (rounded, sorted keys, no wall clock).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from carlink.replay.results import round_floats
from carlink.replay.sweep import BASELINE, Grid, PolicyTotals, RunResult

BOOTSTRAP_DRAWS = 2000
BOOTSTRAP_SEED = 20250326  # fixed: the interval is part of the deterministic summary
CONFIDENCE = 0.95


@dataclass(frozen=True)
class PolicyRow:
    policy: str
    replays: int
    task_frames: int
    evaluated: int
    mean_utility: float | None
    gain_pp: float | None  # over on-car, percentage points
    gain_pp_low: float | None  # 95 % bootstrap interval over replays
    gain_pp_high: float | None
    share_of_oracle_gain: float | None
    cloud_hit_rate: float | None
    uploads: int
    deadline_misses: int
    deadline_miss_rate: float | None  # of the task-frames
    bytes_sent: int
    link_utilisation: float | None


@dataclass(frozen=True)
class Group:
    trace: str
    scale: float
    rows: dict[str, PolicyRow]


def _sum(totals: Sequence[PolicyTotals], key: str) -> float:
    return sum(getattr(t, key) for t in totals)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def bootstrap_gain_pp(policy: Sequence[PolicyTotals], base: Sequence[PolicyTotals],
                      draws: int = BOOTSTRAP_DRAWS, seed: int = BOOTSTRAP_SEED) -> tuple[float | None, float | None]:
    """95 % percentile interval of the pooled gain (pp) over replays drawn with replacement."""
    n = len(policy)
    if n == 0:
        return None, None
    num = np.array([t.weighted_utility for t in policy])
    den = np.array([t.weight for t in policy])
    bnum = np.array([t.weighted_utility for t in base])
    bden = np.array([t.weight for t in base])
    idx = np.random.default_rng(seed).integers(0, n, size=(draws, n))
    d, bd = den[idx].sum(axis=1), bden[idx].sum(axis=1)
    ok = (d > 0) & (bd > 0)
    if not ok.any():
        return None, None
    gains = 100.0 * (num[idx].sum(axis=1)[ok] / d[ok] - bnum[idx].sum(axis=1)[ok] / bd[ok])
    alpha = (1.0 - CONFIDENCE) / 2.0
    low, high = np.quantile(gains, [alpha, 1.0 - alpha])
    return float(low), float(high)


def bootstrap_difference_pp(a: Sequence[PolicyTotals], b: Sequence[PolicyTotals], draws: int = BOOTSTRAP_DRAWS,
                            seed: int = BOOTSTRAP_SEED) -> tuple[float | None, float | None, float | None]:
    """Policy a's pooled mean minus policy b's (pp) over the same replays, and its 95 % interval
    from drawing replays with replacement (paired: both policies ran on each replay)."""
    n = len(a)
    if n == 0 or n != len(b):
        return None, None, None
    an = np.array([t.weighted_utility for t in a])
    ad = np.array([t.weight for t in a])
    bn = np.array([t.weighted_utility for t in b])
    bd = np.array([t.weight for t in b])
    if ad.sum() <= 0 or bd.sum() <= 0:
        return None, None, None
    point = 100.0 * (an.sum() / ad.sum() - bn.sum() / bd.sum())
    idx = np.random.default_rng(seed).integers(0, n, size=(draws, n))
    da, db = ad[idx].sum(axis=1), bd[idx].sum(axis=1)
    ok = (da > 0) & (db > 0)
    diffs = 100.0 * (an[idx].sum(axis=1)[ok] / da[ok] - bn[idx].sum(axis=1)[ok] / db[ok])
    alpha = (1.0 - CONFIDENCE) / 2.0
    low, high = np.quantile(diffs, [alpha, 1.0 - alpha])
    return float(point), float(low), float(high)


def summarize_group(results: Sequence[RunResult], policies: Sequence[str]) -> dict[str, PolicyRow]:
    base = [r.policies[BASELINE] for r in results]
    base_mean = _ratio(_sum(base, "weighted_utility"), _sum(base, "weight"))
    oracle = [r.policies["oracle"] for r in results] if "oracle" in policies else None
    oracle_mean = _ratio(_sum(oracle, "weighted_utility"), _sum(oracle, "weight")) if oracle else None
    rows = {}
    for p in policies:
        tot = [r.policies[p] for r in results]
        mean = _ratio(_sum(tot, "weighted_utility"), _sum(tot, "weight"))
        gain = 100.0 * (mean - base_mean) if mean is not None and base_mean is not None else None
        low, high = bootstrap_gain_pp(tot, base) if gain is not None else (None, None)
        share = None
        if mean is not None and oracle_mean is not None and base_mean is not None and oracle_mean - base_mean > 1e-12:
            share = (mean - base_mean) / (oracle_mean - base_mean)
        frames = int(_sum(tot, "task_frames"))
        misses = int(_sum(tot, "deadline_misses"))
        delivered = _sum(tot, "delivered_bytes")
        rows[p] = PolicyRow(
            policy=p, replays=len(tot), task_frames=frames, evaluated=int(_sum(tot, "evaluated")),
            mean_utility=mean, gain_pp=gain, gain_pp_low=low, gain_pp_high=high, share_of_oracle_gain=share,
            cloud_hit_rate=_ratio(_sum(tot, "cloud_used"), _sum(tot, "uploads")), uploads=int(_sum(tot, "uploads")),
            deadline_misses=misses, deadline_miss_rate=_ratio(misses, frames), bytes_sent=int(_sum(tot, "bytes_sent")),
            link_utilisation=_ratio(delivered, _sum(tot, "capacity_bytes")),
        )
    return rows


@dataclass
class SweepSummary:
    inputs: dict[str, Any]
    groups: list[Group]
    runs: list[RunResult]
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        runs = []
        for r in self.runs:
            s = r.spec
            runs.append({
                "scene_set": s.scenes.label, "trace": s.trace.label, "scale": s.scale, "offset_s": s.offset_s,
                "frames": r.frames,
                "mean_utility": {p: t.mean_utility for p, t in r.policies.items()},
                "bytes_sent": {p: t.bytes_sent for p, t in r.policies.items()},
                "deadline_misses": {p: t.deadline_misses for p, t in r.policies.items()},
            })
        return round_floats({
            "inputs": self.inputs,
            "groups": [{"trace": g.trace, "scale": g.scale, "policies": {p: asdict(row) for p, row in g.rows.items()}}
                       for g in self.groups],
            "runs": runs,
            "warnings": self.warnings,
        })

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True, allow_nan=False) + "\n"

    def row(self, trace: str, scale: float, policy: str) -> PolicyRow:
        for g in self.groups:
            if g.trace == trace and g.scale == scale:
                return g.rows[policy]
        raise KeyError((trace, scale, policy))


def summarize_sweep(grid: Grid, results: Sequence[RunResult], inputs: dict[str, Any]) -> SweepSummary:
    """Merge the units (in the grid's order) into groups by trace and scale."""
    keys: dict[tuple[str, float], list[RunResult]] = {}
    for r in results:
        keys.setdefault((r.spec.trace.label, r.spec.scale), []).append(r)
    groups = [Group(trace, scale, summarize_group(rs, grid.settings.policies)) for (trace, scale), rs in keys.items()]
    warnings = list(dict.fromkeys(w for r in results for w in r.warnings))
    return SweepSummary(inputs, groups, list(results), warnings)


def format_sweep_table(summary: SweepSummary) -> str:
    def f(x: Any, fmt: str) -> str:
        return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)

    head = (f"{'trace':<24}{'scale':>6}  {'policy':<16}{'replays':>7}{'mean util':>10}{'gain pp [95% CI]':>24}"
            f"{'of oracle':>10}{'cloud hit':>10}{'misses':>8}{'MB sent':>9}")
    lines = [head, "-" * len(head)]
    for g in summary.groups:
        for r in g.rows.values():
            ci = (f"{f(r.gain_pp, '+.2f')} [{f(r.gain_pp_low, '+.2f')}, {f(r.gain_pp_high, '+.2f')}]"
                  if r.gain_pp is not None else "-")
            miss = "-" if r.deadline_miss_rate is None else f"{100 * r.deadline_miss_rate:.2f}%"
            lines.append(f"{g.trace[:24]:<24}{g.scale:>6g}  {r.policy:<16}{r.replays:>7}{f(r.mean_utility, '.4f'):>10}"
                         f"{ci:>24}{f(r.share_of_oracle_gain, '.3f'):>10}{f(r.cloud_hit_rate, '.3f'):>10}"
                         f"{miss:>8}{r.bytes_sent / 1e6:>9.1f}")
    return "\n".join(lines)
