"""systemd's notify protocol (sd_notify) over $NOTIFY_SOCKET, with a plain unix datagram socket.

The protocol is one datagram of newline-separated ``KEY=value`` lines sent to the socket named in
$NOTIFY_SOCKET (a path, or an abstract-namespace name starting with "@"). It is small enough that
libsystemd or a Python wrapper would be a dependency for no gain. Without $NOTIFY_SOCKET (not
started by systemd) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends READY, STATUS, WATCHDOG and STOPPING notifications to the service manager."""

    def __init__(self, address: str | None = None) -> None:
        addr = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self._addr = ("\0" + addr[1:]) if addr.startswith("@") else addr
        self._sock: socket.socket | None = None
        if self._addr:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, **fields: str | int) -> bool:
        """Send one datagram of ``KEY=value`` lines; False when not under systemd or it failed."""
        if self._sock is None:
            return False
        msg = "\n".join(f"{k}={v}" for k, v in fields.items()).encode("utf-8")
        try:
            self._sock.sendto(msg, self._addr)
            return True
        except OSError as exc:  # systemd gone or socket full: the daemon keeps working
            log.warning("sd_notify to %r failed: %s", self._addr, exc)
            return False

    def ready(self, status: str = "") -> bool:
        return self.notify(READY=1, STATUS=status) if status else self.notify(READY=1)

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text.replace("\n", " "))

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def reloading(self) -> bool:
        return self.notify(RELOADING=1)

    def stopping(self) -> bool:
        return self.notify(STOPPING=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval_s() -> float | None:
    """How often to send WATCHDOG=1: half of $WATCHDOG_USEC, when it is meant for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", usec)
        return None
    return value / 1e6 / 2.0 if value > 0 else None
