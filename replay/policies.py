"""The policies replay compares, on the same frames and the same trace.

Every policy answers one question per frame: which option (column; 0 is on-car) for each task
whose camera has an image. What each may know about the link depends on ``--estimates``:

* ``uploads`` (default, what a car can know): each of carlink and turbo runs the car's own
  estimator (onboard/estimator.py) fed with its own emulated uploads, timeouts, probes and pings
  (replay/runner.py); carlink plans over that estimator's window of samples (its conservative
  view), turbo takes the latest sample as is.
* ``trace``: both get the link's true capacity per completed 100 ms bin (a link-layer report no
  car has): carlink plans over the last 0.5 s of reports, turbo takes their mean. This is the
  generous setting in which a simulator can hand TURBO its "latest bandwidth estimate".

Both also know the profile's static statistics and the car's own uplink backlog. The oracle also
sees the future: this frame's true per-option utilities, payloads and runtimes, and the link's
delivery opportunities from now on, behind the queue its own earlier uploads built.

``carlink`` (default): the car's own decision code, :class:`carlink.onboard.policy.CarlinkPolicy`
(per-frame solve at several candidate budgets, log-normal runtimes, own backlog, highest expected
utility); this module only adapts its inputs and outputs, so the replay runs what the car runs.

``turbo`` (the reference system, TURBO): re-solved every 500 ms with the latest bandwidth
estimate as is (no headroom) and static curves averaged over the data set (aggregate utility,
mean payload, p50 runtime); between solves the allocation stands.

``on-car``: never uses the cloud. ``single-cloud``: every frame, every task sends the full frame at
one fixed quality to the largest model and uses the answer when it is in time (the earlier
"speculative cloud execution" idea). ``oracle``: the best choice per frame given the true
per-frame utilities and the true capacity (exhaustive search with pruning), on its own link: it
sends only what arrives in time behind its own queue, so it never uses more than the link carries.
It is greedy frame by frame (what it sends now may delay a later frame), so it bounds every
policy's result on each frame as it finds the link, not the whole replay strictly.

Two diagnostics run carlink's own decision code with one thing known perfectly; their gaps to
``carlink`` say whether better link estimation or better utility prediction would pay:

* ``carlink-link``: the link's true future instead of the estimate (one bandwidth sample: the
  capacity over the next deadline minus the round trip; the true round trip; the true queue);
* ``carlink-utility``: each frame's true utilities (those the oracle sees) instead of the
  profile's expectation; the link it learns from its own uploads, as ``carlink`` does.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from carlink.allocator.solve import Allocator, AllocatorConfig
from carlink.network import MTU
from carlink.onboard.policy import PlanInputs
from carlink.replay.profile_view import ON_CAR, ReplayProfile, ReplayTask
from carlink.tasks import Task

POLICY_NAMES = ("carlink", "turbo", "on-car", "single-cloud", "oracle", "carlink-link", "carlink-utility")
DIAGNOSTICS = ("carlink-link", "carlink-utility")


@dataclass(frozen=True)
class Decision:
    choices: dict[int, int]  # task index -> option column (0: on-car), for the tasks present
    estimate_bps: float = 0.0  # the bandwidth the policy believed in
    planned_bps: float = 0.0  # the budget it planned with
    allocated_bps: float = 0.0  # sum of the chosen options' critical bandwidths
    expected_utility: float = 0.0  # what it expected (weighted sum, its own model)
    send_order: tuple[int, ...] | None = None  # task indices in the order to send; None: the runner's EDF


@dataclass(frozen=True)
class FrameFacts:
    """What only the oracle may know about this frame (computed by the runner)."""

    utility: Callable[[int, int], float | None]  # (task index, column) -> true utility
    payload: Callable[[int, int], int]  # (task index, column) -> true bytes
    runtime_s: Callable[[int, int], float]  # (task index, column) -> the run's true runtime
    opportunities_s: np.ndarray  # idle-link delivery opportunities after the send time (s)
    up_delay_s: Callable[[float], float]  # one-way delay of a packet leaving at t
    down_arrival_s: Callable[[float], float]  # when a response sent at t reaches the car
    committed_bytes: int = 0  # of those opportunities, bytes already promised to its own queue


@dataclass(frozen=True)
class FrameView:
    index: int
    t: float  # capture time (s)
    t_send: float  # when uploads leave the car
    present: tuple[int, ...]  # tasks whose camera has an image in this frame
    rtt_ms: float  # round trip the car believes (estimator's pings, or the trace's base RTT)
    bandwidth_samples_bps: np.ndarray  # what carlink plans over (see the module doc)
    latest_bps: float  # turbo's "latest bandwidth estimate"
    facts: FrameFacts | None = None
    # The car's own uplink state (it knows what it sent): bytes still queued ahead of a new upload.
    backlog_bytes: float = 0.0
    estimate_bps: float | None = None  # the conservative estimate reported for carlink
    # carlink-utility only: this frame's true utility per task and option column (padded; on-car's
    # where undefined); None for every other policy.
    true_utility: np.ndarray | None = None


class Policy(abc.ABC):
    name: str
    omniscient = False  # True: the runner passes FrameFacts
    learns_link = False  # True: the runner gives it the car's bandwidth knowledge (estimator or reports)
    knows_link = False  # True: the runner gives it the link's true future capacity, RTT and queue
    knows_utilities = False  # True: the runner passes the frame's true utilities (FrameView.true_utility)

    def __init__(self, profile: ReplayProfile) -> None:
        self.profile = profile
        self.tasks = profile.tasks

    @abc.abstractmethod
    def decide(self, view: FrameView) -> Decision: ...


class OnCarPolicy(Policy):
    name = "on-car"

    def decide(self, view: FrameView) -> Decision:
        return Decision({i: ON_CAR for i in view.present})


def single_cloud_column(task: ReplayTask) -> int:
    """The full frame, largest model, one fixed quality: native size (or the largest resize),
    then the model with the longest runtime, then the JPEG quality nearest 90."""
    if len(task.options) < 2:
        return ON_CAR

    def key(j: int) -> tuple:
        o = task.options[j]
        area = math.inf if o.resize is None else o.resize[0] * o.resize[1]
        quality = -abs((o.jpeg_quality or 90) - 90) if o.codec == "jpeg" else -100
        return (area, o.runtime_ms_p50, quality, o.payload_bytes_mean, -j)

    return max(range(1, len(task.options)), key=key)


class SingleCloudPolicy(Policy):
    name = "single-cloud"

    def __init__(self, profile: ReplayProfile) -> None:
        super().__init__(profile)
        self.columns = [single_cloud_column(t) for t in self.tasks]

    def decide(self, view: FrameView) -> Decision:
        return Decision({i: self.columns[i] for i in view.present})


class TurboPolicy(Policy):
    name = "turbo"
    learns_link = True

    def __init__(self, profile: ReplayProfile, period_s: float = 0.5) -> None:
        super().__init__(profile)
        self._solver = _AllocatorCache(profile.aggregate_tasks())
        self.period_s = period_s
        self._last_solve: float | None = None
        self._current: Decision | None = None

    def decide(self, view: FrameView) -> Decision:
        if self._last_solve is None or view.t - self._last_solve >= self.period_s - 1e-9 or self._current is None:
            estimate = max(0.0, float(view.latest_bps))
            choices, used, expected = self._solver.solve(view.present, estimate, view.rtt_ms)
            self._current = Decision(choices, estimate, estimate, used, expected)
            self._last_solve = view.t
        cur = self._current
        # Tasks that were not present at the solve run on-car until the next one.
        return Decision({i: cur.choices.get(i, ON_CAR) for i in view.present},
                        cur.estimate_bps, cur.planned_bps, cur.allocated_bps, cur.expected_utility)


def policy_tasks(profile: ReplayProfile) -> list[Task]:
    """The car's policy tasks, read from the typed profile as the daemon reads them."""
    return profile.profile.tasks_for_planning()


