"""carlink's per-frame decision: the one policy the car runs and the replay replays.

The daemon (onboard/pipeline.py) and ``carlink replay``'s ``carlink`` policy (replay/policies.py,
a thin adapter) both call :meth:`CarlinkPolicy.decide`, so what a replay reports is what the car
would have done. The policy is pure: it reads no clock and does no I/O; everything it knows about
the link comes in :class:`PlanInputs` (from onboard/estimator.py on the car, and from the same
estimator fed with emulated uploads in the replay).

Per frame, bandwidth and runtime are treated as uncertain:

* the bandwidth is the estimator's samples over its sliding window (an empirical distribution,
  not one number);
* a cloud run's time is log-normal, fitted to the profile's p50 and p99;
* the car's own backlog (bytes it handed to the uplink that have not yet left) is ahead of any
  new upload.

Candidates are the allocator's optimum (exact fast path) at several budgets, the ``quantiles``
of the bandwidth samples, planned once with p50 and once with p99 runtimes. Each candidate is
scored by its *expected* utility: over the bandwidth samples and the runtime distribution, an
upload sent earliest deadline first behind the backlog earns its option's utility with the
probability that it arrives in time, and the on-car utility otherwise. The best-scoring
candidate is the frame's allocation. The quantile budgets are carlink's headroom, chosen per
frame by expected utility rather than fixed.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
from scipy.special import ndtr

from carlink.allocation import Allocation
from carlink.tasks import RUNTIME_STATS, Task

if TYPE_CHECKING:
    from carlink.allocator.solve import Allocator, AllocatorConfig

_Z99 = 2.3263478740408408  # standard normal 99th percentile
_SOLVED_CAP = 4096  # allocations remembered across frames (see CarlinkPolicy._solve)


def runtime_sigma(p50: float, p99: float) -> float:
    """Log-normal spread that puts the 99th percentile at ``p99`` given the median ``p50`` (the
    runtime model of the policy, and of the replay's charging)."""
    return math.log(p99 / p50) / _Z99 if p50 > 0 and p99 > p50 else 0.0


def inverted_cdf_quantiles(samples: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """``np.quantile(samples, qs, method="inverted_cdf")`` (the smallest sample whose share of the
    samples at or below it reaches q) by one sort: numpy's general routine costs ~0.5 ms a call,
    the policy runs it every frame."""
    ordered = np.sort(np.asarray(samples, dtype=float).ravel())
    n = ordered.size
    return ordered[np.clip(np.ceil(n * np.asarray(qs, dtype=float)).astype(np.int64) - 1, 0, n - 1)]


@dataclass(frozen=True)
class PolicySettings:
    """Which candidates the policy scores each frame."""

    quantiles: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)  # candidate budgets
    runtimes: tuple[str, ...] = RUNTIME_STATS  # candidates are planned with each runtime statistic

    def __post_init__(self) -> None:
        if not self.quantiles or any(not 0.0 <= q <= 1.0 for q in self.quantiles):
            raise ValueError(f"policy quantiles must be a non-empty list in [0, 1], got {self.quantiles!r}")
        bad = [r for r in self.runtimes if r not in RUNTIME_STATS]
        if bad or not self.runtimes:
            raise ValueError(f"policy runtimes must be some of {RUNTIME_STATS}, got {self.runtimes!r}")


@dataclass(frozen=True)
class PlanInputs:
    """What the car knows when it plans a frame."""

    bandwidth_samples_bps: np.ndarray  # the estimator's window (see UplinkEstimator.bandwidth_samples)
    rtt_ms: float  # the estimator's conservative round trip
    backlog_bytes: float = 0.0  # own bytes handed to the uplink and not yet sent
    estimate_bps: float | None = None  # reported alongside (default: the samples' mean)
    present: tuple[int, ...] | None = None  # task indices with an image this frame; None: all
    # Per task (all tasks, in order) and option column (padded to the widest task): this frame's
    # utilities instead of the profile's expectation. Only a diagnostic that knows the truth
    # (replay's carlink-utility) sets it; the car never does.
    utility: np.ndarray | None = None


def backlog_bytes(in_flight: Iterable[tuple[float, float]], now: float, bandwidth_bps: float) -> float:
    """Bytes of the car's own uploads still ahead of a new one: each upload ``(sent_at, nbytes)``
    not yet answered, less what the link drained since it was sent at ``bandwidth_bps`` (the car
    sees its answers, not its packets leave)."""
    drained = max(bandwidth_bps, 0.0) / 8.0
    return float(sum(max(0.0, n - drained * max(now - t, 0.0)) for t, n in in_flight))


class CarlinkPolicy:
    """The per-frame decision under uncertainty (see the module doc)."""

    def __init__(self, tasks: Sequence[Task], config: "AllocatorConfig | None" = None,
                 settings: PolicySettings = PolicySettings()) -> None:
        from carlink.allocator.solve import AllocatorConfig

        self.tasks = tuple(tasks)
        if not self.tasks:
            raise ValueError("the policy needs at least one task")
        self.config = config or AllocatorConfig()
        self.settings = settings
        # Several solves per frame: the exact fast path unless a solver was asked for explicitly.
        self._solver = "mckp" if self.config.solver == "auto" else self.config.solver
        # The policy's own statistics, whatever the tasks were planned with: mean payloads and
        # expected per-frame utilities, once with p50 and once with p99 runtimes.
        self._variants = {rt: [t.planned(payload="mean", runtime=rt) for t in self.tasks] for rt in RUNTIME_STATS}
        self._allocators: dict[tuple[str, tuple[int, ...]], "Allocator"] = {}
        self._solved: dict[tuple, Allocation] = {}  # see _solve
        self._previous: Allocation | None = None
        n = max(len(t.options) for t in self.tasks)
        # Per task and option (padded): weight * utility, bits, p50 and sigma of the runtime.
        self._value = np.zeros((len(self.tasks), n))
        self._bits = np.zeros((len(self.tasks), n))
        self._p50 = np.zeros((len(self.tasks), n))
        self._sigma = np.zeros((len(self.tasks), n))
        for i, t in enumerate(self.tasks):
            for j, o in enumerate(t.options):
                self._value[i, j] = t.weight * o.frame_utility
                self._bits[i, j] = 8.0 * o.payload_bytes_mean
                self._p50[i, j] = o.runtime_ms_p50
                self._sigma[i, j] = runtime_sigma(o.runtime_ms_p50, o.runtime_ms_p99)
        self._on_car = [t.on_car_index for t in self.tasks]
        self._deadline = np.array([t.deadline_ms for t in self.tasks])
        self._index = {t.name: i for i, t in enumerate(self.tasks)}
        self._col = [{o.id: j for j, o in enumerate(t.options)} for t in self.tasks]

    def fresh(self) -> "CarlinkPolicy":
        """A policy with no history (no previous plan) that shares this one's immutable parts:
        tasks, allocators and remembered solves (exact for given inputs). For replays that run
        the same policy many times."""
        clone = copy.copy(self)
        clone._previous = None
        return clone

    def prepare(self) -> None:
        """Build the allocators for the full task set now, not in the first frame."""
        for rt in self.settings.runtimes:
            self._allocator(rt, tuple(range(len(self.tasks)))).prepare(self._solver)

    def _allocator(self, runtime: str, present: tuple[int, ...]) -> "Allocator":
        from carlink.allocator.solve import Allocator

        key = (runtime, present)
        a = self._allocators.get(key)
        if a is None:
            tasks = self._variants[runtime]
            a = self._allocators[key] = Allocator([tasks[i] for i in present], self.config)
        return a

    def budgets(self, samples: np.ndarray) -> list[float]:
        """Candidate budgets: the settings' quantiles of the samples, or the configured headroom's
        single quantile when one is set; scaled by the headroom fraction; then 0 (all on-car);
        equal ones once."""
        h = self.config.headroom
        qs = (h.quantile,) if h.quantile is not None else self.settings.quantiles
        values = inverted_cdf_quantiles(samples, qs) * h.fraction
        # Sending nothing is always a candidate: behind a long backlog it may be the best plan.
        return list(dict.fromkeys([*(float(v) for v in values), 0.0]))

    def decide(self, inputs: PlanInputs) -> Allocation:
        """The frame's allocation (over the tasks present): the candidate with the highest
        expected utility. ``expected_utility`` is that expectation; ``bandwidth_bps`` the budget
        the winning candidate was planned with."""
        start = time.perf_counter()
        samples = np.asarray(inputs.bandwidth_samples_bps, dtype=float).ravel()
        if samples.size == 0:
            raise ValueError("plan inputs: no bandwidth samples (the estimator always has one)")
        if not np.all(np.isfinite(samples) & (samples >= 0)):
            raise ValueError(f"plan inputs: bandwidth samples must be finite and >= 0, got {samples.tolist()}")
        present = tuple(range(len(self.tasks))) if inputs.present is None else tuple(inputs.present)
        rtt = float(inputs.rtt_ms)
        value, utility = self._frame_values(inputs.utility, present)
        best: tuple[float, Allocation, float] | None = None
        seen: set[tuple[str, ...]] = set()
        budgets = sorted(self.budgets(samples), reverse=True)
        for rt in self.settings.runtimes:
            allocator = self._allocator(rt, present)
            # Largest budget first: the optimum at B that uses U is also the optimum at every
            # budget in [U, B] (feasible there, and nothing better fits), so those need no solve;
            # each candidate keeps the smallest budget that gives it.
            cands: list[list] = []
            for budget in budgets:
                if cands and budget >= cands[-1][0].used_bps:
                    cands[-1][1] = budget
                    continue
                alloc = self._solve(allocator, rt, present, budget, rtt, utility)
                cands.append([alloc, budget])
            for alloc, budget in reversed(cands):
                key = tuple(a.option for a in alloc.tasks)
                if key in seen:
                    continue
                seen.add(key)
                cols = [(i, self._col[i][a.option]) for i, a in zip(present, alloc.tasks)]
                expected = self.expected_value(cols, samples, rtt, inputs.backlog_bytes, value)
                # Ties go to the plan that sends less: equal value for fewer bytes on the link.
                if (best is None or expected > best[0] + 1e-12
                        or (expected >= best[0] - 1e-12 and alloc.used_bps < best[1].used_bps)):
                    best = (expected, alloc, budget)
        assert best is not None
        value, alloc, budget = best
        elapsed = (time.perf_counter() - start) * 1000.0
        estimate = float(samples.mean()) if inputs.estimate_bps is None else float(inputs.estimate_bps)
        prev = self._previous.as_mapping() if self._previous is not None else {}
        switches = sum(1 for a in alloc.tasks if a.task in prev and prev[a.task] != a.option)
        out = dataclasses.replace(alloc, bandwidth_bps=budget, estimate_bps=estimate, expected_utility=value,
                                  solver=f"expected-utility/{alloc.solver}", solve_time_ms=elapsed, switches=switches)
        self._previous = out
        return out

    def _solve(self, allocator: "Allocator", runtime: str, present: tuple[int, ...], budget: float, rtt: float,
               utility: np.ndarray | None) -> Allocation:
        """The allocator's optimum at ``budget``, remembered: the estimator's samples (so the
        budgets) and the RTT often stay the same from one frame to the next. Not remembered with
        a per-frame utility override; keyed by the previous plan where a switching penalty makes
        it matter."""
        from carlink.allocator.solve import Headroom

        if utility is not None:
            return allocator.allocate(budget, rtt, solver=self._solver, headroom=Headroom(), previous=self._previous,
                                      utility=utility)
        prev = None
        if self.config.switching_penalty and self._previous is not None:
            prev = tuple(a.option for a in self._previous.tasks)
        key = (runtime, present, budget, rtt, prev)
        alloc = self._solved.get(key)
        if alloc is None:
            if len(self._solved) >= _SOLVED_CAP:
                self._solved.clear()
            alloc = self._solved[key] = allocator.allocate(budget, rtt, solver=self._solver, headroom=Headroom(),
                                                           previous=self._previous)
        return alloc

    def _frame_values(self, utility: np.ndarray | None,
                      present: tuple[int, ...]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(weight * utility for expected_value, the allocator's utility override for the tasks
        present) from a per-frame utility matrix; (None, None) without one."""
        if utility is None:
            return None, None
        u = np.asarray(utility, dtype=float)
        if u.shape != self._value.shape or not np.all(np.isfinite(u)):
            raise ValueError(f"plan inputs: utility must be a finite {self._value.shape} array, got shape {u.shape}")
        weights = np.array([t.weight for t in self.tasks])
        width = max(len(self.tasks[i].options) for i in present) if present else 0
        return weights[:, None] * u, u[list(present), :width]

    def expected_value(self, choices: Sequence[tuple[int, int]], samples: np.ndarray, rtt_ms: float,
                       backlog_bytes: float = 0.0, value: np.ndarray | None = None) -> float:
        """Expected weighted utility of sending ``choices`` ((task index, option column) pairs).

        Uploads leave earliest latest-start first behind ``backlog_bytes``; over each bandwidth
        sample, one succeeds with P(runtime <= deadline - RTT - its upload time) under the
        log-normal runtime, else the on-car utility counts. ``value`` (weight * utility per task
        and column) replaces the profile's expectation.
        """
        values = self._value if value is None else value
        base = 0.0
        sends = []
        for i, j in choices:
            oc = self._on_car[i]
            base += values[i, oc]
            if j == oc:
                continue
            budget_ms = self._deadline[i] - rtt_ms
            sends.append((budget_ms - self._p50[i, j], i, j, budget_ms))
        if not sends:
            return base
        sends.sort(key=lambda s: s[0])
        ii = np.array([s[1] for s in sends])
        jj = np.array([s[2] for s in sends])
        oc = np.array([self._on_car[i] for i in ii])
        gain = values[ii, jj] - values[ii, oc]
        cum_bits = 8.0 * backlog_bytes + np.cumsum(self._bits[ii, jj])
        budget = np.array([s[3] for s in sends])
        p50 = self._p50[ii, jj]
        sigma = self._sigma[ii, jj]
        with np.errstate(divide="ignore", invalid="ignore"):
            upload_ms = np.where(samples[:, None] > 0, 1000.0 * cum_bits[None, :] / samples[:, None], np.inf)
            room = budget[None, :] - upload_ms  # time left for the cloud run
            spread = np.where(sigma > 0, sigma, 1.0)[None, :]
            z = (np.log(np.maximum(room, 1e-9)) - np.log(np.maximum(p50, 1e-9))[None, :]) / spread
            prob = np.where(sigma[None, :] > 0, ndtr(z), (room >= p50[None, :]).astype(float))
        prob = np.where(room > 0, prob, 0.0)
        return base + float((prob * gain[None, :]).sum(axis=1).mean())

    def column(self, task_index: int, option_id: str) -> int:
        return self._col[task_index][option_id]
