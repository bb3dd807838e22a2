"""Clocks. Every component takes one, so replay can run on virtual time deterministically."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since an arbitrary epoch."""

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass."""


class WallClock:
    """Real time (monotonic)."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class VirtualClock:
    """Time that moves only when told to: ``sleep`` and ``advance`` add to it, nothing else does."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(seconds)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"cannot move a virtual clock backwards (by {seconds} s)")
        with self._lock:
            self._now += seconds

    def advance_to(self, t: float) -> None:
        with self._lock:
            if t > self._now:
                self._now = t
