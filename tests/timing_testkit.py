"""Timing helpers for tests that hold on a busy machine: poll for a state instead of sleeping a
fixed time, and measure how late this machine wakes threads to widen wall-clock bounds by that."""

from __future__ import annotations

import threading
import time


def wait_for(pred, timeout: float = 30.0) -> bool:
    """Poll ``pred`` until it is true (True) or ``timeout`` seconds pass (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


class SchedulingProbe:
    """Measures how late this machine wakes a thread up while a test runs.

    A thread asks to sleep 5 ms again and again and records the worst overshoot. On a busy
    machine (a laptop, a shared CI host) every timer of the code under test can be late by as much;
    a wall-clock bound in a test is then `what the code promises + probe.max_lag_s`, so the test
    fails on a real defect and not on load.
    """

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.max_lag_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="scheduling-probe")

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            time.sleep(self.interval_s)
            self.max_lag_s = max(self.max_lag_s, time.monotonic() - t0 - self.interval_s)

    def __enter__(self) -> "SchedulingProbe":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
