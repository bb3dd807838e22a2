"""TURBO's utility model: critical bandwidth per option and the service-level staircase per task.

An option with payload ``S`` bytes, cloud runtime ``t_exec`` ms, round trip ``t_rtt`` ms and task
deadline ``t_slo`` ms arrives in time only with at least the critical bandwidth

    b_c = 8 * S / ((t_slo - t_rtt - t_exec) / 1000)   bit/s

and is infeasible (b_c = inf) where the denominator is <= 0. The on-car option needs 0 bit/s.

Solvers work on two dense (tasks x options) arrays per frame, ``bc`` and ``value``: rows are
tasks in the given order, columns the task's options in profile order, padded with ``inf``
bandwidth. :class:`OptionTable` holds a task list's static numbers once (built per profile), so
that turning new bandwidth/RTT/utilities into those arrays each frame is a few numpy operations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from carlink.tasks import Task, validate_task_list


def critical_bandwidth(payload_bytes: float, deadline_ms: float, rtt_ms: float, runtime_ms: float) -> float:
    """Bit/s needed to upload ``payload_bytes`` in time; ``inf`` when the deadline cannot be met.

    A zero payload (the on-car option) needs 0 bit/s whatever the timing.
    """
    if payload_bytes == 0:
        return 0.0
    slack_ms = deadline_ms - rtt_ms - runtime_ms
    if slack_ms <= 0:
        return float("inf")
    return 8.0 * payload_bytes / (slack_ms / 1000.0)


def critical_bandwidth_array(
    payload_bytes: np.ndarray, deadline_ms: np.ndarray, rtt_ms: float, runtime_ms: np.ndarray
) -> np.ndarray:
    """Vectorised :func:`critical_bandwidth` (same rules, element-wise, broadcasting)."""
    slack_ms = np.asarray(deadline_ms, dtype=float) - rtt_ms - np.asarray(runtime_ms, dtype=float)
    payload = np.asarray(payload_bytes, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        bc = 8.0 * payload / (slack_ms / 1000.0)
    bc = np.where(slack_ms > 0, bc, np.inf)
    return np.where(payload == 0, 0.0, bc)


@dataclass(frozen=True)
class OptionTable:
    """A task list's static numbers as padded (tasks x options) arrays.

    Padding cells have ``valid == False``; they get infinite bandwidth in :meth:`frame`.
    """

    tasks: tuple[Task, ...]
    payload_bytes: np.ndarray  # (T, K)
    runtime_ms: np.ndarray  # (T, K)
    utility: np.ndarray  # (T, K), unweighted
    valid: np.ndarray  # (T, K) bool
    weight: np.ndarray  # (T,)
    deadline_ms: np.ndarray  # (T,)
    on_car: np.ndarray  # (T,) column of each task's on-car option
    n_options: np.ndarray  # (T,)

    @classmethod
    def from_tasks(cls, tasks: Sequence[Task]) -> "OptionTable":
        tasks = validate_task_list(tasks)
        n_tasks = len(tasks)
        n_opts = np.array([len(t.options) for t in tasks], dtype=np.int64)
        k = int(n_opts.max()) if n_tasks else 0
        payload = np.zeros((n_tasks, k))
        runtime = np.zeros((n_tasks, k))
        utility = np.zeros((n_tasks, k))
        valid = np.zeros((n_tasks, k), dtype=bool)
        for i, task in enumerate(tasks):
            n = len(task.options)
            payload[i, :n] = [o.payload_bytes for o in task.options]
            runtime[i, :n] = [o.runtime_ms for o in task.options]
            utility[i, :n] = [o.utility for o in task.options]
            valid[i, :n] = True
        return cls(
            tasks=tasks,
            payload_bytes=payload,
            runtime_ms=runtime,
            utility=utility,
            valid=valid,
            weight=np.array([t.weight for t in tasks], dtype=float),
            deadline_ms=np.array([t.deadline_ms for t in tasks], dtype=float),
            on_car=np.array([t.on_car_index for t in tasks], dtype=np.int64),
            n_options=n_opts,
        )

    @property
    def shape(self) -> tuple[int, int]:
        return self.valid.shape  # type: ignore[return-value]

    def critical_bandwidth(self, rtt_ms: float, deadline_ms: float | np.ndarray | None = None) -> np.ndarray:
        """(T, K) critical bandwidth in bit/s: ``inf`` for infeasible options and padding."""
        deadline = self.deadline_ms if deadline_ms is None else np.broadcast_to(deadline_ms, self.deadline_ms.shape)
        bc = critical_bandwidth_array(self.payload_bytes, deadline[:, None], rtt_ms, self.runtime_ms)
        bc = np.where(self.valid, bc, np.inf)
        bc[np.arange(len(self.tasks)), self.on_car] = 0.0  # on-car: always feasible
        return bc

    def frame(
        self,
        rtt_ms: float,
        *,
        deadline_ms: float | np.ndarray | None = None,
        utility: np.ndarray | None = None,
        stay_bonus: float = 0.0,
        previous: Mapping[str, str] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """This frame's ``(bc, value)`` arrays.

        ``value = weight * utility``, plus ``stay_bonus`` on each task's previously chosen option
        (the switching penalty: keeping an option is worth that much more than changing).
        ``utility`` replaces the profile's (T, K) utilities for this frame when given.
        """
        bc = self.critical_bandwidth(rtt_ms, deadline_ms)
        util = self.utility if utility is None else np.asarray(utility, dtype=float)
        if util.shape != self.valid.shape:
            raise ValueError(f"utility override has shape {util.shape}, expected {self.valid.shape}")
        value = np.where(self.valid, self.weight[:, None] * util, 0.0)
        if stay_bonus and previous:
            value = value.copy()
            for i, task in enumerate(self.tasks):
                prev = previous.get(task.name)
                if prev is not None:
                    try:
                        value[i, task.index_of(prev)] += stay_bonus
                    except KeyError:
                        pass  # the previous option no longer exists: nothing to keep
        return bc, value


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a service-level staircase: from ``bandwidth_bps`` on, ``utility`` is reachable."""

    bandwidth_bps: float
    utility: float
    option: str
    on_car: bool


