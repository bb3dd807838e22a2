"""The profile as replay needs it: tasks for each policy's planner, plus per-frame values.

A profile (carlink.profile schema, version 1 or the profiler's version 2) gives per task the
on-car model and the cloud options with aggregate utility, payload and runtime statistics.
Version 2 adds, per task, the profiled frames (``frames[i].id``) and per option the per-frame
``utilities`` and ``payloads`` in that order. Replay uses them three ways:

* planning: :meth:`ReplayProfile.planning_tasks` (p95 payload, p99 runtime: carlink's
  conservative view) and :meth:`ReplayProfile.aggregate_tasks` (mean payload, p50 runtime:
  TURBO's static curves averaged over a data set);
* charging: an option's p50 runtime is what the virtual clock charges for running it;
* profile-driven utilities: the per-frame utility of a frame the profile measured (looked up by
  the profiler's frame id), else the aggregate.

The file is validated by :func:`carlink.profile.parse_profile`, then read here for the
per-frame values replay needs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carlink.detection import WaymoClass
from carlink.tasks import Option, Task

ON_CAR = 0  # column of the on-car option in every task's option list


class ReplayProfileError(ValueError):
    """A profile replay cannot use (message names the file and the key)."""


@dataclass(frozen=True)
class OptionInfo:
    id: str
    model: str
    on_car: bool
    utility: float
    payload_mean: float
    payload_p95: float
    runtime_p50: float
    runtime_p99: float
    resize: tuple[int, int] | None = None
    codec: str = "jpeg"
    jpeg_quality: int | None = None
    utilities: tuple[float | None, ...] | None = None  # per profiled frame
    payloads: tuple[int, ...] | None = None  # per profiled frame

    @property
    def mean_frame_utility(self) -> float:
        """Mean of the per-frame utilities where the profile has them (frames with an undefined
        utility left out), else the aggregate: the expected utility of one frame, which is what
        replay scores (the aggregate pools detections over frames, COCO style, and weighs busy
        frames more)."""
        if not self.utilities:
            return self.utility
        vals = [u for u in self.utilities if u is not None]
        return math.fsum(vals) / len(vals) if vals else self.utility

    def as_option(self, payload: str = "p95", runtime: str = "p99", utility: float | None = None) -> Option:
        return Option(
            id=self.id,
            utility=self.utility if utility is None else utility,
            payload_bytes=0.0 if self.on_car else (self.payload_p95 if payload == "p95" else self.payload_mean),
            runtime_ms=self.runtime_p99 if runtime == "p99" else self.runtime_p50,
            on_car=self.on_car,
            model=self.model,
            resize=self.resize,
            codec=self.codec,
            jpeg_quality=self.jpeg_quality,
        )


@dataclass(frozen=True)
class TaskInfo:
    name: str
    camera: str
    deadline_ms: float
    weight: float
    options: tuple[OptionInfo, ...]  # on-car first (column ON_CAR), then the cloud options
    classes: tuple[WaymoClass, ...] = ()  # evaluated classes; empty: those the models detect
    frame_index: dict[str, int] = field(default_factory=dict)  # profiled frame id -> position

    @property
    def on_car(self) -> OptionInfo:
        return self.options[ON_CAR]


@dataclass(frozen=True)
class ReplayProfile:
    path: str
    description: str
    metric: str
    tasks: tuple[TaskInfo, ...]

    def tasks_with(self, payload: str, runtime: str, per_frame_mean: bool = False) -> list[Task]:
        """Allocator tasks with the given statistics (payload "mean"/"p95", runtime "p50"/"p99");
        utilities are the aggregates, or with ``per_frame_mean`` the mean per-frame utilities."""
        return [self._task(t, payload, runtime, per_frame_mean) for t in self.tasks]

    def planning_tasks(self) -> list[Task]:
        """carlink's view: conservative p95 payload and p99 runtime."""
        return [self._task(t, "p95", "p99") for t in self.tasks]

    def aggregate_tasks(self) -> list[Task]:
        """TURBO's view: curves averaged over the data set (mean payload, p50 runtime)."""
        return [self._task(t, "mean", "p50") for t in self.tasks]

    @staticmethod
    def _task(t: TaskInfo, payload: str, runtime: str, per_frame_mean: bool = False) -> Task:
        return Task(name=t.name, deadline_ms=t.deadline_ms, weight=t.weight, camera=t.camera,
                    options=tuple(o.as_option(payload, runtime, o.mean_frame_utility if per_frame_mean else None)
                                  for o in t.options))

    def cloud_models(self) -> list[str]:
        return sorted({o.model for t in self.tasks for o in t.options[1:]})

    def on_car_models(self) -> list[str]:
        return sorted({t.on_car.model for t in self.tasks})


