"""The virtual-clock replay: every policy over the same frames and the same trace, deterministically.

Per policy and frame (capture time ``t``):

0. what the car knows of the link is brought up to ``t`` (``--estimates uploads``, the default:
   carlink and turbo each run the car's UplinkEstimator on the virtual clock, fed with the
   completions and timeouts of their own emulated uploads, the probes it asks for (sent through
   the same link) and a Ping every 0.5 s whose round trip is measured through the emulated link;
   ``--estimates trace``: the link's true capacity per past 100 ms bin instead);
1. the policy decides an option per task present (see replay/policies.py for what each knows);
2. uploads leave the car at ``t + encode_ms``, earliest latest-delivery-time first (or in the
   order the policy gives), through the policy's own emulated uplink (replay/link_events.py:
   mahimahi semantics, FIFO, one queue that carries over from frame to frame, the oracle's too);
3. a cloud answer arrives at delivery + the option's p50 runtime (charged from the profile) +
   the downlink delay; it is used if it arrives by ``t + deadline``, else the on-car result is
   (charged its p50 runtime, so on-car is late only when the profile says the car is slower than
   the deadline);
4. the utility of the result used comes from the utility source: the profile (fast) or the real
   models run on the real frames (replay/frame_utility.py).

Nothing here reads the wall clock, so the same inputs give the same results byte for byte.
"""

from __future__ import annotations

import heapq
import math
import zlib
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Callable, Sequence

import numpy as np

from carlink.clock import VirtualClock
from carlink.onboard.config import EstimatorConfig
from carlink.onboard.estimator import UplinkEstimator
from carlink.onboard.policy import backlog_bytes, runtime_sigma
from carlink.datasets.traces import Trace
from carlink.replay.checks import overlap_warnings, scene_warnings, trace_warnings
from carlink.replay.frame_utility import UtilitySource, has_camera
from carlink.network import MTU, PING_BYTES, PING_INTERVAL_S
from carlink.replay.link import DelaySeries, TraceLink, delay_at
from carlink.replay.link_events import EmulatedLink
from carlink.replay.player import PlayedFrame
from carlink.replay.policies import POLICY_NAMES, FrameFacts, FrameView, Policy, make_policy
from carlink.replay.profile_view import ON_CAR, ReplayProfile
from carlink.replay.results import FrameRecord, PolicyRun, ReplayResult, TaskRecord, summarize

DEFAULT_RTT_MS = 40.0
BIN_S = 0.1
ESTIMATES = ("uploads", "trace")
TRACE_WINDOW_S = 0.5  # --estimates trace: the capacity reports carlink plans over (turbo: their mean)
ESTIMATE_NOTES = {
    "uploads": "uploads: carlink and turbo each learn the link from their own uploads, probes and pings "
               "(the car's UplinkEstimator); carlink plans over its samples, turbo uses the latest one as is",
    "trace": "trace: carlink and turbo read the link's true capacity per past 100 ms bin (no car can); "
             "carlink plans over the last 0.5 s of it, turbo uses its mean",
}
PROBE_TIMEOUT_S = 1.0  # as onboard/uplink.py's probe()


def charged_runtime_ms(seed: int, frame: int, task: str, option: str, p50: float, p99: float) -> float:
    """The runtime the virtual clock charges one model run: a draw from a log-normal with the
    profile's median and 99th percentile, keyed by (seed, frame, task, option) so that it is
    the same for every policy and every run (CRC-32, not Python's salted hash)."""
    sigma = runtime_sigma(p50, p99)
    if sigma == 0.0:
        return p50
    u = (zlib.crc32(f"{seed}/{frame}/{task}/{option}".encode()) + 0.5) / 2.0**32
    return p50 * math.exp(sigma * NormalDist().inv_cdf(u))


