"""The daemon's view of the profile and its policy: tasks in, one Allocation per frame out.

The decision itself is onboard/policy.py's :class:`CarlinkPolicy` (the same code ``carlink
replay`` replays); :class:`Planner` holds one for the daemon's task list. Loading reads the
profile's tasks (:meth:`carlink.profile.Profile.tasks_for_planning`, carlink's one task model)
and replaces what the config sets per task (camera, on-car model, deadline, weight); a missing or
corrupt profile raises ProfileError naming the file and what is wrong, so the daemon refuses to
start rather than run without a plan.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from carlink.allocation import Allocation
from carlink.onboard.config import TaskConfig
from carlink.onboard.policy import CarlinkPolicy, PlanInputs, PolicySettings
from carlink.tasks import Task, validate_task_list

if TYPE_CHECKING:
    import numpy as np

    from carlink.allocator.solve import AllocatorConfig


class ProfileError(ValueError):
    """The profile cannot be read or does not describe valid tasks (message names file and key)."""


def _read_profile_tasks(path: Path) -> tuple[Task, ...]:
    """The tasks of a profile file (carlink.profile schema)."""
    from carlink import profile as profile_mod

    try:
        tasks = profile_mod.load_profile(path).tasks_for_planning()
    except profile_mod.ProfileError as exc:
        raise ProfileError(str(exc)) from None
    except ValueError as exc:
        raise ProfileError(f"profile {path}: {exc}") from None
    return validate_task_list(tasks)


def load_onboard_tasks(profile_path: Path, overrides: Sequence[TaskConfig]) -> tuple[Task, ...]:
    """The tasks the daemon runs: every profile task, or those the config lists, each with the
    config's settings in place of the profile's; every task has a camera and an on-car model."""
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
        task = task.overridden(deadline_ms=tc.deadline_ms, weight=tc.weight, camera=tc.camera,
                               on_car_model=tc.onboard_model)
        if not task.camera:
            raise ProfileError(f"task {task.name!r}: no camera in the profile; set tasks[{i}].camera in the config")
        if not task.on_car.model:
            raise ProfileError(
                f"task {task.name!r}: no on-car model in the profile; set tasks[{i}].onboard_model in the config"
            )
        out.append(task)
    return tuple(out)


class Planner:
    """The daemon's policy for its task list: :class:`CarlinkPolicy`, one decision per frame."""

    def __init__(self, tasks: Sequence[Task], config: "AllocatorConfig | None" = None,
                 settings: PolicySettings = PolicySettings()) -> None:
        self.tasks = tuple(tasks)
        self.policy = CarlinkPolicy(self.tasks, config, settings)
        self.policy.prepare()

    def plan(self, inputs: PlanInputs) -> Allocation:
        return self.policy.decide(inputs)

    def allocate(self, bandwidth_bps: "float | Sequence[float] | np.ndarray", rtt_ms: float,
                 backlog_bytes: float = 0.0) -> Allocation:
        """One frame from a point estimate or samples of it (bit/s) and the round trip (ms)."""
        import numpy as np

        samples = np.maximum(np.atleast_1d(np.asarray(bandwidth_bps, dtype=float)), 0.0)
        return self.plan(PlanInputs(samples, rtt_ms, backlog_bytes))