def _num(d: dict, key: str, where: str, default: float | None = None) -> float:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ReplayProfileError(f"{where} > {key}: expected a finite number, got {v!r}")
    return float(v)


def _per_frame(d: dict, key: str, where: str, n: int | None) -> tuple | None:
    values = d.get(key)
    if values is None:
        return None
    if not isinstance(values, list) or (n is not None and len(values) != n):
        raise ReplayProfileError(f"{where} > {key}: expected a list of {n} per-frame values, "
                                 f"got {type(values).__name__} of length {len(values) if isinstance(values, list) else '?'}")
    return tuple(values)


def _option(d: Any, where: str, on_car: bool, n_frames: int | None) -> OptionInfo:
    if not isinstance(d, dict):
        raise ReplayProfileError(f"{where}: expected an object, got {type(d).__name__}")
    oid = d.get("id", "on-car" if on_car else None)
    model = d.get("model")
    if not isinstance(oid, str) or not oid or not isinstance(model, str) or not model:
        raise ReplayProfileError(f"{where}: needs a non-empty 'id' and 'model'")
    where = f"{where} {oid!r}"
    utility = d.get("utility")
    utility = 0.0 if utility is None else _num(d, "utility", where)
    resize = d.get("resize")
    return OptionInfo(
        id=oid, model=model, on_car=on_car, utility=utility,
        payload_mean=0.0 if on_car else _num(d, "payload_bytes_mean", where),
        payload_p95=0.0 if on_car else _num(d, "payload_bytes_p95", where),
        runtime_p50=_num(d, "runtime_ms_p50", where, 0.0),
        runtime_p99=_num(d, "runtime_ms_p99", where, 0.0),
        resize=tuple(resize) if resize else None,
        codec=d.get("codec", "jpeg"),
        jpeg_quality=d.get("jpeg_quality"),
        utilities=_per_frame(d, "utilities", where, n_frames),
        payloads=None if on_car else _per_frame(d, "payloads", where, n_frames),
    )


def parse_replay_profile(raw: Any, source: str) -> ReplayProfile:
    if not isinstance(raw, dict) or not isinstance(raw.get("tasks"), list):
        raise ReplayProfileError(f"{source}: not a profile (expected an object with a 'tasks' list)")
    from carlink.profile import ProfileError, parse_profile

    try:
        parse_profile(raw, source)  # the schema's own validation (every key, every version)
    except ProfileError as exc:
        raise ReplayProfileError(str(exc)) from None
    tasks = []
    for i, t in enumerate(raw["tasks"]):
        where = f"{source}: tasks[{i}]"
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise ReplayProfileError(f"{where}: expected an object with a 'name'")
        where = f"{where} {t['name']!r}"
        frames = t.get("frames")
        ids = [f.get("id") if isinstance(f, dict) else f for f in frames] if isinstance(frames, list) else None
        n = len(ids) if ids is not None else None
        on_car = _option(t.get("on_car"), f"{where} > on_car", True, n)
        opts = [_option(o, f"{where} > options[{j}]", False, n) for j, o in enumerate(t.get("options", []))]
        classes = []
        for c in t.get("classes", []):
            try:
                classes.append(WaymoClass[str(c).upper()])
            except KeyError:
                raise ReplayProfileError(f"{where} > classes: unknown class {c!r}") from None
        info = TaskInfo(
            name=t["name"], camera=t.get("camera") or t["name"],
            deadline_ms=_num(t, "deadline_ms", where), weight=_num(t, "weight", where, 1.0),
            options=(on_car, *opts), classes=tuple(classes),
            frame_index={fid: k for k, fid in enumerate(ids)} if ids else {},
        )
        try:
            ReplayProfile._task(info, "p95", "p99")  # the Task rules: unique ids, utility range
        except ValueError as exc:
            raise ReplayProfileError(f"{where}: {exc}") from None
        tasks.append(info)
    if not tasks:
        raise ReplayProfileError(f"{source}: the profile has no tasks")
    return ReplayProfile(source, str(raw.get("description", "")), str(raw.get("metric", "")), tuple(tasks))


def load_replay_profile(path: str | Path | None = None) -> ReplayProfile:
    """Read a profile file; None: the default profile if built, else the shipped example."""
    if path is None:
        path = default_profile_path()
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReplayProfileError(f"cannot read profile {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ReplayProfileError(f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    return parse_replay_profile(raw, str(path))


def default_profile_path() -> Path:
    """carlink/profiles/default.json (measured by `carlink profile`) when present, else example.json."""
    import carlink

    folder = Path(carlink.__file__).resolve().parent / "profiles"
    default = folder / "default.json"
    return default if default.is_file() else folder / "example.json"
