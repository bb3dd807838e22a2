"""``carlink replay sweep``: a grid of virtual-clock replays, each an independent unit.

The grid is scene sets x traces x capacity scales x trace offsets; every replay runs all the
sweep's policies on the same frames and the same trace (as ``carlink replay`` does). A replay is
described by a :class:`RunSpec` (plain, picklable values: paths, numbers, names) and computed by
the pure function :func:`run_one` (same spec, same :class:`RunResult`), so the units can run
anywhere (serially by default; ``run_grid(..., map_fn=...)`` takes any ordered map, e.g. one
that runs them on Ray: :class:`SweepWorker` with replay/distributed.py) and are merged in the
grid's fixed order (replay/sweep_stats.py).

Loaded scenes, traces and profiles are cached per process: consecutive units reuse them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Sequence

from carlink.datasets.trace_readers import TRACE_FORMATS, load_trace
from carlink.datasets.traces import Trace
from carlink.replay.compose import compose_playlist
from carlink.replay.player import Playlist, load_playlist
from carlink.replay.policies import POLICY_NAMES
from carlink.replay.profile_view import ReplayProfile, load_replay_profile
from carlink.replay.results import PolicyRun, ReplayResult, weighted_utility
from carlink.replay.runner import ESTIMATES, ReplayConfig, run_virtual

UTILITY_MODES = ("truth", "profile", "measured")
BASELINE = "on-car"  # gains are measured against it: every sweep runs it


class SweepError(ValueError):
    """A sweep that cannot run (empty grid, unknown policy or trace format...): the message says what."""


@dataclass(frozen=True)
class SceneSet:
    """The frames of one replay: scene files played one after the other, or compositions (cars
    of single-camera sequences, replay/compose.py) played one after the other."""

    label: str
    scenes: tuple[str, ...] = ()
    compositions: tuple[tuple[str, ...], ...] = ()
    rate_hz: float | None = None

    def __post_init__(self) -> None:
        if bool(self.scenes) == bool(self.compositions):
            raise SweepError(f"scene set {self.label!r}: give scene files or compositions (one of them)")


@dataclass(frozen=True)
class TraceRef:
    path: str
    format: str = "auto"

    def __post_init__(self) -> None:
        if self.format not in ("auto", *TRACE_FORMATS):
            raise SweepError(f"trace {self.path}: unknown trace format {self.format!r}; expected auto or one of "
                             f"{', '.join(TRACE_FORMATS)}")

    @property
    def label(self) -> str:
        return Path(self.path.split("::")[-1]).name


@dataclass(frozen=True)
class ReplaySettings:
    """What every replay of a sweep shares: the policies, the planning profile, where utilities come
    from, the link estimates and the link itself."""

    policies: tuple[str, ...]
    profile: str
    utilities: str = "profile"  # "truth" (per-frame values of ``truth``), "profile" or "measured"
    truth: str | None = None
    estimates: str = "uploads"
    rtt_ms: float | None = None
    queue_bytes: int | None = None
    seed: int = 0
    max_frames: int | None = None

    def __post_init__(self) -> None:
        if not self.policies:
            raise SweepError("the sweep's grid is empty: no policy given")
        bad = [p for p in self.policies if p not in POLICY_NAMES]
        if bad:
            raise SweepError(f"unknown polic{'ies' if len(bad) > 1 else 'y'} {', '.join(bad)}; choose from "
                             f"{', '.join(POLICY_NAMES)}")
        if len(set(self.policies)) != len(self.policies):
            raise SweepError(f"policies listed twice: {', '.join(self.policies)}")
        if self.utilities not in UTILITY_MODES:
            raise SweepError(f"utilities {self.utilities!r}: expected one of {', '.join(UTILITY_MODES)}")
        if (self.utilities == "truth") != (self.truth is not None):
            raise SweepError("a truth profile goes with utilities 'truth', and only with it")
        if self.estimates not in ESTIMATES:
            raise SweepError(f"estimates {self.estimates!r}: expected one of {', '.join(ESTIMATES)}")


@dataclass(frozen=True)
class RunSpec:
    """One replay of the grid."""

    scenes: SceneSet
    trace: TraceRef
    scale: float
    offset_s: float
    settings: ReplaySettings


@dataclass(frozen=True)
class PolicyTotals:
    """One policy's sums over one replay (sums, so that replays pool exactly)."""

    weighted_utility: float  # sum of weight * utility over the task-frames whose utility is defined
    weight: float  # sum of their weights
    task_frames: int
    evaluated: int  # task-frames whose utility is defined
    uploads: int
    cloud_used: int
    cloud_late: int
    deadline_misses: int
    bytes_sent: int
    probe_bytes: int
    delivered_bytes: int
    capacity_bytes: int

    @classmethod
    def of(cls, run: PolicyRun, weights: dict[str, float]) -> "PolicyTotals":
        num, den = weighted_utility(run, weights)
        return cls(
            weighted_utility=num, weight=den, task_frames=len(run.tasks),
            evaluated=sum(1 for r in run.tasks if r.utility is not None),
            uploads=sum(1 for r in run.tasks if r.cloud_status not in ("not-sent", "busy")),
            cloud_used=sum(1 for r in run.tasks if r.source == "cloud"),
            cloud_late=sum(1 for r in run.tasks if r.cloud_status in ("late", "lost", "failed")),
            deadline_misses=sum(1 for r in run.tasks if not r.deadline_met),
            bytes_sent=sum(r.bytes_sent for r in run.tasks), probe_bytes=run.probe_bytes,
            delivered_bytes=run.delivered_bytes, capacity_bytes=run.capacity_bytes,
        )

    @property
    def mean_utility(self) -> float | None:
        return self.weighted_utility / self.weight if self.weight > 0 else None