class CarlinkPolicy(Policy):
    """carlink: the onboard daemon's own policy (carlink.onboard.policy), fed what the replay's
    car knows. Only the translation between task indices/columns and names/ids lives here."""

    name = "carlink"
    learns_link = True

    def __init__(self, profile: ReplayProfile) -> None:
        super().__init__(profile)
        self.policy = profile.carlink_policy.fresh()  # built once per profile, no history

    def decide(self, view: FrameView) -> Decision:
        samples = view.bandwidth_samples_bps
        if samples.size == 0:  # no report yet (trace estimates, first bin): nothing to plan with
            samples = np.zeros(1)
        alloc = self.policy.decide(PlanInputs(samples, view.rtt_ms, view.backlog_bytes,
                                              estimate_bps=view.estimate_bps, present=view.present,
                                              utility=view.true_utility if self.knows_utilities else None))
        choices = {i: self.policy.column(i, a.option) for i, a in zip(view.present, alloc.tasks)}
        return Decision(choices, alloc.estimate_bps, alloc.bandwidth_bps, alloc.used_bps, alloc.expected_utility)


class CarlinkLinkPolicy(CarlinkPolicy):
    """carlink's decision code with the link's true future (capacity, RTT, queue) as its input."""

    name = "carlink-link"
    learns_link = False
    knows_link = True


class CarlinkUtilityPolicy(CarlinkPolicy):
    """carlink's decision code with the frame's true utilities instead of the profile's expectation."""

    name = "carlink-utility"
    knows_utilities = True