@dataclass(frozen=True)
class ReplayConfig:
    policies: tuple[str, ...] = POLICY_NAMES
    rtt_ms: float | None = None  # None: half the trace's RTT series each way if it has one, else 40 ms
    scale: float = 1.0  # capacity multiplier applied to the trace
    queue_bytes: int | None = None  # drop-tail limit; None: unlimited (mahimahi's default)
    encode_ms: float = 0.0  # time from capture to the upload leaving the car
    trace_offset_s: float = 0.0  # where in the trace the replay starts
    seed: int = 0  # of the runtime draws (runtimes vary per frame around the profile's p50/p99)
    estimates: str = "uploads"  # what carlink and turbo know of the link: see the module doc

    def __post_init__(self) -> None:
        if self.estimates not in ESTIMATES:
            raise ValueError(f"estimates must be one of {', '.join(ESTIMATES)}, got {self.estimates!r}")
        bad = [p for p in self.policies if p not in POLICY_NAMES]
        if bad or not self.policies:
            raise ValueError(f"policies {bad or '(none)'}: expected some of {', '.join(POLICY_NAMES)}")
        if len(set(self.policies)) != len(self.policies):
            raise ValueError(f"policies listed twice: {list(self.policies)}")
        if self.rtt_ms is not None and not (math.isfinite(self.rtt_ms) and self.rtt_ms >= 0):
            raise ValueError(f"rtt_ms must be a finite number >= 0, got {self.rtt_ms}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be a positive number, got {self.scale}")
        if self.encode_ms < 0 or self.trace_offset_s < 0:
            raise ValueError("encode_ms and trace_offset_s must be >= 0")


def prepare_trace(trace: Trace, cfg: ReplayConfig, needed_s: float | None = None) -> Trace:
    """The trace as the replay sees it: from ``trace_offset_s`` on, scaled by ``scale``.

    Only the ``needed_s`` seconds the replay uses are kept (the trace loops only when it is
    shorter than that): the link core's cost per idle-link send grows with the trace's length.
    """
    t = trace
    if needed_s is not None and cfg.trace_offset_s + needed_s < t.duration_s:
        t = t.slice(cfg.trace_offset_s, cfg.trace_offset_s + needed_s)
    if len(t) == 0 or (t is trace and cfg.trace_offset_s > 0):
        # A stretch without any capacity (a long outage) cannot loop on its own: keep it all.
        t = trace.slice(cfg.trace_offset_s, cfg.trace_offset_s + trace.duration_s) if cfg.trace_offset_s > 0 else trace
    if cfg.scale != 1.0:
        t = t.scaled(cfg.scale)
    if len(t) == 0:
        raise ValueError(f"trace {trace.name!r} has no delivery opportunity (after scaling by {cfg.scale})")
    return t


def one_way_delay(trace: Trace, cfg: ReplayConfig) -> float | DelaySeries:
    """ms: the configured RTT halved, or half the trace's RTT series (looping with the trace)."""
    if cfg.rtt_ms is not None:
        return cfg.rtt_ms / 2.0
    if trace.rtt is not None and len(trace.rtt):
        return DelaySeries.half_rtt(trace.rtt.times_ms, trace.rtt.rtt_ms, trace.period_ms)
    return DEFAULT_RTT_MS / 2.0


def make_link(trace: Trace, delay: float | DelaySeries, cfg: ReplayConfig, clock: VirtualClock) -> EmulatedLink:
    return EmulatedLink(TraceLink(trace, delay=delay, queue_bytes=cfg.queue_bytes), clock, origin=0.0)


