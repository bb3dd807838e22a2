"""Hold a CPU wake-up latency limit for the daemon's life (Linux PM QoS, /dev/cpu_dma_latency).

Why: at 10 Hz the car's cores idle for most of each 100 ms frame period, and waking from deep
idle states (in a VM, a halted vCPU) makes the next frame's burst of encoding slower. On the
2-core dev VM, five full-size JPEG encodes on two threads took 22 ms at the median after 100 ms
idle, 15 ms back to back, and 17 ms after 100 ms idle with a 0 us limit held; in the whole
pipeline (tests/benchmarks/onboard.py prints both rows) three runs gave 0.7 to 6 ms at the median. Real-time car computers run with such a limit (tuned's
latency-performance profile writes the same file). It costs power: off by default.

The kernel keeps the request while the file stays open and drops it when it is closed (or the
process dies), so no state outlives the daemon.
"""

from __future__ import annotations

import os
import struct

PM_QOS_DEVICE = "/dev/cpu_dma_latency"
# What the device reads when nobody holds a request (PM_QOS_CPU_LATENCY_DEFAULT_VALUE).
NO_LIMIT_US = 2_000_000_000


class CpuLatencyError(OSError):
    """The latency request could not be made (message says which file and why)."""


def current_limit_us(device: str = PM_QOS_DEVICE) -> int:
    """The limit in force now: the smallest of all processes' requests, or NO_LIMIT_US."""
    with open(device, "rb") as f:
        (value,) = struct.unpack("i", f.read(4))
    return value


class CpuLatencyRequest:
    """Asks the kernel to keep every core able to wake within ``max_us`` microseconds.

    0 keeps the cores out of all idle states but polling (lowest latency, most power).
    """

    def __init__(self, max_us: int, device: str = PM_QOS_DEVICE) -> None:
        if not 0 <= max_us < 2**31:
            raise ValueError(f"CPU wake-up latency {max_us} us outside 0..{2**31 - 1}")
        self.max_us = max_us
        self.device = device
        try:
            self._fd: int | None = os.open(device, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            hint = " (run as root, or install onboard/60-carlink-cpu-latency.rules)" if exc.errno == 13 else ""
            raise CpuLatencyError(exc.errno, f"cannot open {device}: {exc.strerror}{hint}") from None
        try:
            os.write(self._fd, struct.pack("i", max_us))
        except OSError as exc:
            os.close(self._fd)
            self._fd = None
            raise CpuLatencyError(exc.errno, f"cannot write to {device}: {exc.strerror}") from None

    @property
    def active(self) -> bool:
        return self._fd is not None

    def close(self) -> None:
        """Drop the request (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "CpuLatencyRequest":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
