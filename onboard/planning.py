"""The daemon's view of the profile and its policy: tasks in, one Allocation per frame out.

The decision itself is onboard/policy.py's :class:`CarlinkPolicy` (the same code ``carlink
replay`` replays); :class:`Planner` holds one for the daemon's task list. Loading merges the profile's tasks with the config's per-task settings (camera, on-car model,
deadline, weight); a missing or corrupt profile raises ProfileError naming the file and what is
wrong, so the daemon refuses to start rather than run without a plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from carlink.allocation import Allocation
from carlink.tasks import Task, validate_task_list
from carlink.onboard.config import TaskConfig
from carlink.onboard.policy import CarlinkPolicy, PlanInputs, PolicySettings, PolicyTask, policy_tasks_from_profile

if TYPE_CHECKING:
    import numpy as np

    from carlink.allocator.solve import AllocatorConfig


class ProfileError(ValueError):
    """The profile cannot be read or does not describe valid tasks (message names file and key)."""


@dataclass(frozen=True, slots=True)
class OnboardTask:
    """A profile task plus what the car needs to run it: its camera and on-car model."""

    task: Task  # options with expected per-frame utility, mean payload, p50 runtime
    camera: str
    onboard_model: str
    runtime_p99_ms: tuple[float, ...] = ()  # per option; empty: the p50 runtimes

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def policy_task(self) -> PolicyTask:
        return PolicyTask(self.task, self.runtime_p99_ms or tuple(o.runtime_ms for o in self.task.options))


def _read_profile_tasks(path: Path) -> tuple[PolicyTask, ...]:
    """The policy's tasks of a profile file (carlink.profile schema)."""
    from carlink import profile as profile_mod

    try:
        tasks = policy_tasks_from_profile(profile_mod.load_profile(path))
    except profile_mod.ProfileError as exc:
        raise ProfileError(str(exc)) from None
    except ValueError as exc:
        raise ProfileError(f"profile {path}: {exc}") from None
    validate_task_list([t.task for t in tasks])
    return tuple(tasks)


def load_onboard_tasks(profile_path: Path, overrides: Sequence[TaskConfig]) -> tuple[OnboardTask, ...]:
    """The tasks the daemon runs: every profile task, or those the config lists, with overrides."""
    tasks = _read_profile_tasks(profile_path)
    if not tasks:
        raise ProfileError(f"profile {profile_path}: has no tasks")
    by_name = {t.name: t for t in tasks}
    chosen = overrides or [TaskConfig(name=t.name) for t in tasks]
    out = []
    for i, tc in enumerate(chosen):
        pt = by_name.get(tc.name)
        if pt is None:
            raise ProfileError(
                f"config tasks[{i}].name: task {tc.name!r} is not in profile {profile_path} "
                f"(it has {sorted(by_name)})"
            )
        pt = pt.overridden(deadline_ms=tc.deadline_ms, weight=tc.weight)
        task = pt.task
        camera = tc.camera or task.camera
        if not camera:
            raise ProfileError(f"task {task.name!r}: no camera in the profile; set tasks[{i}].camera in the config")
        model = tc.onboard_model or task.on_car.model
        if not model:
            raise ProfileError(
                f"task {task.name!r}: no on-car model in the profile; set tasks[{i}].onboard_model in the config"
            )
        out.append(OnboardTask(task, camera, model, pt.runtime_p99_ms))
    return tuple(out)


class Planner:
    """The daemon's policy for its task list: :class:`CarlinkPolicy`, one decision per frame."""

    def __init__(self, tasks: "Sequence[Task | PolicyTask]", config: "AllocatorConfig | None" = None,
                 settings: PolicySettings = PolicySettings()) -> None:
        ptasks = [t if isinstance(t, PolicyTask) else PolicyTask(t, tuple(o.runtime_ms for o in t.options))
                  for t in tasks]
        self.tasks = tuple(t.task for t in ptasks)
        self.policy = CarlinkPolicy(ptasks, config, settings)
        self.policy.prepare()

    def plan(self, inputs: PlanInputs) -> Allocation:
        return self.policy.decide(inputs)

    def allocate(self, bandwidth_bps: "float | Sequence[float] | np.ndarray", rtt_ms: float,
                 backlog_bytes: float = 0.0) -> Allocation:
        """One frame from a point estimate or samples of it (bit/s) and the round trip (ms)."""
        import numpy as np

        samples = np.maximum(np.atleast_1d(np.asarray(bandwidth_bps, dtype=float)), 0.0)
        return self.plan(PlanInputs(samples, rtt_ms, backlog_bytes))