class _Timeline:
    """The facts shared by every policy's run: capacity per 100 ms bin, base RTT, opportunities."""

    def __init__(self, trace: Trace, delay: float | DelaySeries, cfg: ReplayConfig, end_s: float) -> None:
        self.trace, self.delay, self.cfg = trace, delay, cfg
        self.ref = make_link(trace, delay, cfg, VirtualClock())
        n = int(math.ceil(end_s / BIN_S)) + 1
        edges = np.arange(n + 1) * BIN_S
        # Capacity reports per bin, from the trace's integer-keyed counter (fast on long traces).
        counts = [trace.count_between(edges[k] * 1000.0, edges[k + 1] * 1000.0) for k in range(n)]
        self.capacity = np.array(counts, dtype=float) * MTU * 8.0 / BIN_S

    def history(self, t: float) -> np.ndarray:
        return self.capacity[: int(math.floor(t / BIN_S + 1e-9))]

    def runtime_ms(self, pf: PlayedFrame, task, option) -> float:
        return charged_runtime_ms(self.cfg.seed, pf.index, task.name, option.id, option.runtime_ms_p50, option.runtime_ms_p99)

    def rtt_ms(self, t: float) -> float:
        return 2000.0 * self.ref.one_way_delay(t)

    def down_arrival(self, t: float) -> float:
        """When a response the cloud sends at ``t`` reaches the car: answers are a few hundred
        bytes on their own HTTP/2 streams, so only the propagation delay is charged."""
        return t + delay_at(self.delay, t * 1000.0) / 1000.0

    def future_bps(self, t_send: float, horizon_s: float) -> float:
        """The link's true capacity over (t_send, t_send + horizon] (bit/s): what carlink-link knows."""
        t0 = t_send * 1000.0
        return self.trace.count_between(t0, t0 + horizon_s * 1000.0) * MTU * 8.0 / horizon_s

    def opportunities(self, t_send: float, horizon_s: float) -> np.ndarray:
        """Idle-link opportunities strictly after t_send (s)."""
        t0 = math.floor(t_send * 1000.0) + 1
        return self.trace.opportunities_between(t0, t_send * 1000.0 + horizon_s * 1000.0 + 1) / 1000.0


class _UploadFeed:
    """What the car knows of its link, as the daemon learns it: the car's UplinkEstimator on the
    virtual clock, fed with the completions and timeouts of the policy's own emulated uploads,
    the probes the estimator asks for, and Pings. Events are applied in time order up to each
    frame, so the run stays deterministic."""

    def __init__(self, clock: VirtualClock, link: EmulatedLink, tl: "_Timeline") -> None:
        self.clock, self.link, self.tl = clock, link, tl
        self.est = UplinkEstimator(EstimatorConfig(), clock)
        self._events: list[tuple[float, int, tuple]] = []
        self._seq = 0
        self._next_ping = 0.0
        self.in_flight: dict[tuple[int, int], tuple[float, int]] = {}  # (frame, task) -> (sent, bytes)
        self.probe_bytes = 0
        self.last_delivery = 0.0

    def _at(self, t: float, event: tuple) -> None:
        heapq.heappush(self._events, (t, self._seq, event))
        self._seq += 1

    def advance(self, t: float) -> None:
        """Apply every ping and upload outcome up to ``t``, each at its own time."""
        while True:
            t_event = self._events[0][0] if self._events else math.inf
            if min(t_event, self._next_ping) > t:
                break
            if self._next_ping <= t_event:
                self.clock.advance_to(self._next_ping)
                self._ping(self._next_ping)
                self._next_ping += PING_INTERVAL_S
                continue
            when, _, event = heapq.heappop(self._events)
            self.clock.advance_to(when)
            self._apply(event)
        self.clock.advance_to(t)

    def _ping(self, t: float) -> None:
        # A Ping waits behind the car's own queued bytes, as a real one would (not sent: a
        # hundred bytes do not change the queue).
        delivered = self.link.what_if_up(PING_BYTES, at=t)
        if delivered is not None:
            self.est.record_rtt(self.tl.down_arrival(delivered) - t)

    def _apply(self, event: tuple) -> None:
        kind, key, nbytes, sent_at, elapsed, server_s = event
        if key is not None:
            self.in_flight.pop(key, None)
        if kind == "ok":
            self.est.record_upload(nbytes, elapsed, server_s, sent_at=sent_at)
        else:
            self.est.record_timeout(nbytes, elapsed)
        if key is None:
            self.est.probe_done()

    def upload(self, key: tuple[int, int], sent_at: float, nbytes: int, answered_at: float | None,
               deadline: float, server_s: float) -> None:
        """An upload left at ``sent_at``; answered at ``answered_at`` (None: lost). An answer after
        the call's deadline is a timeout there, as gRPC reports it."""
        self.in_flight[key] = (sent_at, nbytes)
        if answered_at is not None and answered_at <= deadline + 1e-9:
            self._at(answered_at, ("ok", key, nbytes, sent_at, answered_at - sent_at, server_s))
        else:
            self._at(deadline, ("timeout", key, nbytes, sent_at, deadline - sent_at, 0.0))

    def probe(self, allocated_bps: float, t_send: float) -> None:
        """Padding when the estimator asks for it, through the same link (the noop model: no run)."""
        nbytes = self.est.probe_bytes(allocated_bps)
        if not nbytes:
            return
        tr = self.link.send_up(nbytes, at=t_send)
        self.probe_bytes += nbytes
        answered = None if tr.delivered_at is None else self.tl.down_arrival(tr.delivered_at)
        if tr.delivered_at is not None:
            self.last_delivery = max(self.last_delivery, tr.delivered_at)
        deadline = t_send + PROBE_TIMEOUT_S
        if answered is not None and answered <= deadline:
            self._at(answered, ("ok", None, nbytes, t_send, answered - t_send, 0.0))
        else:
            self._at(deadline, ("timeout", None, nbytes, t_send, PROBE_TIMEOUT_S, 0.0))

    def view_inputs(self, t_send: float) -> tuple[np.ndarray, float, float, float, float]:
        """(samples, latest, conservative estimate, RTT ms, backlog bytes) as the car sees them."""
        est = self.est.estimate()
        backlog = backlog_bytes(self.in_flight.values(), t_send, est.bandwidth_bps)
        return self.est.bandwidth_samples(), self.est.latest_bps(), est.bandwidth_bps, est.rtt_s * 1000.0, backlog


