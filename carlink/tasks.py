"""Core allocation types: a perception task and the options that can serve it.

Units everywhere: payload in bytes, times in milliseconds, bandwidth in bit/s.

A task lists every way it can be served. Exactly one option is the on-car model
(``on_car=True``): zero payload, always feasible, the utility floor. Cloud options carry the
payload to upload, the cloud runtime and the expected utility of an answer that arrives in time.
Validation happens when a Task is built, so every solver can trust its input; errors name the
task and the option.

This is carlink's one task model: the allocator, the car's policy, the daemon and the replay all
use these two types. An option carries the profile's statistics (payload mean and p95, runtime
p50 and p99, expected per-frame and aggregate utility) next to the three numbers the allocator
plans with (``utility``, ``payload_bytes``, ``runtime_ms``); :meth:`Task.planned` gives the
allocator's view under chosen statistics. A profile becomes tasks in one place,
:meth:`carlink.profile.Profile.tasks_for_planning`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

PayloadStat = Literal["mean", "p95"]
RuntimeStat = Literal["p50", "p99"]
UtilityStat = Literal["frame", "aggregate"]
PAYLOAD_STATS: tuple[str, ...] = ("mean", "p95")
RUNTIME_STATS: tuple[str, ...] = ("p50", "p99")
UTILITY_STATS: tuple[str, ...] = ("frame", "aggregate")

# Statistic field -> the planning field it defaults to (an option written without statistics
# has one value and no spread).
_STAT_BASE = {
    "payload_bytes_mean": "payload_bytes",
    "payload_bytes_p95": "payload_bytes",
    "runtime_ms_p50": "runtime_ms",
    "runtime_ms_p99": "runtime_ms",
    "frame_utility": "utility",
    "aggregate_utility": "utility",
}


@dataclass(frozen=True, slots=True)
class Option:
    """One way to serve a task: a cloud configuration, or the on-car model (``on_car=True``).

    ``model``, ``resize`` and ``codec``/``jpeg_quality`` say what the encoder and the cloud must
    do; the allocator itself uses only ``payload_bytes``, ``runtime_ms`` and ``utility``. The
    statistics after them are what the profile measured; one left out (None) takes the planning
    number, so after construction every statistic is a number.
    """

    id: str
    utility: float
    payload_bytes: float = 0.0
    runtime_ms: float = 0.0
    on_car: bool = False
    model: str = ""
    resize: tuple[int, int] | None = None  # (width, height) the frame is resized to; None: as is
    codec: str = "jpeg"  # "jpeg", "png" or "raw" (ignored for the on-car option)
    jpeg_quality: int | None = None
    payload_bytes_mean: float | None = None
    payload_bytes_p95: float | None = None
    runtime_ms_p50: float | None = None
    runtime_ms_p99: float | None = None
    frame_utility: float | None = None  # expected utility on one frame: the mean of per-frame values
    aggregate_utility: float | None = None  # pooled over the profiled frames (COCO style)

    def __post_init__(self) -> None:
        for stat, base in _STAT_BASE.items():
            if getattr(self, stat) is None:
                object.__setattr__(self, stat, getattr(self, base))

    def planned(self, payload: PayloadStat, runtime: RuntimeStat, utility: UtilityStat = "frame") -> "Option":
        """This option with ``payload_bytes``/``runtime_ms``/``utility`` set to those statistics."""
        _check_stats(payload, runtime, utility)
        return dataclasses.replace(
            self,
            payload_bytes=self.payload_bytes_p95 if payload == "p95" else self.payload_bytes_mean,
            runtime_ms=self.runtime_ms_p99 if runtime == "p99" else self.runtime_ms_p50,
            utility=self.aggregate_utility if utility == "aggregate" else self.frame_utility,
        )


def _check_stats(payload: str, runtime: str, utility: str) -> None:
    for name, value, allowed in (("payload", payload, PAYLOAD_STATS), ("runtime", runtime, RUNTIME_STATS),
                                 ("utility", utility, UTILITY_STATS)):
        if value not in allowed:
            raise ValueError(f"{name} statistic must be one of {allowed}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Task:
    """One perception job on one sensor stream, with its deadline, weight and options.

    ``camera`` is the stream the task reads; its on-car model is ``task.on_car.model``.
    ``utility_range`` is the interval every option's utility must lie in: [0, 1] for accuracy
    metrics such as AP; a task whose utility is on another scale declares it.
    """

    name: str
    deadline_ms: float
    options: tuple[Option, ...]
    weight: float = 1.0
    camera: str = ""
    utility_range: tuple[float, float] = (0.0, 1.0)
    _on_car_index: int = field(default=-1, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", tuple(self.options))
        object.__setattr__(self, "utility_range", tuple(float(v) for v in self.utility_range))
        object.__setattr__(self, "_on_car_index", _validate(self))

    @property
    def on_car(self) -> Option:
        """The task's on-car option (there is always exactly one)."""
        return self.options[self._on_car_index]

    @property
    def on_car_index(self) -> int:
        return self._on_car_index

    def option(self, option_id: str) -> Option:
        """The option with this id; KeyError naming the task when there is none."""
        for opt in self.options:
            if opt.id == option_id:
                return opt
        raise KeyError(f"task {self.name!r} has no option {option_id!r}")

    def index_of(self, option_id: str) -> int:
        for i, opt in enumerate(self.options):
            if opt.id == option_id:
                return i
        raise KeyError(f"task {self.name!r} has no option {option_id!r}")

    def planned(self, payload: PayloadStat, runtime: RuntimeStat, utility: UtilityStat = "frame") -> "Task":
        """The allocator's view under these statistics: every option's ``payload_bytes``,
        ``runtime_ms`` and ``utility`` set from them (the statistics themselves are kept)."""
        return dataclasses.replace(self, options=tuple(o.planned(payload, runtime, utility) for o in self.options))

    def overridden(self, deadline_ms: float | None = None, weight: float | None = None, camera: str | None = None,
                   on_car_model: str | None = None) -> "Task":
        """This task with the given settings replaced (None: kept), e.g. a car's per-task config."""
        options = self.options
        if on_car_model is not None:
            options = tuple(dataclasses.replace(o, model=on_car_model) if o.on_car else o for o in options)
        return dataclasses.replace(
            self,
            deadline_ms=self.deadline_ms if deadline_ms is None else deadline_ms,
            weight=self.weight if weight is None else weight,
            camera=self.camera if camera is None else camera,
            options=options,
        )


