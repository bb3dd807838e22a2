"""Uplink capacity traces with mahimahi semantics: the one trace type of carlink.

A :class:`Trace` is a sorted array of delivery opportunities in milliseconds: each entry means one
1500-byte packet may be delivered at that millisecond (several entries may share one), exactly as
in a mahimahi ``.up``/``.down`` file. The trace repeats with its ``period_ms``: opportunity ``t``
happens at ``t``, ``t + period``, ``t + 2 period``... (mahimahi's mm-link loops at the last
timestamp; rate-based sources get the length of their samples as period). An optional RTT series
rides along.

Rate samples (a CSV row per second, a NUWiNS value per 100 ms) are converted to opportunities
spread evenly inside each sample's interval, carrying fractional packets from one sample to the
next so that the total number of packets is exact (to within one packet).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from carlink.network import MTU

PACKET_BITS = MTU * 8  # every opportunity carries one MTU-sized packet
_log = logging.getLogger(__name__)
# No recorded drive spans more than this; beyond it a timestamp is a typo or a foreign file, and
# whatever is sized by the span (the link emulator's loops, per-window arrays) would be huge.
MAX_SPAN_MS = 31 * 86_400_000


@dataclass(frozen=True, eq=False)
class RttSeries:
    """Round-trip-time samples: ``rtt_ms[i]`` measured at ``times_ms[i]`` (ms from trace start)."""

    times_ms: np.ndarray
    rtt_ms: np.ndarray

    def __post_init__(self) -> None:
        if self.times_ms.shape != self.rtt_ms.shape or self.times_ms.ndim != 1:
            raise ValueError(f"RTT times and values must be 1-D and of equal length, got "
                             f"{self.times_ms.shape} and {self.rtt_ms.shape}")
        if self.times_ms.size and np.any(np.diff(self.times_ms) < 0):
            raise ValueError("RTT sample times must be non-decreasing")

    def __len__(self) -> int:
        return int(self.rtt_ms.size)


@dataclass(frozen=True)
class TraceStats:
    """Summary of a trace; throughput percentiles are over ``window_ms`` bins."""

    duration_s: float
    packets: int
    mean_bps: float
    p5_bps: float
    p50_bps: float
    p95_bps: float
    max_bps: float
    zero_share: float  # share of bins with no delivery opportunity
    window_ms: int
    rtt_samples: int = 0
    rtt_p50_ms: float | None = None
    rtt_p95_ms: float | None = None

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Trace:
    """Delivery opportunities (ms, sorted, int64) repeating with ``period_ms``; optional RTT."""

    __slots__ = ("opportunities_ms", "period_ms", "name", "source", "rtt", "_inner", "_at_period")

    def __init__(
        self,
        opportunities_ms: np.ndarray,
        period_ms: int,
        name: str = "",
        source: str = "",
        rtt: RttSeries | None = None,
    ) -> None:
        opps = np.ascontiguousarray(opportunities_ms, dtype=np.int64)
        if opps.ndim != 1:
            raise ValueError(f"opportunities must be a 1-D array, got shape {opps.shape}")
        period_ms = int(period_ms)
        if period_ms <= 0:
            raise ValueError(f"trace period must be positive, got {period_ms} ms")
        if period_ms > MAX_SPAN_MS:
            raise ValueError(f"trace period of {period_ms} ms ({period_ms / 86_400_000:.1f} days) exceeds the "
                             f"limit of {MAX_SPAN_MS // 86_400_000} days: its timestamps are implausible")
        if opps.size:
            if opps[0] < 0:
                raise ValueError(f"opportunities must be >= 0 ms, first is {opps[0]}")
            if opps[-1] > period_ms:
                raise ValueError(f"opportunity at {opps[-1]} ms lies beyond the period of {period_ms} ms")
            bad = np.flatnonzero(opps[1:] < opps[:-1])  # a bool array: no int64 temporary
            if bad.size:
                raise ValueError(f"opportunities must be sorted: entry {bad[0] + 1} ({opps[bad[0] + 1]} ms) "
                                 f"comes after {opps[bad[0]]} ms")
        opps.setflags(write=False)
        self.opportunities_ms = opps
        self.period_ms = period_ms
        self.name = name
        self.source = source
        self.rtt = rtt
        # Opportunities exactly at the period (mahimahi's last line) recur at P, 2P, ...; the
        # others recur at t + kP. Splitting them keeps count_between a pair of binary searches.
        split = int(np.searchsorted(opps, period_ms, "left"))
        self._inner = opps[:split]
        self._at_period = int(opps.size - split)

    # -- basic figures -------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.opportunities_ms.size)

    def __repr__(self) -> str:
        return (f"Trace(name={self.name!r}, packets={len(self)}, period_ms={self.period_ms}, "
                f"mean={self.mean_bps / 1e6:.3f} Mbit/s, rtt={'yes' if self.rtt else 'no'})")

    @property
    def duration_s(self) -> float:
        return self.period_ms / 1000.0

    @property
    def mean_bps(self) -> float:
        """Average capacity over one period, bit/s."""
        return len(self) * PACKET_BITS / self.duration_s

    def _windows(self, window_ms: int) -> tuple[np.ndarray, np.ndarray, int]:
        """The windows that hold opportunities, as (window indices ascending, opportunity counts),
        and the number of windows.

        Windows are [k w, (k+1) w); the last may be partial, and an opportunity exactly at the
        period gets a window of its own when the period is a multiple of the window (mahimahi's
        convention: the file's last line is delivered before the trace loops). Memory is in
        proportion to the opportunities, not to the span.
        """
        opps = self.opportunities_ms
        n = -(-self.period_ms // window_ms)
        if not opps.size:
            return np.empty(0, np.int64), np.empty(0, np.int64), int(n)
        if window_ms == self.period_ms:  # one window is the whole trace, its last line included
            return np.zeros(1, np.int64), np.array([opps.size]), 1
        n = max(n, int(opps[-1]) // window_ms + 1)
        bins = opps // window_ms
        # Sorted, so each window's opportunities are one run: where a run starts and how long it is.
        starts = np.concatenate(([0], np.flatnonzero(bins[1:] != bins[:-1]) + 1))
        return bins[starts], np.diff(np.append(starts, bins.size)), int(n)

    def _window(self, window_ms: int) -> int:
        """The window actually used: ``window_ms``, or the period when that is shorter: a trace no
        longer than one window is one window, measured over its own length (so its max, p50... are
        its mean, not a fraction of it)."""
        if window_ms <= 0:
            raise ValueError(f"window must be positive, got {window_ms} ms")
        return min(window_ms, self.period_ms)

    def throughput_bps(self, window_ms: int = 1000) -> np.ndarray:
        """Capacity per window of ``window_ms`` over one period, bit/s (windows as in :meth:`_windows`)."""
        window_ms = self._window(window_ms)
        index, counts, n = self._windows(window_ms)
        out = np.zeros(n, np.float64)
        out[index] = counts * PACKET_BITS / (window_ms / 1000.0)
        return out

    def stats(self, window_ms: int = 1000) -> TraceStats:
        """Summary over ``window_ms`` windows. Computed from the windows that hold opportunities
        (the others are zeros), so a trace spanning days costs no more than its file."""
        window_ms = self._window(window_ms)
        index, counts, n = self._windows(window_ms)
        rates = np.sort(counts * PACKET_BITS / (window_ms / 1000.0))  # as mean_bps: same rounding
        p5, p50, p95 = (_percentile_with_zeros(rates, n, q) for q in (5, 50, 95))
        rtt_p50 = rtt_p95 = None
        if self.rtt is not None and len(self.rtt):
            rtt_p50, rtt_p95 = (float(v) for v in np.percentile(self.rtt.rtt_ms, [50, 95]))
        return TraceStats(
            duration_s=self.duration_s, packets=len(self), mean_bps=self.mean_bps,
            p5_bps=p5, p50_bps=p50, p95_bps=p95,
            max_bps=float(rates[-1]) if rates.size else 0.0,
            zero_share=(n - rates.size) / n, window_ms=window_ms,
            rtt_samples=len(self.rtt) if self.rtt is not None else 0,
            rtt_p50_ms=rtt_p50, rtt_p95_ms=rtt_p95,
        )

    # -- queries with looping (the link emulator's hot path) ----------------------------------

    def _count_before(self, t: float) -> int:
        """Opportunities at times < t (t in ms, t >= 0), counting every loop."""
        if t <= 0:
            return 0
        q, r = divmod(t, self.period_ms)
        # Integer key: a float key would make numpy convert the whole int64 array on every call.
        # For integer opportunities, "< r" is the same as "< ceil(r)".
        n = int(q) * self._inner.size + int(np.searchsorted(self._inner, math.ceil(r), "left"))
        if self._at_period:  # these land at kP, k >= 1: those < t are k <= q (k < q where r is 0)
            n += self._at_period * (int(q) if r > 0 else int(q) - 1)  # not ceil(t / P): t / P can underflow
        return n

    def count_between(self, t0_ms: float, t1_ms: float) -> int:
        """Number of delivery opportunities in [t0, t1) ms, the trace looping forever from 0."""
        if t1_ms < t0_ms:
            raise ValueError(f"interval end {t1_ms} ms is before its start {t0_ms} ms")
        return self._count_before(t1_ms) - self._count_before(t0_ms)

    def capacity_bits_between(self, t0_ms: float, t1_ms: float) -> int:
        return self.count_between(t0_ms, t1_ms) * PACKET_BITS

    def opportunities_between(self, t0_ms: float, t1_ms: float) -> np.ndarray:
        """Absolute times (ms, int64, sorted) of the opportunities in [t0, t1), with looping."""
        if t1_ms < t0_ms:
            raise ValueError(f"interval end {t1_ms} ms is before its start {t0_ms} ms")
        t0, t1 = max(t0_ms, 0.0), max(t1_ms, 0.0)
        P = self.period_ms
        parts = []
        first_loop = max(int(t0 // P) - 1, 0)  # an opportunity at P of loop k-1 lands at kP
        for k in range(first_loop, int(t1 // P) + 1):
            base = k * P
            lo = np.searchsorted(self.opportunities_ms, math.ceil(t0 - base), "left")
            hi = np.searchsorted(self.opportunities_ms, math.ceil(t1 - base), "left")
            if hi > lo:
                parts.append(self.opportunities_ms[lo:hi] + base)
        if not parts:
            return np.empty(0, np.int64)
        out = np.concatenate(parts)
        out.sort(kind="stable")  # loops overlap only at the shared millisecond kP
        return out

    # -- derived traces -------------------------------------------------------------------------

    def slice(self, start_s: float, end_s: float) -> "Trace":
        """The part in [start_s, end_s) (looping past the period), shifted to start at 0."""
        start_ms, end_ms = round(start_s * 1000), round(end_s * 1000)
        if not 0 <= start_ms < end_ms:
            raise ValueError(f"slice needs 0 <= start < end, got [{start_s}, {end_s}) s")
        opps = self.opportunities_between(start_ms, end_ms) - start_ms
        rtt = None
        if self.rtt is not None:
            keep = (self.rtt.times_ms >= start_ms) & (self.rtt.times_ms < end_ms)
            rtt = RttSeries(self.rtt.times_ms[keep] - start_ms, self.rtt.rtt_ms[keep])
        return Trace(opps, end_ms - start_ms, f"{self.name}[{start_s:g}s:{end_s:g}s]", self.source, rtt)

    def looped(self, length_ms: int) -> "Trace":
        """The trace repeated (or cut) to exactly ``length_ms``."""
        return Trace(self.opportunities_between(0, length_ms), length_ms, self.name, self.source, self.rtt)

    def scaled(self, factor: float) -> "Trace":
        """Capacity multiplied by ``factor`` (> 0), keeping the timing of the original.

        The k-th new opportunity is placed at the original opportunity where the cumulative
        count, times ``factor``, first reaches k: up-scaling repeats timestamps, down-scaling
        thins them evenly, and the total is floor(factor * packets).
        """
        if not factor > 0 or not math.isfinite(factor):
            raise ValueError(f"scale factor must be a positive finite number, got {factor}")
        n_new = int(math.floor(len(self) * factor + 1e-9))
        k = np.arange(1, n_new + 1, dtype=np.float64)
        src = np.ceil(k / factor - 1e-9).astype(np.int64) - 1
        np.clip(src, 0, len(self) - 1, out=src)
        return Trace(self.opportunities_ms[src], self.period_ms, f"{self.name}x{factor:g}", self.source, self.rtt)

    def with_rtt(self, rtt: RttSeries | None) -> "Trace":
        return Trace(self.opportunities_ms, self.period_ms, self.name, self.source, rtt)

    def write_mahimahi(self, path: str | os.PathLike[str]) -> Path:
        """Write the opportunities in mahimahi's format (one ms timestamp per line).

        mahimahi loops at the file's last timestamp; if this trace's period is longer than its
        last opportunity the written file will loop earlier (a warning is logged), since the
        format cannot express idle time at the end.
        """
        if not len(self) or self.opportunities_ms[-1] <= 0:
            raise ValueError(f"trace {self.name!r}: mahimahi needs at least one opportunity after 0 ms")
        if self.opportunities_ms[-1] != self.period_ms:
            _log.warning("trace %s: period %d ms but last opportunity at %d ms; the mahimahi file "
                         "will loop after %d ms", self.name, self.period_ms,
                         self.opportunities_ms[-1], self.opportunities_ms[-1])
        path = Path(path)
        path.write_text("\n".join(map(str, self.opportunities_ms.tolist())) + "\n")
        return path

    @classmethod
    def from_rates(
        cls,
        rates_bps: np.ndarray,
        interval_ms: int,
        name: str = "",
        source: str = "",
        rtt: RttSeries | None = None,
    ) -> "Trace":
        """Rate samples (bit/s), each holding for ``interval_ms``, as delivery opportunities."""
        rates = np.asarray(rates_bps, dtype=np.float64)
        if rates.ndim != 1 or not rates.size:
            raise ValueError("rates must be a non-empty 1-D array")
        if np.any(rates < 0) or not np.all(np.isfinite(rates)):
            i = int(np.flatnonzero((rates < 0) | ~np.isfinite(rates))[0])
            raise ValueError(f"rate sample {i} is {rates[i]}: rates must be finite and >= 0")
        packets = rates * (interval_ms / 1000.0) / PACKET_BITS
        # Carry the fractions: sample j gets floor(cum_j) - floor(cum_{j-1}) packets.
        whole = np.floor(np.cumsum(packets) + 1e-9).astype(np.int64)
        counts = np.diff(whole, prepend=0)
        return cls(_spread(counts, interval_ms), len(rates) * interval_ms, name, source, rtt)


def _percentile_with_zeros(nonzero_sorted: np.ndarray, n: int, q: float) -> float:
    """np.percentile(values, q) (linear) of ``n`` values: the sorted ``nonzero_sorted`` and
    ``n - len(nonzero_sorted)`` zeros before them, without building the array of n values."""
    zeros = n - nonzero_sorted.size
    pos = q / 100.0 * (n - 1)
    lo, hi = math.floor(pos), math.ceil(pos)

    def at(i: int) -> float:
        return 0.0 if i < zeros else float(nonzero_sorted[i - zeros])

    return at(lo) + (at(hi) - at(lo)) * (pos - lo)


def _spread(counts: np.ndarray, interval_ms: int, chunk: int = 1 << 20) -> np.ndarray:
    """Place counts[j] opportunities evenly in [j*interval, (j+1)*interval): at (m + 0.5) * step."""
    out = np.empty(int(counts.sum()), np.int64)
    ends = np.cumsum(counts)
    pos = 0
    j0 = 0
    n = counts.size
    while j0 < n:
        # Process samples in chunks of about `chunk` packets to bound the temporary arrays.
        j1 = int(np.searchsorted(ends, (ends[j0 - 1] if j0 else 0) + chunk, "right"))
        j1 = min(max(j1, j0 + 1), n)
        c = counts[j0:j1]
        total = int(c.sum())
        if total:
            sample = np.repeat(np.arange(j0, j1, dtype=np.int64), c)
            first = np.repeat(np.cumsum(c) - c, c)
            m = np.arange(total, dtype=np.int64) - first
            offset = ((m + 0.5) * interval_ms / c[sample - j0]).astype(np.int64)
            out[pos:pos + total] = sample * interval_ms + offset
            pos += total
        j0 = j1
    return out