def staircase_mask(bc: np.ndarray, value: np.ndarray) -> np.ndarray:
    """(T, K) bool: the options on each task's staircase (upper envelope in bandwidth).

    An option stays when no other option of its task needs at most its bandwidth for at least its
    value; of exact duplicates the one listed first stays. Infeasible (infinite) options never stay.
    """
    n_tasks, k = bc.shape
    if k == 0:
        return np.zeros_like(bc, dtype=bool)
    cols = np.broadcast_to(np.arange(k), bc.shape)
    order = np.lexsort((cols, -value, bc), axis=-1)  # by bandwidth, then value desc, then column
    v_sorted = np.take_along_axis(value, order, axis=-1)
    best_before = np.maximum.accumulate(v_sorted, axis=-1)
    best_before = np.concatenate([np.full((n_tasks, 1), -np.inf), best_before[:, :-1]], axis=-1)
    keep_sorted = (v_sorted > best_before) & np.isfinite(np.take_along_axis(bc, order, axis=-1))
    mask = np.zeros_like(keep_sorted)
    np.put_along_axis(mask, order, keep_sorted, axis=-1)
    return mask


def staircase(task: Task, rtt_ms: float, deadline_ms: float | None = None) -> list[Step]:
    """A task's service-level curve for plotting: steps of rising utility by rising bandwidth.

    The first step is at 0 bit/s (the on-car option, or a better zero-payload option). Uses
    unweighted utility; the task's deadline unless ``deadline_ms`` overrides it.
    """
    table = OptionTable.from_tasks([task])
    bc = table.critical_bandwidth(rtt_ms, deadline_ms)
    mask = staircase_mask(bc, table.utility)[0]
    idx = [j for j in np.flatnonzero(mask)]
    idx.sort(key=lambda j: (bc[0, j], j))
    return [
        Step(float(bc[0, j]), float(table.utility[0, j]), task.options[j].id, task.options[j].on_car)
        for j in idx
    ]


def service_level(task: Task, bandwidth_bps: float, rtt_ms: float, deadline_ms: float | None = None) -> Step:
    """The best step of ``task``'s staircase reachable with ``bandwidth_bps``."""
    best = None
    for step in staircase(task, rtt_ms, deadline_ms):
        if step.bandwidth_bps <= bandwidth_bps:
            best = step
    assert best is not None  # the zero-bandwidth step always exists
    return best


def upper_convex_hull(steps: Sequence[Step]) -> list[Step]:
    """The concave envelope of a staircase: the points the LP relaxation can use.

    Useful to see how far a task's integer choices sit from the LP bound.
    """
    hull: list[Step] = []
    for s in steps:
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # drop b when it lies on or below the segment a -> s
            cross = (b.bandwidth_bps - a.bandwidth_bps) * (s.utility - a.utility) - (
                b.utility - a.utility
            ) * (s.bandwidth_bps - a.bandwidth_bps)
            if cross >= 0:
                hull.pop()
            else:
                break
        hull.append(s)
    return hull
