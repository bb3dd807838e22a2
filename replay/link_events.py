"""The link emulator as an event model on a clock (normally carlink.clock.VirtualClock).

Times are seconds on the clock; link time 0 is the clock's time when the model is made (or
``origin``). Messages are split into 1500-byte packets and pushed through the shared core
(:class:`carlink.replay.link.TraceLink`), so the answers are exactly mahimahi's. A message with a
dropped packet counts as lost (``delivered_at`` is None): the event model does not retransmit.
"""

from __future__ import annotations

from dataclasses import dataclass

from carlink.clock import Clock
from carlink.replay.link import DelayLine, TraceLink, delay_at


@dataclass(frozen=True, slots=True)
class Transfer:
    """One message through one direction of the link (clock seconds)."""

    sent_at: float
    nbytes: int
    delivered_at: float | None  # None: lost (a packet was dropped by the queue)
    dropped_packets: int = 0

    @property
    def lost(self) -> bool:
        return self.delivered_at is None

    @property
    def latency(self) -> float | None:
        return None if self.delivered_at is None else self.delivered_at - self.sent_at


class EmulatedLink:
    """Uplink shaped by a trace; downlink shaped by a second trace or only delayed."""

    def __init__(
        self,
        uplink: TraceLink,
        clock: Clock,
        downlink: TraceLink | DelayLine | None = None,
        origin: float | None = None,
    ) -> None:
        self.uplink = uplink
        self.downlink = downlink if downlink is not None else DelayLine(uplink.delay)
        self.clock = clock
        self.origin = clock.now() if origin is None else float(origin)

    def _ms(self, at: float | None) -> float:
        t = self.clock.now() if at is None else at
        if t < self.origin:
            raise ValueError(f"time {t} s is before the link's origin {self.origin} s")
        return (t - self.origin) * 1000.0

    def _s(self, ms: float) -> float:
        return self.origin + ms / 1000.0

    def send_up(self, nbytes: int, at: float | None = None) -> Transfer:
        """Send ``nbytes`` car -> cloud at ``at`` (default: now); sends must come in time order."""
        t_ms = self._ms(at)
        d, dropped = self.uplink.send(t_ms, nbytes)
        return Transfer(self._s(t_ms), nbytes, None if d is None else self._s(d.delivered_ms), dropped)

    def send_down(self, nbytes: int, at: float | None = None) -> Transfer:
        """Send ``nbytes`` cloud -> car (a response)."""
        t_ms = self._ms(at)
        if isinstance(self.downlink, DelayLine):
            return Transfer(self._s(t_ms), nbytes, self._s(self.downlink.deliver_at(t_ms)))
        d, dropped = self.downlink.send(t_ms, nbytes)
        return Transfer(self._s(t_ms), nbytes, None if d is None else self._s(d.delivered_ms), dropped)

    def what_if_up(self, nbytes: int, at: float | None = None) -> float | None:
        """When ``nbytes`` sent now would arrive, given the queue, without sending them."""
        d, _ = self.uplink.what_if(self._ms(at), nbytes)
        return None if d is None else self._s(d.delivered_ms)

    # -- what the oracle may know: the true capacity --------------------------------------------

    def capacity_bytes(self, t0: float, t1: float) -> int:
        """Uplink bytes deliverable in (t0, t1] (clock seconds), whatever is queued."""
        return self.uplink.capacity_bytes(self._ms(t0), self._ms(t1))

    def capacity_bps(self, t0: float, t1: float) -> float:
        return self.uplink.capacity_bps(self._ms(t0), self._ms(t1))

    def one_way_delay(self, at: float | None = None) -> float:
        """Propagation delay (s) of a packet leaving the bottleneck at ``at``."""
        t_ms = self._ms(at)
        return delay_at(self.uplink.delay, t_ms + self.uplink.offset_ms) / 1000.0
