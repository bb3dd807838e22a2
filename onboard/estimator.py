"""Uplink bandwidth and round-trip estimation from the car's own traffic.

Bandwidth samples come from completed uploads: payload bytes over the time the payload spent
getting to the server. Unary gRPC hands the request to the handler only once it has fully
arrived, so that time is the call's elapsed time minus the server's own processing time
(``ServerTimings.total_ms``) minus one round trip (from Ping); no shared clock is needed. Uploads
of different tasks share the link: timed one by one, each would show only its share of it. So
transfers whose time on the wire overlaps are merged into one burst, whose sample is all their
bytes over the burst's span; a burst's sample replaces those of the transfers it absorbed. An
upload that timed out gives an upper bound (bytes over elapsed time), which is recorded too: it
is what makes the estimate fall during a blackout. The next completed upload discards those
bounds, so the estimate recovers as soon as the link does, not a window later.

The estimate is conservative: a low quantile of the samples in a sliding window. With no new
sample for ``stale_after_s`` it decays (half-life ``decay_half_life_s``): an old estimate is a
promise the link may no longer keep. A sender that sends little learns nothing about capacity, so
when the allocation uses much less than the estimate the estimator asks for probe traffic
(padding), bounded by a token bucket of ``probe_max_bps``.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from carlink.clock import Clock
from carlink.onboard.config import EstimatorConfig

# Transfers shorter than this cannot be timed reliably (scheduler noise on the car).
_MIN_TRANSFER_S = 0.001
_MIN_PROBE_BYTES = 4096
_DEFAULT_RTT_S = 0.05
# A burst stops absorbing transfers once it spans this long, so that a link kept busy without a
# pause still yields a sample per interval instead of one sample for the whole window.
_MAX_BURST_S = 1.0
# Timeouts without a completed upload in between that mark a blackout for the planner's samples.
_BLACKOUT_TIMEOUTS = 3


@dataclass(slots=True)
class _Burst:
    """Transfers whose time on the wire overlapped: together they measure the link."""

    start: float
    end: float
    nbytes: float

    def rate_bps(self) -> float:
        return self.nbytes * 8.0 / max(self.end - self.start, _MIN_TRANSFER_S)


@dataclass(frozen=True, slots=True)
class LinkEstimate:
    """What the car believes about its uplink at one instant."""

    bandwidth_bps: float  # bits per second the allocation may count on
    rtt_s: float  # conservative round trip (high quantile of recent pings)
    samples: int  # bandwidth samples in the window
    age_s: float | None  # since the last bandwidth sample; None: never had one
    stale: bool  # decaying because no recent sample


class UplinkEstimator:
    """Thread-safe: uploads complete on gRPC threads while the frame loop reads estimates."""

    def __init__(self, cfg: EstimatorConfig, clock: Clock) -> None:
        self._cfg = cfg
        self._clock = clock
        self._lock = threading.Lock()
        # (time, bit/s, from a timeout, burst the sample measures or None)
        self._bw: deque[tuple[float, float, bool, _Burst | None]] = deque()
        self._rtt: deque[tuple[float, float]] = deque()  # (time, seconds)
        self._last_sample_t: float | None = None
        self._last_value: float = cfg.initial_bps
        # Quantiles are cached until the samples change: estimate() runs several times per frame.
        self._bw_q: float | None = None
        self._rtt_q: float | None = None
        self._probe_tokens = 0.0  # bytes
        self._probe_t = clock.now()
        self._probe_in_flight = False

    def reconfigure(self, cfg: EstimatorConfig) -> None:
        """New settings (SIGHUP); the samples collected so far are kept."""
        with self._lock:
            self._cfg = cfg
            self._bw_q = self._rtt_q = None

    # -- samples -------------------------------------------------------------------------------

    def record_upload(self, nbytes: int, elapsed_s: float, server_s: float, sent_at: float | None = None) -> float:
        """A completed upload; returns the bandwidth sample it gave (bits per second).

        The round trip taken off is the smallest recent one (propagation): a conservative, high
        RTT here would shrink the transfer time and overstate the bandwidth. With ``sent_at``
        (clock time of the send), the transfer is merged with others that overlapped it on the
        wire and the sample is their burst's rate.
        """
        with self._lock:
            rtt = min((r for _, r in self._rtt), default=_DEFAULT_RTT_S)
        transfer = max(elapsed_s - server_s - rtt, _MIN_TRANSFER_S)
        if sent_at is None:
            return self._add_bw(nbytes * 8.0 / transfer, bound=False)
        return self._add_transfer(sent_at, sent_at + transfer, nbytes)

    def record_timeout(self, nbytes: int, elapsed_s: float) -> float:
        """An upload that did not finish in ``elapsed_s``: capacity was below bytes/elapsed.

        That bound is only a ceiling, so the sample recorded is half of it, or of the current
        estimate when lower: consecutive timeouts cut the estimate geometrically (as TCP's
        multiplicative decrease does) instead of settling at a rate that still fails.
        """
        ceiling = nbytes * 8.0 / max(elapsed_s, _MIN_TRANSFER_S)
        return self._add_bw(0.5 * min(ceiling, self.estimate().bandwidth_bps), bound=True)

    def record_rtt(self, rtt_s: float) -> None:
        if rtt_s < 0:
            raise ValueError(f"round trip cannot be negative ({rtt_s} s)")
        now = self._clock.now()
        with self._lock:
            self._rtt.append((now, rtt_s))
            self._prune(self._rtt, now)
            self._rtt_q = None

    def _add_transfer(self, start: float, end: float, nbytes: int) -> float:
        with self._lock:
            burst = _Burst(start, end, float(nbytes))
            absorbed = set()
            for _, _, _, other in self._bw:
                if other is None or id(other) in absorbed or other.end < start or other.start > end:
                    continue
                if other.end - other.start >= _MAX_BURST_S and end > other.end:
                    # A sealed burst does not grow: the part of this transfer after it stands
                    # alone, with its share of the bytes.
                    kept = (end - max(burst.start, other.end)) / (end - start)
                    burst.start, burst.nbytes = max(burst.start, other.end), nbytes * kept
                    continue
                absorbed.add(id(other))
                burst.start, burst.end = min(burst.start, other.start), max(burst.end, other.end)
                burst.nbytes += other.nbytes
            if absorbed:
                self._bw = deque(s for s in self._bw if s[3] is None or id(s[3]) not in absorbed)
        return self._add_bw(burst.rate_bps(), bound=False, burst=burst)

    def _add_bw(self, bps: float, bound: bool, burst: _Burst | None = None) -> float:
        now = self._clock.now()
        with self._lock:
            if not bound:
                # A completed upload shows the link works now: the upper bounds from earlier
                # timeouts (a blackout) no longer hold the estimate down.
                kept = [s for s in self._bw if not s[2]]
                if len(kept) != len(self._bw):
                    self._bw = deque(kept)
            self._bw.append((now, bps, bound, burst))
            self._prune(self._bw, now)
            self._last_sample_t = now
            self._bw_q = None
        return bps

    # -- estimate ------------------------------------------------------------------------------

    def estimate(self) -> LinkEstimate:
        now = self._clock.now()
        with self._lock:
            self._prune(self._bw, now)
            self._prune(self._rtt, now)
            value = self._quantile_locked() if self._bw else self._last_value
            age = None if self._last_sample_t is None else now - self._last_sample_t
            stale = age is not None and age > self._cfg.stale_after_s
            if stale:
                value *= 0.5 ** ((age - self._cfg.stale_after_s) / self._cfg.decay_half_life_s)
            return LinkEstimate(
                bandwidth_bps=max(value, self._cfg.min_bps),
                rtt_s=self._rtt_locked(),
                samples=len(self._bw),
                age_s=age,
                stale=stale,
            )

    def bandwidth_samples(self) -> np.ndarray:
        """The bandwidth samples (bit/s) the estimate is a quantile of, as the planner weighs them:
        capped by the timeouts' bounds after a few timeouts in a row (a blackout), with the same staleness
        decay and floor as :meth:`estimate`; before any sample, the initial value alone. The shared policy (onboard/policy.py) plans over this distribution."""
        now = self._clock.now()
        with self._lock:
            self._prune(self._bw, now)
            values = np.array([s[1] for s in self._bw], dtype=float) if self._bw else np.array([self._last_value])
            bounds = [s[1] for s in self._bw if s[2]]
            if len(bounds) >= _BLACKOUT_TIMEOUTS:
                # Timeouts in a row since the last completed upload say the link is at most this
                # *now*: rates measured before them no longer hold. (One late upload alone may be
                # a slow cloud run or a short dip; capping on it would idle the car for nothing.)
                values = np.minimum(values, min(bounds))
            factor = self._decay_locked(now)
            floor = self._cfg.min_bps
        return np.maximum(values * factor, floor)

    def latest_bps(self) -> float:
        """The newest bandwidth sample as is (no quantile, no decay): TURBO's "latest estimate"."""
        with self._lock:
            value = self._bw[-1][1] if self._bw else self._last_value
            return max(value, self._cfg.min_bps)

    def _decay_locked(self, now: float) -> float:
        if self._last_sample_t is None:
            return 1.0
        age = now - self._last_sample_t
        if age <= self._cfg.stale_after_s:
            return 1.0
        return 0.5 ** ((age - self._cfg.stale_after_s) / self._cfg.decay_half_life_s)

    def _quantile_locked(self) -> float:
        if self._bw_q is None:
            self._bw_q = float(np.quantile([s[1] for s in self._bw], self._cfg.quantile))
        return self._bw_q

    def _rtt_locked(self) -> float:
        if not self._rtt:
            return _DEFAULT_RTT_S
        if self._rtt_q is None:
            # Conservative for deadlines: a high quantile, mirrored from the bandwidth's low one.
            self._rtt_q = float(np.quantile([r for _, r in self._rtt], 1.0 - self._cfg.quantile))
        return self._rtt_q

    def rtt_s(self) -> float:
        """The round-trip estimate alone (cheap: for per-request checks)."""
        with self._lock:
            return self._rtt_locked()

    def _prune(self, samples: deque, now: float) -> None:
        # Keep at least the newest sample so a quiet link still has a last-known value.
        dropped = False
        while len(samples) > 1 and now - samples[0][0] > self._cfg.window_s:
            samples.popleft()
            dropped = True
        if dropped:
            if samples is self._bw:
                self._bw_q = None
            else:
                self._rtt_q = None

    # -- probing -------------------------------------------------------------------------------

    def probe_bytes(self, allocated_bps: float) -> int:
        """Padding bytes to send now (0: none). Call once per frame; pair with ``probe_done``."""
        now = self._clock.now()
        est = self.estimate()
        with self._lock:
            cfg = self._cfg
            rate = cfg.probe_max_bps / 8.0  # bytes per second
            self._probe_tokens = min(rate, self._probe_tokens + (now - self._probe_t) * rate)
            self._probe_t = now
            if not cfg.probe or self._probe_in_flight or rate <= 0:
                return 0
            if allocated_bps >= cfg.probe_below_fraction * est.bandwidth_bps and not est.stale:
                return 0
            if self._probe_tokens < _MIN_PROBE_BYTES:
                return 0
            size = int(self._probe_tokens)
            self._probe_tokens = 0.0
            self._probe_in_flight = True
            return size

    def probe_done(self) -> None:
        with self._lock:
            self._probe_in_flight = False