class _AllocatorCache:
    """One allocator per set of tasks present (frames may lack a camera); the exact fast path
    (same optimum as the CVXPY model, far faster: replay solves thousands of frames)."""

    def __init__(self, tasks: list[Task]) -> None:
        self.tasks = tasks
        self._allocators: dict[tuple[int, ...], Allocator] = {}

    def solve(self, present: tuple[int, ...], budget_bps: float, rtt_ms: float) -> tuple[dict[int, int], float, float]:
        if present not in self._allocators:
            self._allocators[present] = Allocator([self.tasks[i] for i in present], AllocatorConfig(solver="mckp"))
        alloc = self._allocators[present].allocate(max(0.0, budget_bps), rtt_ms)
        choices = {i: self.tasks[i].index_of(ta.option) for i, ta in zip(present, alloc.tasks)}
        return choices, alloc.used_bps, alloc.expected_utility


class OraclePolicy(Policy):
    """Exhaustive search over the options of the tasks present (dominated options pruned), with
    the true per-frame utilities, payloads and runtimes and the true delivery times behind its own
    queue; its uploads go out in the order it checked them in."""

    name = "oracle"
    omniscient = True

    def decide(self, view: FrameView) -> Decision:
        f = view.facts
        assert f is not None, "the oracle needs the frame's facts"
        items = []  # per task: list of (value, bytes, latest delivery time, column)
        base = 0.0
        for i in view.present:
            t = self.tasks[i]
            u0 = f.utility(i, ON_CAR)
            u0 = 0.0 if u0 is None else u0
            base += t.weight * u0
            deadline = view.t + t.deadline_ms / 1000.0
            cands = []
            for j in range(1, len(t.options)):
                u = f.utility(i, j)
                gain = t.weight * ((0.0 if u is None else u) - u0)
                if gain <= 0:
                    continue
                cands.append((gain, f.payload(i, j), deadline, f.runtime_s(i, j), j))
            items.append((i, _pareto(cands)))
        best_gain, best_set = _search(items, f)
        choices = {i: ON_CAR for i in view.present}
        for i, c in best_set:
            choices[i] = c[4]
        order = tuple(i for i, _ in sorted(best_set, key=lambda p: _latest_start(p[1])))
        return Decision(choices, 0.0, 0.0, 0.0, base + best_gain, send_order=order)


def _latest_start(c: tuple) -> float:
    """EDF key of a candidate (gain, bytes, deadline, runtime, column): its latest delivery time."""
    return c[2] - c[3]


def _pareto(cands: list[tuple]) -> list[tuple]:
    """Drop an option when another is at least as good on gain, bytes and runtime (ties: the
    lower column stays); most valuable first."""

    def beats(d: tuple, c: tuple) -> bool:
        if not (d[0] >= c[0] and d[1] <= c[1] and d[3] <= c[3]):
            return False
        return (d[0], d[1], d[3]) != (c[0], c[1], c[3]) or d[4] < c[4]

    keep = [c for c in cands if not any(d is not c and beats(d, c) for d in cands)]
    keep.sort(key=lambda c: (-c[0], c[1], c[4]))
    return keep


def feasible(sends: Sequence[tuple], f: FrameFacts) -> bool:
    """Do all these uploads (gain, bytes, deadline, runtime, column) arrive in time when sent in
    order of their latest delivery time behind the queue? (EDF: optimal for one common start.)"""
    order = sorted(sends, key=_latest_start)
    cum = f.committed_bytes
    opps = f.opportunities_s
    for s in order:
        cum += s[1]
        k = -(-cum // MTU) - 1
        if k >= opps.size:
            return False
        departed = float(opps[k])
        arrival = f.down_arrival_s(departed + f.up_delay_s(departed) + s[3])
        if arrival > s[2] + 1e-9:
            return False
    return True


def _search(items: list[tuple[int, list[tuple]]], f: FrameFacts) -> tuple[float, list[tuple[int, tuple]]]:
    """Branch and bound over the tasks' candidate lists (each may also stay on-car)."""
    best = [0.0, []]
    upper = [max((c[0] for c in cands), default=0.0) for _, cands in items]
    suffix = np.concatenate([np.cumsum(upper[::-1])[::-1], [0.0]]) if upper else np.zeros(1)
    chosen: list[tuple] = []
    picked: list[tuple[int, tuple]] = []

    def rec(k: int, gain: float) -> None:
        if gain > best[0] + 1e-12:
            best[0], best[1] = gain, list(picked)
        if k == len(items) or gain + suffix[k] <= best[0] + 1e-12:
            return
        i, cands = items[k]
        for c in cands:
            chosen.append(c)
            if feasible(chosen, f):
                picked.append((i, c))
                rec(k + 1, gain + c[0])
                picked.pop()
            chosen.pop()
        rec(k + 1, gain)

    rec(0, 0.0)
    return best[0], best[1]


def make_policy(name: str, profile: ReplayProfile) -> Policy:
    factories = {
        "carlink": CarlinkPolicy, "turbo": TurboPolicy, "on-car": OnCarPolicy,
        "single-cloud": SingleCloudPolicy, "oracle": OraclePolicy,
        "carlink-link": CarlinkLinkPolicy, "carlink-utility": CarlinkUtilityPolicy,
    }
    if name not in factories:
        raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(POLICY_NAMES)}")
    return factories[name](profile)
