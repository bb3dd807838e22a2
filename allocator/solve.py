"""The allocator's front: one call per frame, solver chosen by argument or configuration.

    allocator = Allocator(tasks, AllocatorConfig(headroom=Headroom(quantile=0.1)))
    allocation = allocator.allocate(bandwidth_samples_bps, rtt_ms=35.0, previous=last)

Solvers (``AllocatorConfig.solver`` or the ``solver=`` argument):

- ``"cvxpy"``: the CVXPY model of allocator/cvx.py, compiled once per shape, re-solved with the
  MIP solver ``mip_solver``.
- ``"mckp"``: the exact specialised solver of allocator/mckp.py.
- ``"pulp"``: TURBO's PuLP/CBC path (baseline and cross-check; slow).
- ``"auto"`` (default): CVXPY for up to ``cvxpy_max_tasks`` tasks (car scale), the exact fast path
  beyond. The threshold and the default MIP solver come from tests/benchmarks/allocator.py (see
  the README): the CVXPY path stays inside its 5 ms budget at 5 tasks with GLPK_MI and falls
  behind quickly as tasks are added, while the fast path is exact and faster at every size.

A CVXPY or PuLP answer is checked against the budget with the same arithmetic as the fast path;
one that exceeds it (a MIP solver's feasibility tolerance) or a solver failure falls back to the
exact fast path, and the allocation's ``solver`` says so.

Headroom: plan with ``fraction`` x the estimate, or with the ``quantile`` of bandwidth samples
(e.g. 0.1: a rate the link beat 90 % of the time). Switching penalty: keeping last frame's option
for a task is worth ``switching_penalty`` (utility units) more, so near-equal allocations do not
flap; the expected utility reported never includes that bonus.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping, Sequence

import numpy as np

from carlink.allocation import Allocation, TaskAllocation
from carlink.extras import MissingExtraError
from carlink.tasks import Task

from . import mckp
from .utility import OptionTable

log = logging.getLogger(__name__)

SOLVERS = ("auto", "cvxpy", "mckp", "pulp")
DEFAULT_MIP_SOLVER = "GLPK_MI"
DEFAULT_CVXPY_MAX_TASKS = 5


@dataclass(frozen=True)
class Headroom:
    """How much of the bandwidth estimate to plan with: a fraction of it, or a low quantile of
    samples of it (then ``fraction`` multiplies the quantile)."""

    fraction: float = 1.0
    quantile: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.fraction, (int, float)) and 0.0 <= self.fraction <= 1.0):
            raise ValueError(f"headroom fraction must be in [0, 1], got {self.fraction!r}")
        if self.quantile is not None and not (0.0 <= self.quantile <= 1.0):
            raise ValueError(f"headroom quantile must be in [0, 1], got {self.quantile!r}")

    def plan(self, bandwidth_bps: float | Sequence[float] | np.ndarray) -> tuple[float, float]:
        """(planned bit/s, estimate bit/s) from a point estimate or samples of the estimate.

        The estimate reported for samples is their mean.
        """
        samples = np.atleast_1d(np.asarray(bandwidth_bps, dtype=float))
        if samples.size == 0:
            raise ValueError("bandwidth: no samples given")
        bad = np.flatnonzero(~np.isfinite(samples) | (samples < 0))
        if bad.size:
            raise ValueError(
                f"bandwidth must be finite and >= 0 bit/s; sample {int(bad[0])} is {samples[bad[0]]!r}"
            )
        estimate = float(samples.mean())
        if self.quantile is None:
            base = estimate
        else:
            base = float(np.quantile(samples, self.quantile, method="inverted_cdf"))
        return self.fraction * base, estimate


@dataclass(frozen=True)
class AllocatorConfig:
    """The allocator's settings (the ``[allocator]`` part of a daemon configuration)."""

    solver: str = "auto"
    mip_solver: str = DEFAULT_MIP_SOLVER
    cvxpy_max_tasks: int = DEFAULT_CVXPY_MAX_TASKS
    headroom: Headroom = field(default_factory=Headroom)
    switching_penalty: float = 0.0

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        if not (isinstance(self.cvxpy_max_tasks, int) and self.cvxpy_max_tasks >= 0):
            raise ValueError(f"cvxpy_max_tasks must be an integer >= 0, got {self.cvxpy_max_tasks!r}")
        p = self.switching_penalty
        if not (isinstance(p, (int, float)) and math.isfinite(p) and p >= 0):
            raise ValueError(f"switching_penalty must be a finite number >= 0, got {p!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AllocatorConfig":
        """From a plain mapping (e.g. a TOML table); ``headroom`` is a mapping too."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"allocator config: unknown keys {unknown}; known: {sorted(known)}")
        kwargs = dict(data)
        if "headroom" in kwargs and isinstance(kwargs["headroom"], Mapping):
            h = dict(kwargs["headroom"])
            bad = sorted(set(h) - {"fraction", "quantile"})
            if bad:
                raise ValueError(f"allocator config: headroom has unknown keys {bad}")
            kwargs["headroom"] = Headroom(**h)
        return cls(**kwargs)


class Allocator:
    """Per-frame allocation for a fixed task list (its static numbers are prepared once)."""

    def __init__(self, tasks: Sequence[Task], config: AllocatorConfig | None = None) -> None:
        self.config = config or AllocatorConfig()
        self.table = OptionTable.from_tasks(tasks)
        self.tasks = self.table.tasks
        self._cvx_models: dict[tuple[int, int, str], Any] = {}

    def prepare(self, solver: str | None = None) -> None:
        """Do the one-off work (CVXPY's compilation) now rather than in the first frame."""
        if self.solver_for(solver) == "cvxpy" and len(self.tasks):
            self._cvx_model().prepare()

    def solver_for(self, solver: str | None = None) -> str:
        """The concrete solver (``cvxpy``, ``mckp`` or ``pulp``) a call would use."""
        name = solver or self.config.solver
        if name not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {name!r}")
        if name == "auto":
            return "cvxpy" if 0 < len(self.tasks) <= self.config.cvxpy_max_tasks else "mckp"
        return name

    def allocate(
        self,
        bandwidth_bps: float | Sequence[float] | np.ndarray,
        rtt_ms: float,
        *,
        deadline_ms: float | None = None,
        utility: np.ndarray | None = None,
        previous: Mapping[str, str] | Allocation | None = None,
        solver: str | None = None,
        headroom: Headroom | None = None,
        switching_penalty: float | None = None,
    ) -> Allocation:
        """Choose one option per task for this frame.

        ``bandwidth_bps``: the estimate (bit/s), or samples of it (needed for a quantile
        headroom). ``deadline_ms`` overrides every task's deadline; ``utility`` (T x K, profile
        column order) replaces the profile's utilities; ``previous`` (an Allocation or task ->
        option id) is what the switching penalty compares with.
        """
        if not (isinstance(rtt_ms, (int, float)) and math.isfinite(rtt_ms) and rtt_ms >= 0):
            raise ValueError(f"rtt_ms must be a finite number >= 0, got {rtt_ms!r}")
        if deadline_ms is not None and not (math.isfinite(deadline_ms) and deadline_ms > 0):
            raise ValueError(f"deadline_ms must be a finite number > 0, got {deadline_ms!r}")
        planned, estimate = (headroom or self.config.headroom).plan(bandwidth_bps)
        penalty = self.config.switching_penalty if switching_penalty is None else switching_penalty
        if not (math.isfinite(penalty) and penalty >= 0):
            raise ValueError(f"switching_penalty must be a finite number >= 0, got {penalty!r}")
        prev = previous.as_mapping() if isinstance(previous, Allocation) else previous
        name = self.solver_for(solver)

        start = time.perf_counter()
        bc, value = self.table.frame(
            rtt_ms, deadline_ms=deadline_ms, utility=utility, stay_bonus=penalty, previous=prev
        )
        choice, label, gap = self._solve(name, bc, value, planned)
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        return self._result(choice, bc, planned, estimate, rtt_ms, label, elapsed_ms, gap, penalty, prev, utility)

    def _solve(self, name: str, bc: np.ndarray, value: np.ndarray, budget: float) -> tuple[np.ndarray, str, float | None]:
        if len(self.tasks) == 0 or name == "mckp":
            return mckp.solve(bc, value, budget).choice, "mckp", 0.0
        try:
            if name == "cvxpy":
                label = f"cvxpy/{self.config.mip_solver}"
                sol = self._cvx_model().solve(bc, value, budget)
                choice, gap = sol.choice, (0.0 if sol.status == "optimal" else None)
            else:
                from . import turbo_pulp  # the baseline's PuLP comes with carlink[baselines]

                label = "pulp/CBC"
                choice, gap = turbo_pulp.solve(bc, value, budget), 0.0
        except MissingExtraError:
            raise  # a missing package is a set-up error to fix, not a solver hiccup to hide
        except Exception as exc:  # a MIP solver failing must not cost the frame
            log.warning("%s failed (%s); using the exact fast path", name, exc)
            return mckp.solve(bc, value, budget).choice, f"{name}->mckp", 0.0
        _, used = mckp.objective(bc, value, choice)
        if not used <= budget:
            log.warning("%s exceeded the budget by %.3g bit/s (tolerance); using the fast path", label, used - budget)
            return mckp.solve(bc, value, budget).choice, f"{label}->mckp", 0.0
        return choice, label, gap

    def _cvx_model(self) -> Any:
        from .cvx import CvxSolver  # cvxpy is imported only when the CVXPY path is used

        key = (*self.table.shape, self.config.mip_solver)
        if key not in self._cvx_models:
            self._cvx_models[key] = CvxSolver(*self.table.shape, solver=self.config.mip_solver)
        return self._cvx_models[key]

    def _result(
        self,
        choice: np.ndarray,
        bc: np.ndarray,
        planned: float,
        estimate: float,
        rtt_ms: float,
        label: str,
        elapsed_ms: float,
        gap: float | None,
        penalty: float,
        prev: Mapping[str, str] | None,
        utility: np.ndarray | None,
    ) -> Allocation:
        util = self.table.utility if utility is None else np.asarray(utility, dtype=float)
        rows = []
        total = 0.0
        switches = 0
        for i, task in enumerate(self.tasks):
            j = int(choice[i])
            opt = task.options[j]
            u = float(util[i, j])
            total += task.weight * u
            if prev is not None and task.name in prev and prev[task.name] != opt.id:
                switches += 1
            rows.append(TaskAllocation(task.name, opt.id, opt.on_car, float(bc[i, j]), u, task.weight))
        return Allocation(
            tasks=tuple(rows),
            bandwidth_bps=planned,
            estimate_bps=estimate,
            rtt_ms=float(rtt_ms),
            expected_utility=total,
            solver=label,
            solve_time_ms=elapsed_ms,
            optimality_gap=gap,
            switching_penalty=penalty,
            switches=switches,
        )


def allocate(
    tasks: Sequence[Task],
    bandwidth_bps: float | Sequence[float] | np.ndarray,
    rtt_ms: float,
    config: AllocatorConfig | None = None,
    **kwargs: Any,
) -> Allocation:
    """One-off allocation (builds an :class:`Allocator`; keep one for per-frame use)."""
    return Allocator(tasks, config).allocate(bandwidth_bps, rtt_ms, **kwargs)


def with_solver(config: AllocatorConfig, solver: str) -> AllocatorConfig:
    return replace(config, solver=solver)