@dataclass(frozen=True)
class RunResult:
    spec: RunSpec
    frames: int
    policies: dict[str, PolicyTotals]
    warnings: tuple[str, ...] = field(default=())


# -- loading, cached per process --------------------------------------------------------------

@lru_cache(maxsize=16)
def load_scene_set(scenes: SceneSet, max_frames: int | None = None) -> Playlist:
    if scenes.compositions:
        return compose_playlist([list(c) for c in scenes.compositions], scenes.rate_hz, max_frames)
    return load_playlist(list(scenes.scenes), max_frames, rate_hz=scenes.rate_hz)


@lru_cache(maxsize=16)
def load_trace_ref(ref: TraceRef) -> Trace:
    return load_trace(ref.path, ref.format)


@lru_cache(maxsize=8)
def cached_profile(path: str) -> ReplayProfile:
    return load_replay_profile(path)


@lru_cache(maxsize=8)
def _utility_source(mode: str, path: str, scenes: SceneSet):
    """One source per (mode, profile, scene set): a measured source's cache of model results
    serves every replay of the same frames."""
    from carlink.replay.frame_utility import MeasuredUtilities, ProfileUtilities, TruthUtilities

    if mode == "truth":
        return TruthUtilities(cached_profile(path))
    if mode == "measured":
        return MeasuredUtilities()
    return ProfileUtilities(cached_profile(path))


def replay_length_s(scenes: SceneSet, profile: ReplayProfile, max_frames: int | None = None) -> float:
    """How much of a trace one replay of these scenes uses (last frame plus the longest deadline)."""
    frames = load_scene_set(scenes, max_frames).frames
    return frames[-1].t + max(t.deadline_ms for t in profile.tasks) / 1000.0


def clear_caches() -> None:
    """Forget every loaded scene, trace, profile and utility source (a fresh process's state)."""
    for fn in (load_scene_set, load_trace_ref, cached_profile, _utility_source):
        fn.cache_clear()


# -- one unit -----------------------------------------------------------------------------------

def replay_one(spec: RunSpec) -> ReplayResult:
    """The full replay of one grid unit (every policy of the spec)."""
    st = spec.settings
    profile = cached_profile(st.profile)
    playlist = load_scene_set(spec.scenes, st.max_frames)
    trace = load_trace_ref(spec.trace)
    utilities = _utility_source(st.utilities, st.truth if st.utilities == "truth" else st.profile, spec.scenes)
    cfg = ReplayConfig(policies=st.policies, rtt_ms=st.rtt_ms, scale=spec.scale, queue_bytes=st.queue_bytes,
                       trace_offset_s=spec.offset_s, seed=st.seed, estimates=st.estimates)
    inputs = {"synthetic": False, "scenes": playlist.description, "warnings": list(playlist.warnings)}
    return run_virtual(playlist.frames, profile, trace, utilities, cfg, inputs)


