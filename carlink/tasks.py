"""Core allocation types: a perception task and the options that can serve it.

Units everywhere: payload in bytes, times in milliseconds, bandwidth in bit/s.

A task lists every way it can be served. Exactly one option is the on-car model
(``on_car=True``): zero payload, always feasible, the utility floor. Cloud options carry the
payload to upload, the cloud runtime and the expected utility of an answer that arrives in time.
Validation happens when a Task is built, so every solver can trust its input; errors name the
task and the option.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Option:
    """One way to serve a task: a cloud configuration, or the on-car model (``on_car=True``).

    ``model``, ``resize`` and ``codec``/``jpeg_quality`` say what the encoder and the cloud must
    do; the allocator itself uses only ``payload_bytes``, ``runtime_ms`` and ``utility``.
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


@dataclass(frozen=True, slots=True)
class Task:
    """One perception job on one sensor stream, with its deadline, weight and options.

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
        for name in ("utility", "payload_bytes", "runtime_ms"):
            value = getattr(opt, name)
            if not _finite_number(value):
                raise ValueError(f"{at}: {name} must be a finite number, got {value!r}")
        if opt.payload_bytes < 0:
            raise ValueError(f"{at}: payload_bytes must be >= 0, got {opt.payload_bytes!r}")
        if opt.runtime_ms < 0:
            raise ValueError(f"{at}: runtime_ms must be >= 0, got {opt.runtime_ms!r}")
        if not lo <= opt.utility <= hi:
            raise ValueError(f"{at}: utility {opt.utility!r} is outside the task's range [{lo}, {hi}]")
        if opt.on_car:
            if opt.payload_bytes != 0:
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
