"""The link core (carlink.replay.link) against a literal transcription of mahimahi's LinkQueue."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carlink.datasets.trace_readers import load_trace
from carlink.datasets.traces import Trace
from carlink.replay.link import MTU, DelaySeries, TraceLink


class MahimahiReference:
    """Step-by-step ``LinkQueue::rationalize`` (src/frontend/link_queue.cc) with a drop-tail queue."""

    def __init__(self, sched: list[int], period: int, byte_limit: int | None) -> None:
        self.sched, self.period, self.byte_limit = sched, period, byte_limit
        self.next, self.base = 0, 0
        self.queue: deque[list[int]] = deque()  # [id, bytes_to_transmit, size]
        self.in_transit: list[int] | None = None
        self.departures: dict[int, int] = {}

    def _next_time(self) -> int:
        return self.sched[self.next] + self.base

    def rationalize(self, now: int) -> None:
        while self._next_time() <= now:
            t = self._next_time()
            left = MTU
            self.next = (self.next + 1) % len(self.sched)
            if self.next == 0:
                self.base += self.period
            while left > 0:
                if self.in_transit is None:
                    if not self.queue:
                        break
                    self.in_transit = self.queue.popleft()
                self.in_transit[1] -= left
                left = 0
                if self.in_transit[1] <= 0:
                    left = -self.in_transit[1]
                    self.departures[self.in_transit[0]] = t
                    self.in_transit = None

    def read_packet(self, now: int, pid: int, size: int) -> bool:
        self.rationalize(now)
        queued = sum(p[2] for p in self.queue)
        if self.byte_limit is not None and queued + size > self.byte_limit:
            return False
        self.queue.append([pid, size, size])
        return True


@st.composite
def scenario(draw):
    period = draw(st.integers(1, 60))
    sched = sorted(draw(st.lists(st.integers(0, period), min_size=1, max_size=30)))
    gaps = draw(st.lists(st.integers(0, 12), min_size=1, max_size=60))
    times = np.cumsum(gaps).tolist()
    sizes = draw(st.lists(st.sampled_from([0, 1, 40, 700, 1499, 1500]) | st.integers(0, MTU),
                          min_size=len(times), max_size=len(times)))
    limit = draw(st.none() | st.integers(1500, 8000))
    return sched, period, times, sizes, limit


@settings(max_examples=300, deadline=None)
@given(scenario(), st.sampled_from([0.0, 7.5]))
def test_core_departures_equal_mahimahi_step_by_step(sc, delay) -> None:
    sched, period, times, sizes, limit = sc
    ref = MahimahiReference(sched, period, limit)
    link = TraceLink(Trace(np.array(sched), period), delay=delay, queue_bytes=limit)
    ours = {}
    for pid, (t, size) in enumerate(zip(times, sizes)):
        accepted = ref.read_packet(t, pid, size)
        d = link.enqueue(float(t), size)
        assert (d is not None) == accepted, f"packet {pid}: drop decision differs"
        if d is not None:
            ours[pid] = d
    ref.rationalize(times[-1] + 200 * period + 10_000)
    assert set(ours) == set(ref.departures)
    for pid, d in ours.items():
        assert d.departed_ms == ref.departures[pid], pid
        assert d.delivered_ms == ref.departures[pid] + delay


def test_offset_starts_mid_trace_and_capacity_counts_opportunities() -> None:
    trace = Trace(np.array([0, 10, 10, 30]), 40)
    link = TraceLink(trace, offset_ms=25.0)
    assert link.next_opportunity_ms(0.0) == 5.0  # trace 30 ms
    assert link.opportunities_between(0.0, 40.0) == 4  # trace (25, 65]: 30, 40, 50, 50
    assert link.capacity_bytes(0.0, 400.0) == 40 * MTU
    d, dropped = link.send(0.0, 3 * MTU)
    assert dropped == 0 and d is not None and d.departed_ms == 25.0  # trace 30, 40, 50


def test_send_what_if_and_drop_tail() -> None:
    link = TraceLink(Trace(np.array([100]), 100), delay=20.0, queue_bytes=3 * MTU)
    probe, _ = link.what_if(0.0, 2 * MTU)
    assert probe is not None and probe.delivered_ms == 220.0
    assert link.sent_bytes == 0  # untouched
    d, dropped = link.send(0.0, 5 * MTU)  # 3 fit the queue (the rest is dropped)
    assert d is None and dropped == 2 and link.dropped_bytes == 2 * MTU
    assert link.queued_bytes(0.0) == 3 * MTU and link.queued_bytes(150.0) == 2 * MTU
    with pytest.raises(ValueError, match="time order"):
        link.enqueue(-1.0, 10)


def test_delay_series_steps_and_keeps_fifo_order() -> None:
    series = DelaySeries.half_rtt(np.array([0.0, 50.0]), np.array([100.0, 20.0]))
    assert series.at(10) == 50.0 and series.at(60) == 10.0
    link = TraceLink(Trace(np.arange(1, 101), 100), delay=series)
    a = link.enqueue(48.0, MTU)  # departs 49, +50 -> 99
    b = link.enqueue(50.0, MTU)  # departs 51, +10 -> 61, but cannot overtake a
    assert a is not None and b is not None
    assert a.delivered_ms == 99.0 and b.delivered_ms == 99.0
    with pytest.raises(ValueError, match="sample 1"):
        DelaySeries(np.array([0.0, 1.0]), np.array([1.0, -2.0]))


def test_bad_inputs_are_refused() -> None:
    trace = Trace(np.array([5]), 10)
    with pytest.raises(ValueError, match="size"):
        TraceLink(trace).enqueue(0.0, MTU + 1)
    with pytest.raises(ValueError, match="no delivery opportunities"):
        TraceLink(Trace(np.array([], dtype=np.int64), 10))
    with pytest.raises(ValueError, match="queue_bytes"):
        TraceLink(trace, queue_bytes=0)


def test_event_capacity_equals_real_traces_exactly(bandwidth_dir: Path) -> None:
    # A saturating sender (always a full queue) gets exactly the trace's opportunities.
    files = sorted(p for p in bandwidth_dir.rglob("*") if p.is_file() and p.suffix != ".zip")
    assert len(files) >= 8
    for path in files:
        trace = load_trace(path)
        if len(trace) == 0:
            continue
        for start_ms in (0.0, float(trace.period_ms // 3)):
            link = TraceLink(trace, offset_ms=start_ms)
            window = 10_000.0
            expected = trace.count_between(start_ms + 1e-9, start_ms + window + 1e-9)
            assert link.opportunities_between(0.0, window) == expected, path.name
            # the last packet of exactly `expected` packets departs within the window
            probe = TraceLink(trace, offset_ms=start_ms).send(0.0, expected * MTU)[0]
            assert probe is not None and probe.departed_ms <= window, path.name
            over = TraceLink(trace, offset_ms=start_ms).send(0.0, (expected + 1) * MTU)[0]
            assert over is not None and over.departed_ms > window, path.name
