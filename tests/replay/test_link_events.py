"""The event model (carlink.replay.link_events) on the virtual clock."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from carlink.clock import VirtualClock
from carlink.datasets.trace_readers import load_trace
from carlink.datasets.traces import Trace
from carlink.replay.link import MTU, DelaySeries, TraceLink
from carlink.replay.link_events import EmulatedLink


def test_saturating_sender_gets_exactly_the_trace_capacity(bandwidth_dir: Path) -> None:
    trace = load_trace(bandwidth_dir / "mahimahi" / "TMobile-LTE-short.up")
    clock = VirtualClock(100.0)
    link = EmulatedLink(TraceLink(trace, delay=15.0, offset_ms=20_000), clock)
    # A 50 kB frame every 10 ms for 10 s: far above capacity, so the queue never empties.
    delivered = []
    for _ in range(1000):
        delivered.append(link.send_up(50_000))
        clock.advance(0.010)
    done = sum(50_000 for tr in delivered if tr.delivered_at is not None and tr.delivered_at <= 110.015)
    capacity = link.capacity_bytes(100.0, 110.0)
    assert capacity == trace.count_between(20_000 + 1e-9, 30_000 + 1e-9) * MTU
    assert capacity - 50_000 <= done <= capacity  # whole frames only, so within one frame
    assert link.capacity_bps(100.0, 110.0) == pytest.approx(capacity * 8 / 10)


def test_idle_link_latency_is_serialisation_plus_delay_and_deterministic() -> None:
    trace = Trace(np.arange(0, 1000, 2), 1000)  # 1500 B every 2 ms = 6 Mbit/s
    runs = []
    for _ in range(2):
        clock = VirtualClock()
        link = EmulatedLink(TraceLink(trace, delay=30.0), clock)
        a = link.send_up(10 * MTU)  # opportunities at 2, 4, ..., 20 ms
        assert a.delivered_at == pytest.approx(0.020 + 0.030)
        assert link.what_if_up(MTU, at=0.001) == pytest.approx(0.022 + 0.030)  # behind a
        b = link.send_down(200, at=0.001)
        assert b.delivered_at == pytest.approx(0.031)  # unshaped: delay only
        runs.append((a, b))
    assert runs[0] == runs[1]


def test_dropped_packet_loses_the_message_and_time_varying_delay() -> None:
    clock = VirtualClock()
    delay = DelaySeries(np.array([0.0, 500.0]), np.array([10.0, 40.0]))
    link = EmulatedLink(TraceLink(Trace(np.array([100]), 100), delay=delay, queue_bytes=4 * MTU), clock)
    lost = link.send_up(6 * MTU)
    assert lost.lost and lost.dropped_packets == 2 and lost.latency is None
    clock.advance(1.0)
    ok = link.send_up(MTU)  # queue drained by now; departs at 1.1 s, delay 40 ms after 500 ms
    assert ok.delivered_at == pytest.approx(1.1 + 0.040)
    with pytest.raises(ValueError, match="before the link's origin"):
        link.send_up(10, at=-1.0)
