"""The daemon's view of the profile and the allocator: tasks in, one Allocation per frame out.

Loading merges the profile's tasks with the config's per-task settings (camera, on-car model,
deadline, weight); a missing or corrupt profile raises ProfileError naming the file and what is
wrong, so the daemon refuses to start rather than run without a plan.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from carlink.allocation import Allocation
from carlink.tasks import Task, validate_task_list
from carlink.onboard.config import TaskConfig

if TYPE_CHECKING:
    from carlink.allocator.solve import AllocatorConfig


class ProfileError(ValueError):
    """The profile cannot be read or does not describe valid tasks (message names file and key)."""


@dataclass(frozen=True, slots=True)
class OnboardTask:
    """A profile task plus what the car needs to run it: its camera and on-car model."""

    task: Task
    camera: str
    onboard_model: str

    @property
    def name(self) -> str:
        return self.task.name


def _read_profile_tasks(path: Path) -> tuple[Task, ...]:
    """Tasks of a profile file (carlink.profile schema), planned with its conservative statistics."""
    from carlink import profile as profile_mod

    try:
        tasks = profile_mod.load_profile(path).to_tasks()
    except profile_mod.ProfileError as exc:
        raise ProfileError(str(exc)) from None
    return validate_task_list(tasks)


def load_onboard_tasks(profile_path: Path, overrides: Sequence[TaskConfig]) -> tuple[OnboardTask, ...]:
    """The tasks the daemon runs: every profile task, or those the config lists, with overrides."""
    tasks = _read_profile_tasks(profile_path)
    if not tasks:
        raise ProfileError(f"profile {profile_path}: has no tasks")
    by_name = {t.name: t for t in tasks}
    chosen = overrides or [TaskConfig(name=t.name) for t in tasks]
    out = []
    for i, tc in enumerate(chosen):
        task = by_name.get(tc.name)
        if task is None:
            raise ProfileError(
                f"config tasks[{i}].name: task {tc.name!r} is not in profile {profile_path} "
                f"(it has {sorted(by_name)})"
            )
        task = dataclasses.replace(
            task,
            deadline_ms=tc.deadline_ms if tc.deadline_ms is not None else task.deadline_ms,
            weight=tc.weight if tc.weight is not None else task.weight,
        )
        camera = tc.camera or task.camera
        if not camera:
            raise ProfileError(f"task {task.name!r}: no camera in the profile; set tasks[{i}].camera in the config")
        model = tc.onboard_model or task.on_car.model
        if not model:
            raise ProfileError(
                f"task {task.name!r}: no on-car model in the profile; set tasks[{i}].onboard_model in the config"
            )
        out.append(OnboardTask(task, camera, model))
    return tuple(out)


class Planner:
    """Solves each frame's allocation with the allocator's front (solver, headroom, hysteresis)."""

    def __init__(self, tasks: Sequence[Task], config: "AllocatorConfig | None" = None) -> None:
        from carlink.allocator.solve import Allocator

        self.tasks = tuple(tasks)
        self._allocator = Allocator(self.tasks, config)
        # The first solve compiles the CVXPY model (about a second): do it now, before frames flow.
        self._allocator.allocate(0.0, 0.0)
        self._previous: Allocation | None = None

    def allocate(self, bandwidth_bps: float, rtt_ms: float) -> Allocation:
        alloc = self._allocator.allocate(max(0.0, bandwidth_bps), rtt_ms, previous=self._previous)
        self._previous = alloc
        return alloc
