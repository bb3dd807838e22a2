"""The allocator's answer for one frame: per task the chosen option, plus totals and provenance.

Both types convert to plain dicts (``to_dict``) and JSON (``to_json``) and back
(``from_dict``/``from_json``) for logs and reports; the round trip is lossless.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class TaskAllocation:
    """What one task does this frame."""

    task: str
    option: str  # id of the chosen option (the on-car option's id when on_car)
    on_car: bool
    bandwidth_bps: float  # the option's critical bandwidth: its share of the uplink
    utility: float  # expected utility of the chosen option (unweighted)
    weight: float = 1.0

    @property
    def weighted_utility(self) -> float:
        return self.weight * self.utility

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TaskAllocation":
        return cls(**_known_fields(cls, data, "TaskAllocation"))


@dataclass(frozen=True, slots=True)
class Allocation:
    """One frame's allocation.

    ``bandwidth_bps`` is what the solver planned with (the estimate after headroom);
    ``estimate_bps`` the estimate it was given. ``optimality_gap`` is the relative gap the solver
    proved (0.0 for an exact optimum), or None where the solver does not report one.
    """

    tasks: tuple[TaskAllocation, ...]
    bandwidth_bps: float
    estimate_bps: float
    rtt_ms: float
    expected_utility: float  # sum of weight * utility over tasks
    solver: str
    solve_time_ms: float
    optimality_gap: float | None = 0.0
    switching_penalty: float = 0.0
    switches: int = 0  # tasks whose option differs from the previous allocation given

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))

    @property
    def used_bps(self) -> float:
        return math.fsum(t.bandwidth_bps for t in self.tasks)

    @property
    def unused_bps(self) -> float:
        """Planned bandwidth left over (never negative)."""
        return max(0.0, self.bandwidth_bps - self.used_bps)

    def choice(self, task: str) -> TaskAllocation:
        for t in self.tasks:
            if t.task == task:
                return t
        raise KeyError(f"allocation has no task {task!r}")

    def as_mapping(self) -> dict[str, str]:
        """Task name -> chosen option id (the form a switching penalty takes as ``previous``)."""
        return {t.task: t.option for t in self.tasks}

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["tasks"] = [t.to_dict() for t in self.tasks]
        d["used_bps"] = self.used_bps
        d["unused_bps"] = self.unused_bps
        return d

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Allocation":
        if not isinstance(data, dict):
            raise ValueError(f"allocation must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        data.pop("used_bps", None)  # derived values, recomputed
        data.pop("unused_bps", None)
        if "tasks" not in data or not isinstance(data["tasks"], list):
            raise ValueError("allocation: key 'tasks' must be a list")
        tasks = []
        for i, t in enumerate(data["tasks"]):
            try:
                tasks.append(TaskAllocation.from_dict(t))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"allocation: tasks[{i}]: {exc}") from exc
        data["tasks"] = tuple(tasks)
        return cls(**_known_fields(cls, data, "Allocation"))

    @classmethod
    def from_json(cls, text: str) -> "Allocation":
        return cls.from_dict(json.loads(text))


def _known_fields(cls: type, data: dict[str, Any], what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{what}: unknown keys {unknown}")
    return data
