"""The link emulator's core: a pure, deterministic mahimahi-style bottleneck (no clock, no I/O).

Two forms use it: :mod:`carlink.replay.link_events` (event model on the virtual clock) and
:mod:`carlink.replay.link_proxy` (loopback TCP proxy on the wall clock). Times here are
milliseconds on the link's own timeline: link time 0 is trace position ``offset_ms``.

Semantics (mahimahi's ``LinkQueue::rationalize`` in src/frontend/link_queue.cc, followed exactly):

* The trace lists delivery opportunities in ms; each may carry ``MTU`` = 1500 bytes. The trace
  loops: opportunity ``t`` recurs at ``t + k * period``.
* Packets (at most 1500 bytes) wait FIFO. At each opportunity the head packet is served with the
  opportunity's 1500 bytes; what the packet does not need passes to the next queued packet in the
  same opportunity, and a packet larger than what is left stays "in transit" and finishes at a
  later opportunity. Bytes of an opportunity are wasted only when no packet is queued.
* A packet arriving at time ``t`` can only use opportunities strictly after ``t`` (mahimahi
  burns the opportunities ``<= now`` before it enqueues the arrival).
* A packet departs at the opportunity that serves its last byte, then travels the one-way delay.
* Drop-tail (mahimahi's DropTailPacketQueue): an arrival is dropped when the bytes (or packets)
  waiting in the queue plus the arrival would exceed the limit. As in mahimahi, the packet in
  transit no longer counts as waiting.

Because service is FIFO, a packet's departure is fixed at its arrival: later arrivals only use
what earlier ones leave. So the core computes each departure in O(1) (plus one binary search when
the link was idle) from the tail of the queue, instead of stepping through every opportunity;
tests/replay/test_link_core.py checks it against a literal step-by-step transcription of ``rationalize``.

Where carlink deviates from mahimahi:

* Times are float ms rather than whole ms (an arrival at 5.3 ms may use the opportunity at 6 ms,
  as mahimahi's would at 5 ms).
* The one-way delay may vary over time (:class:`DelaySeries`, e.g. half a trace's RTT series,
  sampled at the packet's departure); deliveries keep FIFO order (a packet never overtakes the
  one before it), since the proxy carries TCP byte streams. mahimahi's mm-delay is fixed.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from carlink.network import MTU


class OpportunityTrace(Protocol):
    """What the link needs of a trace (carlink.datasets.traces.Trace provides it)."""

    opportunities_ms: np.ndarray  # sorted int64, each entry one 1500-byte opportunity
    period_ms: int  # the trace repeats with this period


@dataclass(frozen=True, eq=False)
class DelaySeries:
    """A one-way delay that steps over time: ``delay_ms[i]`` holds from ``times_ms[i]`` on.

    Before the first sample the first value holds. With ``period_ms`` the series repeats (a trace's
    RTT series loops with the trace).
    """

    times_ms: np.ndarray
    delay_ms: np.ndarray
    period_ms: int | None = None

    def __post_init__(self) -> None:
        t = np.asarray(self.times_ms, dtype=np.float64)
        d = np.asarray(self.delay_ms, dtype=np.float64)
        if t.ndim != 1 or t.shape != d.shape or t.size == 0:
            raise ValueError(f"delay series needs equal, non-empty 1-D times and delays, got "
                             f"{t.shape} and {d.shape}")
        if np.any(np.diff(t) < 0):
            i = int(np.flatnonzero(np.diff(t) < 0)[0]) + 1
            raise ValueError(f"delay series times must be sorted: sample {i} ({t[i]} ms) is early")
        if not np.isfinite(d).all() or np.any(d < 0):
            i = int(np.flatnonzero(~np.isfinite(d) | (d < 0))[0])
            raise ValueError(f"delay series sample {i}: delay {d[i]} ms is not a finite value >= 0")
        if self.period_ms is not None and self.period_ms <= 0:
            raise ValueError(f"delay series period must be positive, got {self.period_ms} ms")
        object.__setattr__(self, "times_ms", t)
        object.__setattr__(self, "delay_ms", d)

    @classmethod
    def half_rtt(cls, times_ms: np.ndarray, rtt_ms: np.ndarray, period_ms: int | None = None) -> "DelaySeries":
        """One-way delay as half of a round-trip series (e.g. ``trace.rtt``)."""
        return cls(np.asarray(times_ms, dtype=np.float64), np.asarray(rtt_ms, dtype=np.float64) / 2.0,
                   period_ms)

    def at(self, t_ms: float) -> float:
        if self.period_ms is not None:
            t_ms = t_ms % self.period_ms
        i = int(np.searchsorted(self.times_ms, t_ms, side="right")) - 1
        return float(self.delay_ms[max(i, 0)])


Delay = float | DelaySeries


def delay_at(delay: Delay, t_ms: float) -> float:
    return delay.at(t_ms) if isinstance(delay, DelaySeries) else float(delay)


def _check_delay(delay: Delay) -> Delay:
    if not isinstance(delay, DelaySeries) and not (math.isfinite(delay) and delay >= 0):
        raise ValueError(f"one-way delay must be a finite number of ms >= 0, got {delay!r}")
    return delay


class DelayLine:
    """Propagation only (an unshaped direction): FIFO delivery after the one-way delay."""

    def __init__(self, delay: Delay = 0.0) -> None:
        self.delay = _check_delay(delay)
        self._last = -math.inf

    def deliver_at(self, t_ms: float) -> float:
        self._last = max(self._last, t_ms + delay_at(self.delay, t_ms))
        return self._last


@dataclass(frozen=True, slots=True)
class Delivery:
    """Fate of one packet: when it left the bottleneck and when it reached the far end (link ms)."""

    departed_ms: float
    delivered_ms: float


class TraceLink:
    """One direction of a trace-driven link: drop-tail queue, trace service, propagation delay."""

    def __init__(
        self,
        trace: OpportunityTrace,
        delay: Delay = 0.0,
        queue_bytes: int | None = None,
        queue_packets: int | None = None,
        offset_ms: float = 0.0,
    ) -> None:
        sched = np.asarray(trace.opportunities_ms, dtype=np.int64)
        if sched.size == 0:
            raise ValueError("trace has no delivery opportunities: the link could never deliver")
        period = int(trace.period_ms)
        if period <= 0 or sched[-1] > period or sched[0] < 0:
            raise ValueError(f"trace opportunities must lie in [0, period]; period {period} ms, "
                             f"first {sched[0]} ms, last {sched[-1]} ms")
        for name, limit in (("queue_bytes", queue_bytes), ("queue_packets", queue_packets)):
            if limit is not None and limit <= 0:
                raise ValueError(f"{name} must be positive or None (unlimited), got {limit}")
        if not (math.isfinite(offset_ms) and offset_ms >= 0):
            raise ValueError(f"offset_ms must be a finite number >= 0, got {offset_ms}")
        self._sched = sched
        self._n = int(sched.size)
        self._period = period
        self.delay = _check_delay(delay)
        self.queue_bytes_limit = queue_bytes
        self.queue_packets_limit = queue_packets
        self.offset_ms = float(offset_ms)
        # The queue's tail: opportunity index where the last packet departs and bytes it left over.
        self._tail_k = -1
        self._tail_left = 0
        self._waiting: deque[tuple[float, int]] = deque()  # (trace ms it leaves the queue, bytes)
        self._waiting_bytes = 0
        self._last_arrival = -math.inf
        self._last_delivered = -math.inf
        self.sent_packets = 0
        self.sent_bytes = 0
        self.dropped_packets = 0
        self.dropped_bytes = 0

    # -- opportunity arithmetic (global index k counts opportunities across loops) -------------

    def _time(self, k: int) -> float:
        q, i = divmod(k, self._n)
        return float(self._sched[i] + q * self._period)

    def _first_after(self, tau: float) -> int:
        """Index of the first opportunity strictly after trace time ``tau``."""
        loop = math.floor(tau / self._period)
        r = tau - loop * self._period
        # Integer key (opportunities are whole ms: "> r" is "> floor(r)"): a float key would make
        # numpy convert the whole int64 schedule on every call (7.6 M entries for NUWiNS).
        return loop * self._n + int(np.searchsorted(self._sched, math.floor(r), side="right"))

    def _trace_time(self, t_ms: float) -> float:
        if not math.isfinite(t_ms) or t_ms < 0:
            raise ValueError(f"link time must be a finite number of ms >= 0, got {t_ms}")
        return t_ms + self.offset_ms

    def _expire(self, tau: float) -> None:
        while self._waiting and self._waiting[0][0] <= tau:
            self._waiting_bytes -= self._waiting.popleft()[1]

    # -- the link ---------------------------------------------------------------------------------

    def enqueue(self, t_ms: float, size: int) -> Delivery | None:
        """A packet of ``size`` bytes arrives at ``t_ms``; returns its fate, None if dropped.

        Arrivals must come in time order (the link is causal).
        """
        if not 0 <= size <= MTU:
            raise ValueError(f"packet of {size} bytes at {t_ms} ms: size must be in [0, {MTU}]")
        if t_ms < self._last_arrival:
            raise ValueError(f"packet at {t_ms} ms arrives before the previous one "
                             f"({self._last_arrival} ms): arrivals must be in time order")
        tau = self._trace_time(t_ms)
        self._last_arrival = t_ms
        self._expire(tau)
        if (self.queue_bytes_limit is not None and self._waiting_bytes + size > self.queue_bytes_limit) or (
                self.queue_packets_limit is not None and len(self._waiting) + 1 > self.queue_packets_limit):
            self.dropped_packets += 1
            self.dropped_bytes += size
            return None
        if self._tail_k >= 0 and self._time(self._tail_k) > tau:  # busy: queue behind the tail
            left = self._tail_left
            if left > 0 and size <= left:
                k_start = k_dep = self._tail_k
                left -= size
            else:
                n = max(1, math.ceil((size - left) / MTU))
                k_start = self._tail_k if left > 0 else self._tail_k + 1
                k_dep = self._tail_k + n
                left = n * MTU - (size - left)
        else:  # idle: served from the next opportunity on
            k_start = self._first_after(tau)
            n = max(1, math.ceil(size / MTU))
            k_dep = k_start + n - 1
            left = n * MTU - size
        self._tail_k, self._tail_left = k_dep, left
        start_tau = self._time(k_start)
        if start_tau > tau:
            self._waiting.append((start_tau, size))
            self._waiting_bytes += size
        departed_tau = self._time(k_dep)
        delivered_tau = max(self._last_delivered, departed_tau + delay_at(self.delay, departed_tau))
        self._last_delivered = delivered_tau
        self.sent_packets += 1
        self.sent_bytes += size
        return Delivery(departed_tau - self.offset_ms, delivered_tau - self.offset_ms)

    def send(self, t_ms: float, nbytes: int) -> tuple[Delivery | None, int]:
        """A message of ``nbytes`` arrives at once, split into MTU packets.

        Returns the last packet's fate (None if any packet was dropped) and the dropped count.
        """
        if nbytes < 0:
            raise ValueError(f"message size must be >= 0 bytes, got {nbytes}")
        last: Delivery | None = None
        dropped = 0
        sizes = [MTU] * (nbytes // MTU) + ([nbytes % MTU] if nbytes % MTU or nbytes == 0 else [])
        k = 0
        while k < len(sizes):
            if (k > 0 and sizes[k] == MTU and self.queue_bytes_limit is None and self.queue_packets_limit is None
                    and self._tail_k >= 0):
                # Full packets behind a busy tail: each takes the next opportunity (closed form).
                n_full = next((m for m in range(k, len(sizes)) if sizes[m] != MTU), len(sizes)) - k
                last = self._enqueue_full(t_ms, n_full)
                k += n_full
                continue
            d = self.enqueue(t_ms, sizes[k])
            if d is None:
                dropped += 1
            else:
                last = d
            k += 1
        return (None if dropped else last), dropped

    def _enqueue_full(self, t_ms: float, count: int) -> Delivery:
        """``count`` MTU packets arriving at ``t_ms`` right behind the packet just queued (the link
        is busy: its tail departs after ``t_ms``), without a queue limit: what ``count`` calls of
        :meth:`enqueue` would do. Each departs with the next opportunity; the bytes the tail's
        opportunity leaves over carry on unchanged, so a packet starts in the opportunity before
        its departure when there are any."""
        tau = self._trace_time(t_ms)
        self._last_arrival = t_ms
        ks = np.arange(self._tail_k + 1, self._tail_k + 1 + count, dtype=np.int64)
        q, i = np.divmod(ks, self._n)
        departed = self._sched[i] + q * self._period
        starts = departed if self._tail_left == 0 else np.concatenate(([self._time(self._tail_k)], departed[:-1]))
        waiting = starts > tau
        self._waiting.extend(zip(starts[waiting].astype(float).tolist(), [MTU] * int(waiting.sum())))
        self._waiting_bytes += MTU * int(waiting.sum())
        self._tail_k += count
        if isinstance(self.delay, DelaySeries):
            arrive = max(float(d) + self.delay.at(float(d)) for d in departed)
        else:
            arrive = float(departed[-1]) + float(self.delay)
        self._last_delivered = max(self._last_delivered, arrive)
        self.sent_packets += count
        self.sent_bytes += MTU * count
        return Delivery(float(departed[-1]) - self.offset_ms, self._last_delivered - self.offset_ms)

    def what_if(self, t_ms: float, nbytes: int) -> tuple[Delivery | None, int]:
        """What :meth:`send` would return, leaving this link untouched."""
        clone = copy.copy(self)  # the schedule and delay are never changed: only the queue is copied
        clone._waiting = deque(self._waiting)
        return clone.send(t_ms, nbytes)

    # -- queries (for the oracle and for the proxy's backpressure) ---------------------------

    def queued_bytes(self, t_ms: float) -> int:
        """Bytes waiting in the queue at ``t_ms`` (not counting the packet in transit)."""
        tau = self._trace_time(t_ms)
        return sum(size for start, size in self._waiting if start > tau)

    def committed_bytes(self, t_ms: float) -> int:
        """Bytes of the delivery opportunities after ``t_ms`` already promised to queued packets
        (whole opportunities, less what the last one leaves free): a message of ``n`` bytes that
        arrives at ``t_ms`` leaves with the ceil((committed + n) / MTU)-th opportunity after it."""
        tau = self._trace_time(t_ms)
        if self._tail_k < 0 or self._time(self._tail_k) <= tau:
            return 0
        return (self._tail_k - self._first_after(tau) + 1) * MTU - self._tail_left

    def backlog_clears_ms(self) -> float:
        """When the last accepted packet leaves the bottleneck (link ms; -inf before any)."""
        return self._time(self._tail_k) - self.offset_ms if self._tail_k >= 0 else -math.inf

    def next_opportunity_ms(self, t_ms: float) -> float:
        """Time of the first delivery opportunity strictly after ``t_ms``."""
        return self._time(self._first_after(self._trace_time(t_ms))) - self.offset_ms

    def opportunities_between(self, t0_ms: float, t1_ms: float) -> int:
        """Number of delivery opportunities in (t0, t1]."""
        if t1_ms < t0_ms:
            raise ValueError(f"interval end {t1_ms} ms is before its start {t0_ms} ms")
        return self._first_after(self._trace_time(t1_ms)) - self._first_after(self._trace_time(t0_ms))

    def capacity_bytes(self, t0_ms: float, t1_ms: float) -> int:
        """Bytes the link can carry in (t0, t1]: opportunities times the MTU."""
        return self.opportunities_between(t0_ms, t1_ms) * MTU

    def capacity_bps(self, t0_ms: float, t1_ms: float) -> float:
        if t1_ms <= t0_ms:
            raise ValueError(f"empty interval ({t0_ms}, {t1_ms}] ms")
        return self.capacity_bytes(t0_ms, t1_ms) * 8000.0 / (t1_ms - t0_ms)