def _finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _validate(task: Task) -> int:
    """Check a task; return the index of its on-car option. ValueError names task and option."""
    where = f"task {task.name!r}"
    if not isinstance(task.name, str) or not task.name:
        raise ValueError(f"task name must be a non-empty string, got {task.name!r}")
    if not _finite_number(task.deadline_ms) or task.deadline_ms <= 0:
        raise ValueError(f"{where}: deadline_ms must be a finite number > 0, got {task.deadline_ms!r}")
    if not _finite_number(task.weight) or task.weight < 0:
        raise ValueError(f"{where}: weight must be a finite number >= 0, got {task.weight!r}")
    lo, hi = task.utility_range
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ValueError(f"{where}: utility_range must be finite with low <= high, got {task.utility_range!r}")
    seen: set[str] = set()
    on_car: list[int] = []
    for i, opt in enumerate(task.options):
        if not isinstance(opt, Option):
            raise ValueError(f"{where}: options[{i}] is {type(opt).__name__}, not an Option")
        at = f"{where}, option {opt.id!r}"
        if not isinstance(opt.id, str) or not opt.id:
            raise ValueError(f"{where}: options[{i}] has an empty or non-string id {opt.id!r}")
        if opt.id in seen:
            raise ValueError(f"{where}: duplicate option id {opt.id!r}")
        seen.add(opt.id)
        _validate_numbers(opt, at, lo, hi)
        if opt.on_car:
            if opt.payload_bytes != 0 or opt.payload_bytes_mean != 0 or opt.payload_bytes_p95 != 0:
                raise ValueError(f"{at}: the on-car option uploads nothing, payload_bytes must be 0")
            on_car.append(i)
        elif opt.codec not in ("jpeg", "png", "raw"):
            raise ValueError(f"{at}: codec must be 'jpeg', 'png' or 'raw', got {opt.codec!r}")
    if not on_car:
        raise ValueError(f"{where}: has no on-car option (one option needs on_car=True)")
    if len(on_car) > 1:
        ids = [task.options[i].id for i in on_car]
        raise ValueError(f"{where}: has {len(on_car)} on-car options {ids}, exactly one is allowed")
    return on_car[0]


def _validate_numbers(opt: Option, at: str, lo: float, hi: float) -> None:
    """An option's planning numbers and statistics: finite, sizes and times >= 0, utilities in
    the task's range, the p99 runtime not below the p50."""
    for name in ("utility", "payload_bytes", "runtime_ms", *_STAT_BASE):
        value = getattr(opt, name)
        if not _finite_number(value):
            raise ValueError(f"{at}: {name} must be a finite number, got {value!r}")
    for name in ("payload_bytes", "runtime_ms", "payload_bytes_mean", "payload_bytes_p95", "runtime_ms_p50",
                 "runtime_ms_p99"):
        if getattr(opt, name) < 0:
            raise ValueError(f"{at}: {name} must be >= 0, got {getattr(opt, name)!r}")
    for name in ("utility", "frame_utility", "aggregate_utility"):
        if not lo <= getattr(opt, name) <= hi:
            raise ValueError(f"{at}: {name} {getattr(opt, name)!r} is outside the task's range [{lo}, {hi}]")
    if opt.runtime_ms_p99 < opt.runtime_ms_p50:
        raise ValueError(f"{at}: runtime p99 {opt.runtime_ms_p99} ms is below its p50 {opt.runtime_ms_p50} ms")


def validate_task_list(tasks: "list[Task] | tuple[Task, ...]") -> tuple[Task, ...]:
    """Check that ``tasks`` are Task objects with unique names; return them as a tuple."""
    out = tuple(tasks)
    names: set[str] = set()
    for i, task in enumerate(out):
        if not isinstance(task, Task):
            raise ValueError(f"tasks[{i}] is {type(task).__name__}, not a Task")
        if task.name in names:
            raise ValueError(f"duplicate task name {task.name!r}")
        names.add(task.name)
    return out
