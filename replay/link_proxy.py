"""The link emulator as a loopback TCP proxy on the wall clock (asyncio, in a background thread).

Listens on 127.0.0.1:PORT and forwards every connection to a target HOST:PORT, so a gRPC channel
to the cloud can pass through it. The uplink (client -> target) goes through the shared core
(:class:`carlink.replay.link.TraceLink`): the bytes read from the client are cut into 1500-byte
packets and each is written to the target at its delivery time. The downlink (target -> client)
is only delayed by the one-way delay, or shaped by a second TraceLink. All connections share the
one uplink, as flows on a car's modem do.

Deviation from mahimahi: the proxy terminates TCP on both sides, so it cannot drop bytes of a
stream (the car's TCP would never retransmit them). Its queue limit therefore works as
backpressure: it stops reading from the client while the bytes waiting in the queue would exceed
``queue_bytes`` (default 256 KiB), and the client's own socket buffers fill up as a sender's do
behind a full bottleneck. Loss and TCP's reaction to it are not emulated.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from carlink.replay.link import MTU, DelayLine, TraceLink

DEFAULT_QUEUE_BYTES = 256 * 1024
_READ_CHUNK = 64 * 1024
_COARSE_S = 0.003
_log = logging.getLogger(__name__)


@dataclass
class ProxyStats:
    connections: int = 0
    up_bytes: int = 0  # delivered to the target
    down_bytes: int = 0  # delivered to the client


@dataclass
class _Direction:
    """Chunks waiting for their delivery time, and the writer that delivers them."""

    writer: asyncio.StreamWriter
    pending: deque[tuple[float, bytes | None]] = field(default_factory=deque)  # None = EOF
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class LinkProxy:
    """``with LinkProxy(("127.0.0.1", port), TraceLink(trace, delay=20)) as proxy: proxy.port``."""

    def __init__(
        self,
        target: tuple[str, int],
        uplink: TraceLink,
        downlink: TraceLink | DelayLine | None = None,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        queue_bytes: int | None = None,
    ) -> None:
        self.target = target
        self.uplink = uplink
        self.downlink = downlink if downlink is not None else DelayLine(uplink.delay)
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.queue_bytes = queue_bytes or uplink.queue_bytes_limit or DEFAULT_QUEUE_BYTES
        if self.queue_bytes < MTU:
            raise ValueError(f"queue_bytes must be at least one packet ({MTU}), got {self.queue_bytes}")
        self.stats = ProxyStats()
        self.origin: float | None = None  # time.monotonic() of link time 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._timer: ThreadPoolExecutor | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.port = 0

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> int:
        """Start listening in a background thread; returns the port. Link time 0 is now."""
        if self._thread is not None:
            raise RuntimeError("proxy already started")
        self._thread = threading.Thread(target=self._run, name="carlink-link-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise RuntimeError(f"link proxy could not listen on {self.listen_host}:{self.listen_port}: "
                               f"{self._error}") from self._error
        return self.port

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._shutdown)
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> "LinkProxy":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return f"{self.listen_host}:{self.port}"

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._timer = ThreadPoolExecutor(max_workers=4, thread_name_prefix="carlink-link-timer")
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # A small receive buffer keeps bytes in the client (the car) instead of in the kernel
            # between it and the emulated queue; accepted sockets inherit it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.bind((self.listen_host, self.listen_port))
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, sock=sock))
            self.port = sock.getsockname()[1]
            self.origin = time.monotonic()
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()
            self._timer.shutdown(wait=False, cancel_futures=True)

    def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        assert self._loop is not None
        self._loop.call_later(0.05, self._loop.stop)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- time --------------------------------------------------------------------------------

    def link_ms(self) -> float:
        """Now, on the link's timeline (ms since start)."""
        assert self.origin is not None
        return (time.monotonic() - self.origin) * 1000.0

    def _wall(self, t_ms: float) -> float:
        assert self.origin is not None
        return self.origin + t_ms / 1000.0

    # -- connections -------------------------------------------------------------------------

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        try:
            s_reader, s_writer = await asyncio.open_connection(*self.target)
        except OSError as exc:
            _log.warning("link proxy: cannot reach target %s:%s: %s", *self.target, exc)
            c_writer.close()
            return
        up, down = _Direction(s_writer), _Direction(c_writer)
        tasks = [
            self._spawn(self._read_up(c_reader, up)),
            self._spawn(self._deliver(up, "up")),
            self._spawn(self._read_down(s_reader, down)),
            self._spawn(self._deliver(down, "down")),
        ]
        try:
            await asyncio.gather(*tasks)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            for task in tasks:
                task.cancel()
            for w in (c_writer, s_writer):
                w.close()

    async def _read_up(self, reader: asyncio.StreamReader, out: _Direction) -> None:
        link = self.uplink
        while True:
            now = self.link_ms()
            room = self.queue_bytes - link.queued_bytes(now)
            if room < MTU:  # backpressure: wait for the queue to drain by a packet
                await asyncio.sleep(max(link.next_opportunity_ms(now) - now, 0.2) / 1000.0)
                continue
            data = await reader.read(min(room - room % MTU, _READ_CHUNK))
            if not data:
                out.pending.append((link.backlog_clears_ms(), None))
                out.wake.set()
                return
            now = self.link_ms()
            for off in range(0, len(data), MTU):
                chunk = data[off:off + MTU]
                fate = link.enqueue(now, len(chunk))
                if fate is None:  # cannot happen: reads never exceed the room left
                    raise RuntimeError("link proxy queue overflowed")
                out.pending.append((fate.delivered_ms, chunk))
            out.wake.set()

    async def _read_down(self, reader: asyncio.StreamReader, out: _Direction) -> None:
        last = 0.0
        while True:
            data = await reader.read(_READ_CHUNK)
            now = self.link_ms()
            if not data:
                out.pending.append((max(last, now), None))
                out.wake.set()
                return
            if isinstance(self.downlink, DelayLine):
                last = self.downlink.deliver_at(now)
                out.pending.append((last, data))
            else:
                for off in range(0, len(data), MTU):
                    chunk = data[off:off + MTU]
                    fate = self.downlink.enqueue(now, len(chunk))
                    if fate is None:
                        raise RuntimeError("link proxy downlink queue overflowed")
                    last = fate.delivered_ms
                    out.pending.append((last, chunk))
            out.wake.set()

    async def _deliver(self, d: _Direction, name: str) -> None:
        while True:
            if not d.pending:
                d.wake.clear()
                await d.wake.wait()
                continue
            wait = self._wall(d.pending[0][0]) - time.monotonic()
            if wait > _COARSE_S:
                # asyncio's timers overshoot by up to ~2 ms (epoll's whole-ms timeout, then a
                # re-sleep when it wakes a hair early): sleep coarsely to near the due time ...
                await asyncio.sleep(wait - _COARSE_S)
                continue
            if wait > 0:
                # ... and the rest in a thread, whose time.sleep is accurate to ~0.1 ms.
                await asyncio.get_running_loop().run_in_executor(self._timer, time.sleep, wait)
                continue
            now_ms = self.link_ms()
            batch: list[bytes] = []
            eof = False
            while d.pending and d.pending[0][0] <= now_ms:
                chunk = d.pending.popleft()[1]
                if chunk is None:
                    eof = True
                    break
                batch.append(chunk)
            if batch:
                data = b"".join(batch)
                d.writer.write(data)
                if name == "up":
                    self.stats.up_bytes += len(data)
                else:
                    self.stats.down_bytes += len(data)
                await d.writer.drain()
            if eof:
                if d.writer.can_write_eof():
                    d.writer.write_eof()
                return