def run_virtual(
    frames: Sequence[PlayedFrame],
    profile: ReplayProfile,
    trace: Trace,
    utilities: UtilitySource,
    cfg: ReplayConfig = ReplayConfig(),
    inputs: dict | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Replay ``frames`` under every policy of ``cfg``; see the module doc."""
    if not frames:
        raise ValueError("no frames to replay")
    check = getattr(utilities, "check", None)
    if check is not None:  # a truth source refuses frames it has not measured, before anything runs
        check(frames, profile.tasks)
    max_deadline = max(t.deadline_ms for t in profile.tasks) / 1000.0
    end_s = frames[-1].t + max_deadline + 1.0
    warnings = [*(inputs or {}).get("warnings", ()), *scene_warnings(frames, profile),
                *trace_warnings(trace, cfg.trace_offset_s, frames[-1].t + max_deadline),
                *overlap_warnings(profile, frames)]
    trace = prepare_trace(trace, cfg, end_s + 30.0)  # margin: a backlog may drain after the end
    delay = one_way_delay(trace, cfg)
    timeline = _Timeline(trace, delay, cfg, end_s)
    runs = {}
    for name in cfg.policies:
        runs[name] = _run_policy(make_policy(name, profile), frames, profile, timeline, utilities, progress)
    weights = {t.name: t.weight for t in profile.tasks}
    info = dict(inputs or {})
    info.update({
        "clock": "virtual", "utilities": utilities.mode, "profile": profile.path,
        "profile_description": profile.description, "trace": trace.name,
        "trace_mean_bps": trace.mean_bps, "frames": len(frames), "duration_s": frames[-1].t,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "delay": "fixed" if isinstance(delay, float) else "trace RTT series",
        "estimates": ESTIMATE_NOTES[cfg.estimates],
        "warnings": list(dict.fromkeys(warnings)),
    })
    return ReplayResult(info, runs, summarize(runs, weights))


def _run_policy(policy: Policy, frames: Sequence[PlayedFrame], profile: ReplayProfile, tl: _Timeline,
                utilities: UtilitySource, progress: Callable[[int], None] | None) -> PolicyRun:
    clock = VirtualClock()
    link = make_link(tl.trace, tl.delay, tl.cfg, clock)
    run = PolicyRun(policy.name)
    tasks = profile.tasks
    encode_s = tl.cfg.encode_ms / 1000.0
    max_deadline = max(t.deadline_ms for t in tasks) / 1000.0
    run_end = [0.0]  # the last delivery: link utilisation counts capacity up to it
    busy_until: dict[int, float] = {}  # task -> when its last upload left the bottleneck
    feed = _UploadFeed(clock, link, tl) if tl.cfg.estimates == "uploads" and policy.learns_link else None
    empty = np.zeros(0)
    for pf in frames:
        if feed is not None:
            feed.advance(pf.t)
        else:
            clock.advance_to(pf.t)
        present = tuple(i for i, t in enumerate(tasks) if has_camera(pf, t))
        t_send = pf.t + encode_s
        facts = None
        if policy.omniscient:
            facts = FrameFacts(
                utility=lambda i, j, pf=pf: utilities.utility(pf, tasks[i], tasks[i].options[j]),
                payload=lambda i, j, pf=pf: utilities.payload(pf, tasks[i], tasks[i].options[j]),
                runtime_s=lambda i, j, pf=pf: tl.runtime_ms(pf, tasks[i], tasks[i].options[j]) / 1000.0,
                opportunities_s=tl.opportunities(t_send, max_deadline),
                up_delay_s=tl.ref.one_way_delay,
                down_arrival_s=tl.down_arrival,
                committed_bytes=link.uplink.committed_bytes(t_send * 1000.0),
            )
        if feed is not None:
            samples, latest, estimate, rtt_ms, backlog = feed.view_inputs(t_send)
        elif policy.knows_link:
            rtt_ms = tl.rtt_ms(pf.t)
            horizon = max(max_deadline - rtt_ms / 1000.0, BIN_S)
            latest = estimate = tl.future_bps(t_send, horizon)
            samples = np.array([estimate])
            backlog = link.uplink.committed_bytes(t_send * 1000.0)
        elif policy.learns_link:
            reports = tl.history(pf.t)[-max(1, round(TRACE_WINDOW_S / BIN_S)):]
            samples, rtt_ms = reports, tl.rtt_ms(pf.t)
            latest = estimate = float(reports.mean()) if reports.size else 0.0
            backlog = link.uplink.queued_bytes(t_send * 1000.0)
        else:
            samples, latest, estimate, rtt_ms, backlog = empty, 0.0, 0.0, tl.rtt_ms(pf.t), 0
        truth = true_utilities(pf, tasks, present, utilities) if policy.knows_utilities else None
        view = FrameView(pf.index, pf.t, t_send, present, rtt_ms, samples, latest, facts, backlog, estimate, truth)
        decision = policy.decide(view)
        records = _send_and_fuse(pf, decision, tasks, link, tl, utilities, t_send, run_end,
                                 None if policy.omniscient else busy_until, feed)
        if feed is not None:
            feed.probe(decision.allocated_bps, t_send)
        frame_bytes = sum(r.bytes_sent for r in records)
        value = sum(tasks[i].weight * r.utility for i, r in records_by_task(records, tasks) if r.utility is not None)
        run.tasks.extend(records)
        run.frames.append(FrameRecord(
            pf.index, pf.t, decision.estimate_bps, decision.planned_bps, decision.allocated_bps,
            float(tl.capacity[min(int(pf.t / BIN_S + 1e-9), tl.capacity.size - 1)]),
            decision.expected_utility, value, frame_bytes,
        ))
        if progress is not None:
            progress(1)
    if feed is not None:
        run_end[0] = max(run_end[0], feed.last_delivery)
        run.probe_bytes = feed.probe_bytes
    end = max(frames[-1].t + max_deadline, run_end[0])
    run.capacity_bytes = tl.trace.count_between(0.0, end * 1000.0) * MTU
    run.delivered_bytes = run.probe_bytes + sum(r.bytes_sent for r in run.tasks if r.cloud_status in ("ok", "late"))
    return run


def true_utilities(pf: PlayedFrame, tasks, present: tuple[int, ...], utilities: UtilitySource) -> np.ndarray:
    """The frame's true utility per task and option column (padded with 0) for carlink-utility:
    where the frame's utility is undefined every option gets the on-car value (nothing to gain)."""
    width = max(len(t.options) for t in tasks)
    out = np.zeros((len(tasks), width))
    for i in present:
        t = tasks[i]
        row = [utilities.utility(pf, t, o) for o in t.options]
        floor = row[ON_CAR] if row[ON_CAR] is not None else 0.0
        out[i, :len(row)] = [floor if u is None else u for u in row]
    return out


def records_by_task(records: list[TaskRecord], tasks) -> list[tuple[int, TaskRecord]]:
    index = {t.name: i for i, t in enumerate(tasks)}
    return [(index[r.task], r) for r in records]


def _send_and_fuse(pf: PlayedFrame, decision, tasks, link: EmulatedLink, tl: _Timeline,
                   utilities: UtilitySource, t_send: float, run_end: list[float],
                   busy_until: dict[int, float] | None, feed: "_UploadFeed | None" = None) -> list[TaskRecord]:
    """Send the frame's uploads and fuse: per task the cloud answer if in time, else on-car.

    Uploads leave earliest latest-start first (deadline less p50 runtime), or in the decision's
    ``send_order``. As the car's uplink does (onboard/uplink.py: one upload in flight per task), a
    task whose previous upload has not yet left the bottleneck sends nothing this frame (status
    ``busy``); this keeps a policy that over-sends from queueing without bound.
    """
    choices = decision.choices
    out: dict[int, TaskRecord] = {}
    sends = []
    rank = {i: k for k, i in enumerate(decision.send_order or ())}
    for i, j in choices.items():
        t = tasks[i]
        if j != ON_CAR:
            o = t.options[j]
            latest = pf.t + (t.deadline_ms - o.runtime_ms_p50) / 1000.0
            sends.append((rank.get(i, len(rank)), latest, i, j))
    sends.sort()
    for _, _, i, j in sends:
        t, o = tasks[i], tasks[i].options[j]
        if busy_until is not None and busy_until.get(i, -math.inf) > t_send:
            out[i] = _on_car(pf, t, o.id, "busy", utilities, 0, tl)
            continue
        nbytes = utilities.payload(pf, t, o)
        tr = link.send_up(nbytes, at=t_send)
        deadline = pf.t + t.deadline_ms / 1000.0
        if tr.delivered_at is None:
            if feed is not None:
                feed.upload((pf.index, i), t_send, nbytes, None, deadline, 0.0)
            out[i] = _on_car(pf, t, o.id, "lost", utilities, nbytes, tl)
            continue
        run_end[0] = max(run_end[0], tr.delivered_at)
        if busy_until is not None:
            busy_until[i] = tr.delivered_at - link.one_way_delay(tr.delivered_at)
        run_s = tl.runtime_ms(pf, t, o) / 1000.0
        arrival = tl.down_arrival(tr.delivered_at + run_s)
        if feed is not None:
            feed.upload((pf.index, i), t_send, nbytes, arrival, deadline, run_s)
        if arrival <= deadline + 1e-9:
            out[i] = TaskRecord(pf.index, t.name, o.id, "cloud", o.id, round((arrival - pf.t) * 1000.0, 6), True,
                                "ok", utilities.utility(pf, t, o), nbytes)
        else:
            out[i] = _on_car(pf, t, o.id, "late", utilities, nbytes, tl)
    for i, j in choices.items():
        if i not in out:
            out[i] = _on_car(pf, tasks[i], tasks[i].options[j].id, "not-sent", utilities, 0, tl)
    return [out[i] for i in sorted(out)]


def _on_car(pf: PlayedFrame, t, planned: str, status: str, utilities: UtilitySource, nbytes: int,
            tl: _Timeline) -> TaskRecord:
    oc = t.on_car
    ms = tl.runtime_ms(pf, t, oc)
    return TaskRecord(pf.index, t.name, planned, "on-car", oc.id, round(ms, 6), ms <= t.deadline_ms,
                      status, utilities.utility(pf, t, oc), nbytes)
