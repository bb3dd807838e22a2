"""Per frame and task, pick the result to use: the cloud's if it came in time, else the car's.

Rules, per task of a frame:
  * a cloud answer is used only when it succeeded and arrived no later than the task's deadline
    (capture time + deadline); an answer arriving later is counted and thrown away, never used;
  * when the cloud path has failed (error, dropped as stale, superseded, or not chosen), the
    on-car result is used as soon as it exists, with no waiting;
  * otherwise the fuser waits for the cloud until the deadline and not a moment longer, then takes
    the on-car result. Only if the on-car model itself is late is the deadline missed.
Frames are emitted in capture order, once every task of the frame is resolved.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from carlink.detection import Detection
from carlink.onboard.uplink import UploadOutcome


@dataclass(frozen=True, slots=True)
class TaskPlan:
    """What the pipeline decided for one task of one frame."""

    deadline: float  # give up on the cloud at this time (pipeline clock): task deadline - margin
    hard_deadline: float  # capture time + the task's deadline
    option: str  # chosen option id (the on-car option's id when on-car)
    on_car_option: str
    cloud: bool  # an upload was handed to the uplink


@dataclass(frozen=True, slots=True)
class TaskResult:
    task: str
    source: str  # "cloud" or "on-car"
    option: str  # option whose result this is
    planned_option: str  # what the allocator chose
    latency_s: float  # capture to the moment the fused result was ready
    deadline_met: bool
    cloud_status: str  # "ok", "late", "not-sent", "pending" (gave up at deadline), or a failure
    detections: list[Detection]


@dataclass
class FrameResult:
    frame_id: int
    capture_time: float
    tasks: dict[str, TaskResult]
    info: dict[str, Any] = field(default_factory=dict)  # estimate, allocation, encode times...


@dataclass
class _TaskState:
    plan: TaskPlan
    onboard: list[Detection] | None = None
    onboard_at: float | None = None
    cloud: UploadOutcome | None = None
    result: TaskResult | None = None


@dataclass
class _FrameState:
    frame_id: int
    capture_time: float
    tasks: dict[str, _TaskState]
    info: dict[str, Any]


@dataclass
class FuserCounters:
    cloud_used: int = 0
    onboard_used: int = 0
    cloud_late: int = 0  # cloud answers that came after the deadline (discarded)
    deadline_misses: int = 0  # results (always on-car) that came after the deadline


class Fuser:
    """Thread-safe: on-car results, cloud outcomes and polls come from different threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.changed = threading.Condition(self._lock)  # notified when something arrives
        self._frames: OrderedDict[int, _FrameState] = OrderedDict()
        self.counters = FuserCounters()

    def open_frame(self, frame_id: int, capture_time: float, plans: dict[str, TaskPlan], info: dict[str, Any]) -> None:
        with self._lock:
            if frame_id in self._frames:
                raise ValueError(f"frame {frame_id} is already open in the fuser")
            tasks = {name: _TaskState(plan) for name, plan in plans.items()}
            self._frames[frame_id] = _FrameState(frame_id, capture_time, tasks, info)
            self.changed.notify_all()

    def onboard_result(self, frame_id: int, task: str, detections: list[Detection], at: float) -> None:
        with self._lock:
            st = self._task(frame_id, task)
            if st is not None:
                st.onboard, st.onboard_at = detections, at
                self.changed.notify_all()

    def cloud_outcome(self, outcome: UploadOutcome) -> None:
        with self._lock:
            st = self._task(outcome.frame_id, outcome.task)
            if st is None or st.result is not None:
                if outcome.status == "ok":
                    self.counters.cloud_late += 1  # frame already resolved: this answer is stale
                return
            st.cloud = outcome
            self.changed.notify_all()

    def _task(self, frame_id: int, task: str) -> _TaskState | None:
        fr = self._frames.get(frame_id)
        return None if fr is None else fr.tasks.get(task)

    def open_frames(self) -> int:
        with self._lock:
            return len(self._frames)

    def next_wakeup(self) -> float | None:
        """The earliest unresolved deadline (when a poll may resolve something by time alone)."""
        with self._lock:
            times = [
                t.plan.deadline for f in self._frames.values() for t in f.tasks.values() if t.result is None
            ]
            return min(times) if times else None

    def poll(self, now: float, flush: bool = False) -> list[FrameResult]:
        """Resolve what can be resolved at ``now``; return finished frames in capture order.

        ``flush`` (shutdown) gives up on pending cloud answers at once; on-car results that do not
        exist yet are still waited for, by the caller polling again.
        """
        with self._lock:
            for fr in self._frames.values():
                for name, st in fr.tasks.items():
                    if st.result is None:
                        st.result = self._resolve(name, st, fr.capture_time, now, flush)
            out: list[FrameResult] = []
            while self._frames:
                fr = next(iter(self._frames.values()))
                if any(st.result is None for st in fr.tasks.values()):
                    break
                self._frames.popitem(last=False)
                out.append(FrameResult(fr.frame_id, fr.capture_time, {n: s.result for n, s in fr.tasks.items()}, fr.info))
            return out

    def _resolve(self, name: str, st: _TaskState, capture: float, now: float, flush: bool) -> TaskResult | None:
        plan, c = st.plan, st.cloud
        if c is not None and c.status == "ok" and c.done_at is not None and c.done_at <= plan.deadline:
            self.counters.cloud_used += 1
            met = now <= plan.hard_deadline
            if not met:
                self.counters.deadline_misses += 1
            return TaskResult(name, "cloud", plan.option, plan.option, now - capture, met, "ok", c.detections or [])
        if c is not None and c.status == "ok":
            status = "late"
            self.counters.cloud_late += 1
        elif c is not None:
            status = c.status
        elif not plan.cloud:
            status = "not-sent"
        elif now >= plan.deadline or flush:
            status = "pending"  # gave up waiting: the answer, if it comes, will be discarded
        else:
            return None  # the cloud may still make it: wait, at most until the deadline
        if st.onboard is None:
            return None  # on-car still running: resolved (late) when it finishes
        met = now <= plan.hard_deadline
        if not met:
            self.counters.deadline_misses += 1
        self.counters.onboard_used += 1
        return TaskResult(name, "on-car", plan.on_car_option, plan.option, now - capture, met, status, st.onboard)