def run_one(spec: RunSpec) -> RunResult:
    """Replay one unit of the grid and reduce it to per-policy sums (deterministic)."""
    res = replay_one(spec)
    weights = {t.name: t.weight for t in cached_profile(spec.settings.profile).tasks}
    totals = {name: PolicyTotals.of(run, weights) for name, run in res.runs.items()}
    return RunResult(spec, int(res.inputs["frames"]), totals, tuple(res.inputs.get("warnings", ())))


def run_grid(specs: Sequence[RunSpec], map_fn: Callable[[Callable, Iterable], Iterable] = map,
             progress: Callable[[int], None] | None = None) -> list[RunResult]:
    """Every unit, results in the order of ``specs`` (``map_fn`` must keep the order, as ``map`` and
    Ray's ``ray.get`` of a list do)."""
    out = []
    for r in map_fn(run_one, specs):
        out.append(r)
        if progress is not None:
            progress(1)
    return out


class SweepWorker:
    """A unit worker for replay/distributed.py (``run_units(grid.specs(), SweepWorker, target)``):
    each Ray worker keeps one, and with it this process's caches of scenes, traces and models."""

    def run(self, spec: RunSpec) -> RunResult:
        return run_one(spec)


# -- the grid -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Grid:
    """What the sweep varies; :meth:`specs` lists its units in the fixed order scene set, trace,
    scale, offset."""

    scene_sets: tuple[SceneSet, ...]
    traces: tuple[TraceRef, ...]
    scales: tuple[float, ...]
    settings: ReplaySettings
    offsets_s: tuple[float, ...] = ()  # the same offsets on every trace, or
    offsets_per_trace: int = 0  # this many offsets spread evenly over each trace

    def __post_init__(self) -> None:
        empty = [what for what, v in (("scene set", self.scene_sets), ("trace", self.traces),
                                      ("scale", self.scales)) if not v]
        if not self.offsets_s and self.offsets_per_trace < 1:
            empty.append("trace offset")
        if empty:
            raise SweepError(f"the sweep's grid is empty: no {', no '.join(empty)} given")
        if self.offsets_s and self.offsets_per_trace:
            raise SweepError("give explicit trace offsets or a number of offsets per trace, not both")
        if BASELINE not in self.settings.policies:
            raise SweepError(f"the sweep needs the {BASELINE} policy: gains are measured against it")
        for s in self.scales:
            if not (math.isfinite(s) and s > 0):
                raise SweepError(f"capacity scale {s}: must be a positive number")
        for o in self.offsets_s:
            if not (math.isfinite(o) and o >= 0):
                raise SweepError(f"trace offset {o}: must be a number of seconds >= 0")
        labels = [t.label for t in self.traces]
        twice = sorted({n for n in labels if labels.count(n) > 1})
        if twice:
            raise SweepError(f"traces named {', '.join(twice)} more than once: the summary names traces by file name")
        if len(set(self.scales)) != len(self.scales):
            raise SweepError(f"capacity scales listed twice: {', '.join(f'{s:g}' for s in self.scales)}")

    def offsets_for(self, trace: TraceRef, length_s: float) -> tuple[float, ...]:
        """The trace offsets of one trace: the explicit ones, or ``offsets_per_trace`` spread evenly
        over the part of the trace a replay of ``length_s`` fits in (whole 0.1 s)."""
        if self.offsets_s:
            return self.offsets_s
        span = max(0.0, load_trace_ref(trace).duration_s - length_s)
        n = self.offsets_per_trace
        return tuple(round(k * span / n, 1) for k in range(n))

    def specs(self) -> list[RunSpec]:
        profile = cached_profile(self.settings.profile)
        out = []
        for scenes in self.scene_sets:
            length = replay_length_s(scenes, profile, self.settings.max_frames)
            for trace in self.traces:
                offsets = self.offsets_for(trace, length)
                for scale in self.scales:
                    for offset in offsets:
                        out.append(RunSpec(scenes, trace, scale, offset, self.settings))
        return out
