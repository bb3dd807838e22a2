"""Replay results: per frame and task what happened, per policy the figures that compare them.

Per task-frame: the option planned, the source used (``cloud`` or ``on-car``), the option whose
result was used, latency from capture, whether the deadline was met, what became of the upload
(``ok``, ``late``, ``lost``, ``failed``, ``not-sent``), the utility (AP; None where undefined) and the
bytes sent. Per policy: weighted mean utility over the task-frames whose utility is defined (the
same task-frames for every policy), its fraction of the oracle's, its gain in percentage points
over on-car, cloud-hit rate (answers used / uploads sent), deadline misses (results later than
the deadline: only possible when the on-car model itself is late), late or lost cloud answers,
bytes sent and link utilisation (bytes delivered / bytes the link could carry during the replay;
at most 1 for every policy: each, the oracle included, sends through its own queue).

``summary.json`` holds no wall-clock figure, so a virtual-clock run gives it byte for byte again.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TaskRecord:
    frame: int
    task: str
    planned: str
    source: str  # "cloud" or "on-car"
    option: str  # the option whose result was used
    latency_ms: float
    deadline_met: bool
    cloud_status: str  # "ok", "late", "lost", "failed", "busy" (previous upload still queued), "not-sent"
    utility: float | None
    bytes_sent: int = 0


@dataclass(frozen=True)
class FrameRecord:
    frame: int
    t: float
    estimate_bps: float
    planned_bps: float
    allocated_bps: float
    capacity_bps: float  # the true capacity of the link over the frame's first 100 ms
    expected_utility: float
    utility: float  # weighted sum over the frame's tasks with a defined utility
    bytes_sent: int


@dataclass
class PolicyRun:
    policy: str
    frames: list[FrameRecord] = field(default_factory=list)
    tasks: list[TaskRecord] = field(default_factory=list)
    capacity_bytes: int = 0  # what the link could carry over the replay
    delivered_bytes: int = 0
    probe_bytes: int = 0  # padding the car's estimator asked for (not in any task's bytes)


@dataclass(frozen=True)
class PolicySummary:
    policy: str
    mean_utility: float | None
    fraction_of_oracle: float | None
    gain_pp_over_on_car: float | None
    cloud_hit_rate: float | None
    uploads: int
    cloud_used: int
    cloud_late: int
    deadline_misses: int
    bytes_sent: int
    link_utilisation: float | None
    task_frames: int
    task_frames_evaluated: int
    probe_bytes: int = 0


def round_floats(x: Any, nd: int = 6) -> Any:
    if isinstance(x, float):
        return None if not math.isfinite(x) else round(x, nd)
    if isinstance(x, dict):
        return {k: round_floats(v, nd) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [round_floats(v, nd) for v in x]
    return x


def weighted_utility(run: PolicyRun, weights: dict[str, float]) -> tuple[float, float]:
    """Sum of weight x utility over the task-frames whose utility is defined, and their weight."""
    num = den = 0.0
    for r in run.tasks:
        if r.utility is not None:
            w = weights.get(r.task, 1.0)
            num += w * r.utility
            den += w
    return num, den


def mean_utility(run: PolicyRun, weights: dict[str, float]) -> float | None:
    num, den = weighted_utility(run, weights)
    return num / den if den > 0 else None


def summarize(runs: dict[str, PolicyRun], weights: dict[str, float]) -> dict[str, PolicySummary]:
    means = {name: mean_utility(run, weights) for name, run in runs.items()}
    oracle = means.get("oracle")
    on_car = means.get("on-car")
    out = {}
    for name, run in runs.items():
        m = means[name]
        uploads = sum(1 for r in run.tasks if r.cloud_status not in ("not-sent", "busy"))
        used = sum(1 for r in run.tasks if r.source == "cloud")
        out[name] = PolicySummary(
            policy=name,
            mean_utility=m,
            fraction_of_oracle=(m / oracle) if (m is not None and oracle) else None,
            gain_pp_over_on_car=(100.0 * (m - on_car)) if (m is not None and on_car is not None) else None,
            cloud_hit_rate=(used / uploads) if uploads else None,
            uploads=uploads,
            cloud_used=used,
            cloud_late=sum(1 for r in run.tasks if r.cloud_status in ("late", "lost", "failed")),
            deadline_misses=sum(1 for r in run.tasks if not r.deadline_met),
            bytes_sent=sum(r.bytes_sent for r in run.tasks),
            link_utilisation=(run.delivered_bytes / run.capacity_bytes) if run.capacity_bytes else None,
            task_frames=len(run.tasks),
            task_frames_evaluated=sum(1 for r in run.tasks if r.utility is not None),
            probe_bytes=run.probe_bytes,
        )
    return out


@dataclass
class ReplayResult:
    inputs: dict[str, Any]  # scenes, trace, profile, mode, clock, synthetic flag...
    runs: dict[str, PolicyRun]
    summary: dict[str, PolicySummary]

    def summary_dict(self) -> dict[str, Any]:
        return round_floats({"inputs": self.inputs, "policies": {k: asdict(v) for k, v in self.summary.items()}})

    def summary_json(self) -> str:
        return json.dumps(self.summary_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"

    def details_dict(self) -> dict[str, Any]:
        return round_floats({
            "inputs": self.inputs,
            "policies": {
                name: {"frames": [asdict(f) for f in run.frames], "tasks": [asdict(t) for t in run.tasks],
                       "capacity_bytes": run.capacity_bytes, "delivered_bytes": run.delivered_bytes,
                       "probe_bytes": run.probe_bytes}
                for name, run in self.runs.items()
            },
        })

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"summary": out / "summary.json", "results": out / "results.json"}
        paths["summary"].write_text(self.summary_json(), encoding="utf-8")
        paths["results"].write_text(
            json.dumps(self.details_dict(), sort_keys=True, allow_nan=False, separators=(",", ":")) + "\n",
            encoding="utf-8")
        return paths

    def per_frame_utility(self, policy: str) -> dict[int, float]:
        return {f.frame: f.utility for f in self.runs[policy].frames}


def format_table(result: ReplayResult) -> str:
    """The per-policy figures as a fixed-width text table."""
    def f(x: Any, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    head = f"{'policy':<16}{'mean util':>10}{'of oracle':>10}{'pp vs car':>10}{'cloud hit':>10}" \
           f"{'uploads':>8}{'late':>6}{'misses':>7}{'MB sent':>9}{'link use':>9}"
    lines = [head, "-" * len(head)]
    for s in result.summary.values():
        lines.append(
            f"{s.policy:<16}{f(s.mean_utility, '.4f'):>10}{f(s.fraction_of_oracle, '.3f'):>10}"
            f"{f(s.gain_pp_over_on_car, '+.2f'):>10}{f(s.cloud_hit_rate, '.3f'):>10}{s.uploads:>8}"
            f"{s.cloud_late:>6}{s.deadline_misses:>7}{s.bytes_sent / 1e6:>9.2f}{f(s.link_utilisation, '.3f'):>9}"
        )
    return "\n".join(lines)
