"""The profile as replay needs it: carlink's tasks plus the per-frame columns, the typed profile.

A profile (the carlink.profile schema, version 1 or the profiler's version 2) is read and
validated once, by :func:`carlink.profile.load_profile`, and becomes tasks once, by
:meth:`carlink.profile.TaskProfile.to_task` (carlink's one task model, carlink/tasks.py): every
option carries the profile's statistics, and column ``ON_CAR`` (0) is the on-car model. This
module adds only what is replay's own: per task, the profile's per-frame utilities and payloads
by option id and the profiled frame ids' positions (:class:`ReplayTask`). Replay uses them
three ways:

* planning: the ``carlink`` policy is the car's own :class:`carlink.onboard.policy.CarlinkPolicy`,
  built from the typed profile (:attr:`ReplayProfile.profile`) exactly as the daemon builds it;
  ``turbo`` plans with :meth:`ReplayProfile.aggregate_tasks` (mean payload, p50 runtime: TURBO's
  static curves averaged over a data set); ``single-cloud`` picks a column by size and runtime;
* charging: the virtual clock charges an option's run from its p50 and p99 runtimes;
* profile-driven utilities: the per-frame utility (and payload) of a frame the profile measured,
  looked up by the profiler's frame id (:attr:`ReplayTask.frame_index`), else the aggregate.

Errors are :class:`carlink.profile.ProfileError`, naming the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from carlink.detection import WaymoClass
from carlink.profile import DEFAULT_PROFILE, EXAMPLE_PROFILE, Profile, ProfileError, TaskProfile, load_profile
from carlink.tasks import Task

if TYPE_CHECKING:
    from carlink.onboard.policy import CarlinkPolicy

ON_CAR = 0  # column of the on-car option in every task's option list


@dataclass(frozen=True, slots=True)
class ReplayTask(Task):
    """A profile's task (a :class:`carlink.tasks.Task`, options in the profile's order, on-car
    first) with what only the replay reads: the evaluated classes and the per-frame columns.
    The per-frame fields come from the same profile as the task, so they are left out of
    comparisons (and dicts are not hashable)."""

    classes: tuple[WaymoClass, ...] = ()  # evaluated classes; empty: those the models detect
    frame_index: dict[str, int] = field(default_factory=dict, compare=False)  # profiled frame id -> position
    # option id -> its value on each profiled frame (options the profile measured per frame)
    frame_utilities: dict[str, tuple[float | None, ...]] = field(default_factory=dict, compare=False)
    frame_payloads: dict[str, tuple[int, ...]] = field(default_factory=dict, compare=False)

    @classmethod
    def from_profile(cls, t: TaskProfile) -> "ReplayTask":
        task = t.to_task()
        items = (t.on_car, *t.options)
        return cls(**{f.name: getattr(task, f.name) for f in fields(Task) if f.init},
                   classes=t.waymo_classes, frame_index=t.frame_positions,
                   frame_utilities={o.id: tuple(o.utilities) for o in items if o.utilities is not None},
                   frame_payloads={o.id: tuple(o.payloads) for o in t.options if o.payloads is not None})


@dataclass(frozen=True)
class ReplayProfile:
    path: str
    profile: Profile  # the validated file; the car's policy is built from it (onboard/policy.py)
    tasks: tuple[ReplayTask, ...]  # the same tasks, in the same order, by column

    @classmethod
    def from_profile(cls, profile: Profile, path: str) -> "ReplayProfile":
        return cls(path, profile, tuple(ReplayTask.from_profile(t) for t in profile.tasks))

    @property
    def description(self) -> str:
        return self.profile.description

    @cached_property
    def carlink_policy(self) -> "CarlinkPolicy":
        """The car's policy for this profile, built once (as the daemon builds it); each replay
        runs a ``fresh()`` copy of it, sharing its allocators and remembered solves."""
        from carlink.onboard.policy import CarlinkPolicy

        return CarlinkPolicy(self.profile.tasks_for_planning())

    def aggregate_tasks(self) -> list[Task]:
        """TURBO's view: curves averaged over the data set (mean payload, p50 runtime)."""
        return list(self._aggregate_tasks)

    @cached_property
    def _aggregate_tasks(self) -> tuple[Task, ...]:
        return tuple(self.profile.to_tasks(payload="mean", runtime="p50"))

    def cloud_models(self) -> list[str]:
        return sorted({o.model for t in self.tasks for o in t.options[1:]})

    def on_car_models(self) -> list[str]:
        return sorted({t.on_car.model for t in self.tasks})


def load_replay_profile(path: str | Path | None = None) -> ReplayProfile:
    """Read and validate a profile file (ProfileError naming the file and key); None: the
    default profile if built, else the shipped example."""
    path = Path(path) if path is not None else default_profile_path()
    profile = load_profile(path)
    if not profile.tasks:
        raise ProfileError(f"{path}: the profile has no tasks")
    return ReplayProfile.from_profile(profile, str(path))


def default_profile_path() -> Path:
    """carlink/profiles/default.json (measured by `carlink profile`) when present, else example.json."""
    return DEFAULT_PROFILE if DEFAULT_PROFILE.is_file() else EXAMPLE_PROFILE
