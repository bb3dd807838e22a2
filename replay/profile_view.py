"""The profile as replay needs it: tasks by column, per-frame values by frame, the typed profile.

A profile (the carlink.profile schema, version 1 or the profiler's version 2) is read and
validated once, by :func:`carlink.profile.load_profile`; this module only rearranges those typed
objects for the replay's hot loops: per task, the options as a flat tuple whose column
``ON_CAR`` (0) is the on-car model, and each option's statistics and per-frame lists under short
names. Replay uses them three ways:

* planning: the ``carlink`` policy is the car's own :class:`carlink.onboard.policy.CarlinkPolicy`,
  built from the typed profile (:attr:`ReplayProfile.profile`) exactly as the daemon builds it;
  ``turbo`` plans with :meth:`ReplayProfile.aggregate_tasks` (mean payload, p50 runtime: TURBO's
  static curves averaged over a data set); ``single-cloud`` picks a column by size and runtime;
* charging: the virtual clock charges an option's run from its p50 and p99 runtimes;
* profile-driven utilities: the per-frame utility (and payload) of a frame the profile measured,
  looked up by the profiler's frame id (:attr:`TaskInfo.frame_index`), else the aggregate.

Errors are :class:`carlink.profile.ProfileError`, naming the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from carlink.detection import WaymoClass
from carlink.profile import (DEFAULT_PROFILE, EXAMPLE_PROFILE, OnCarProfile, OptionProfile, Profile, ProfileError,
                             TaskProfile, load_profile)
from carlink.tasks import Option, Task

if TYPE_CHECKING:
    from carlink.onboard.policy import CarlinkPolicy

ON_CAR = 0  # column of the on-car option in every task's option list


@dataclass(frozen=True)
class OptionInfo:
    """One column of a task: the on-car model or a cloud option (from the typed profile)."""

    id: str
    model: str
    on_car: bool
    utility: float  # aggregate over the profiled frames
    payload_mean: float
    payload_p95: float
    runtime_p50: float
    runtime_p99: float
    resize: tuple[int, int] | None = None
    codec: str = "jpeg"
    jpeg_quality: int | None = None
    utilities: tuple[float | None, ...] | None = None  # per profiled frame
    payloads: tuple[int, ...] | None = None  # per profiled frame

    @classmethod
    def from_on_car(cls, oc: OnCarProfile) -> "OptionInfo":
        return cls(id=oc.id, model=oc.model, on_car=True, utility=oc.utility, payload_mean=0.0, payload_p95=0.0,
                   runtime_p50=oc.runtime_ms_p50, runtime_p99=oc.runtime_ms_p99,
                   utilities=_tuple(oc.utilities))

    @classmethod
    def from_option(cls, o: OptionProfile) -> "OptionInfo":
        return cls(id=o.id, model=o.model, on_car=False, utility=o.utility, payload_mean=o.payload_bytes_mean,
                   payload_p95=o.payload_bytes_p95, runtime_p50=o.runtime_ms_p50, runtime_p99=o.runtime_ms_p99,
                   resize=o.resize, codec=o.codec, jpeg_quality=o.jpeg_quality,
                   utilities=_tuple(o.utilities), payloads=_tuple(o.payloads))

    def as_option(self, payload: str = "p95", runtime: str = "p99") -> Option:
        """The allocator's Option with the given statistics (payload "mean"/"p95", runtime
        "p50"/"p99"); also what the encoder reads (resize, codec, quality)."""
        return Option(
            id=self.id,
            utility=self.utility,
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

    @classmethod
    def from_profile(cls, t: TaskProfile) -> "TaskInfo":
        options = (OptionInfo.from_on_car(t.on_car), *(OptionInfo.from_option(o) for o in t.options))
        return cls(name=t.name, camera=t.camera, deadline_ms=t.deadline_ms, weight=t.weight, options=options,
                   classes=t.waymo_classes, frame_index=t.frame_positions)

    @property
    def on_car(self) -> OptionInfo:
        return self.options[ON_CAR]


@dataclass(frozen=True)
class ReplayProfile:
    path: str
    profile: Profile  # the validated file; the car's policy is built from it (onboard/policy.py)
    tasks: tuple[TaskInfo, ...]  # the same tasks, in the same order, by column

    @classmethod
    def from_profile(cls, profile: Profile, path: str) -> "ReplayProfile":
        return cls(path, profile, tuple(TaskInfo.from_profile(t) for t in profile.tasks))

    @property
    def description(self) -> str:
        return self.profile.description

    @cached_property
    def carlink_policy(self) -> "CarlinkPolicy":
        """The car's policy for this profile, built once (as the daemon builds it); each replay
        runs a ``fresh()`` copy of it, sharing its allocators and remembered solves."""
        from carlink.onboard.policy import CarlinkPolicy, policy_tasks_from_profile

        return CarlinkPolicy(policy_tasks_from_profile(self.profile))

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


def _tuple(values: list | None) -> tuple | None:
    return None if values is None else tuple(values)


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
