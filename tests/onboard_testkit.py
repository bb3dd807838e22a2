"""Shared helpers of the onboard tests (no tests here): profiles, configs, a cloud server, a TCP relay."""

from __future__ import annotations

import select
import socket
import threading
from pathlib import Path

from carlink.onboard.config import OnboardConfig, parse_config
from carlink.profile import VERSION, OnCarProfile, OptionProfile, Profile, TaskProfile


def write_profile(path: Path, cameras=("FRONT", "SIDE_LEFT"), deadline_ms: float = 200.0, onboard_model: str = "noop") -> Path:
    """A small carlink.profile file (written by the profile model, as the profiler writes its
    files): per camera, the on-car model plus two noop cloud options."""
    def option(oid, size, q, nbytes, ms, utility):
        return OptionProfile(id=oid, model="noop", resize=size, codec="jpeg", jpeg_quality=q,
                             payload_bytes_mean=nbytes, payload_bytes_p95=nbytes, runtime_ms_p50=ms,
                             runtime_ms_p99=ms, utility=utility)

    tasks = [TaskProfile(
        name=f"det_{cam.lower()}", camera=cam, deadline_ms=deadline_ms, weight=1.0,
        on_car=OnCarProfile(id="car", model=onboard_model, utility=0.3),
        options=[option("cloud_640_q80", (640, 480), 80, 60000, 10, 0.6),
                 option("cloud_320_q70", (320, 240), 70, 15000, 5, 0.5)],
    ) for cam in cameras]
    Profile(version=VERSION, tasks=tasks).save(path)
    return path


def make_config(profile: Path, address: str, **sections) -> OnboardConfig:
    data = {
        "daemon": {"profile": str(profile), "device": "cpu"},
        "source": {"kind": "synthetic", "rate_hz": 10},
        "cloud": {"address": address, "insecure": True, "ping_interval_s": 0.2},
        "estimator": {"initial_bps": 20e6},
    }
    for k, v in sections.items():
        data[k] = {**data.get(k, {}), **v}
    return parse_config(data)


def free_port() -> int:
    """A loopback TCP port free right now (for a server whose address must be known first)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaemonThread:
    """A real OnboardDaemon running on a thread of the test process; ``stop()`` returns run()'s result."""

    def __init__(self, config: Path) -> None:
        from carlink.onboard.daemon import OnboardDaemon

        self.daemon = OnboardDaemon(config)
        self._result: list = []
        self._thread = threading.Thread(target=lambda: self._result.append(self.daemon.run()), daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> int | None:
        self.daemon.request_stop()
        self._thread.join(timeout=timeout)
        return self._result[0] if self._result else None


def start_server(port: int = 0):
    """A real carlink cloud server on loopback serving the noop model."""
    from carlink.cloud.config import ServerConfig
    from carlink.cloud.server import InferenceServer

    srv = InferenceServer(ServerConfig(models=("noop",), insecure=True, port=port, grace_s=0))
    srv.start()
    return srv


class TcpRelay:
    """A loopback TCP forwarder that can stop delivering bytes (a blackout), both ways.

    While blacked out it reads nothing, so bytes pile up in socket buffers and nothing arrives;
    on resume everything buffered flows on, as after a real coverage gap.
    """

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._lsock = socket.create_server(("127.0.0.1", 0))
        self.port = self._lsock.getsockname()[1]
        self.blackout = threading.Event()
        self._stop = threading.Event()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        peer: dict[socket.socket, socket.socket] = {}
        while not self._stop.is_set():
            socks = [self._lsock] + ([] if self.blackout.is_set() else list(peer))
            r, _, _ = select.select(socks, [], [], 0.02)
            for s in r:
                if s is self._lsock:
                    c, _ = self._lsock.accept()
                    try:
                        u = socket.create_connection(self.target)
                    except OSError:
                        c.close()
                        continue
                    peer[c], peer[u] = u, c
                    continue
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                other = peer.get(s)
                if not data or other is None:
                    for x in (s, other):
                        if x is not None:
                            peer.pop(x, None)
                            x.close()
                    continue
                try:
                    other.sendall(data)
                except OSError:
                    pass
        for s in list(peer) + [self._lsock]:
            s.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


