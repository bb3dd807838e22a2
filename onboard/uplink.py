"""The car's gRPC client to the cloud inference server.

Per task, at most one upload is in flight and one waits behind it; a newer frame replaces the
waiting one (newest first), and a waiting frame that can no longer make its deadline is dropped
before it is sent. Every call carries the task deadline both as a gRPC timeout (relative, needs no
shared clock) and as ``deadline_unix_us``. Calls never wait for a connection (wait_for_ready is
off): while the server is down they fail at once and the on-car result is used. The channel's
reconnect backoff is capped well under a second, and a Ping loop keeps the channel trying, so
cloud results resume quickly after the server returns.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import grpc

from carlink.clock import Clock
from carlink.detection import Detection
from carlink.onboard.cloud_access import AccessMonitor
from carlink.onboard.encoder import EncodedImage
from carlink.onboard.estimator import UplinkEstimator
from carlink.proto import inference_pb2 as pb
from carlink.proto import inference_pb2_grpc as pb_grpc
from carlink.network import PING_INTERVAL_S
from carlink.wire import detections_from_proto, serialize_infer_request, unix_us

log = logging.getLogger(__name__)

_INFER_METHOD = f"/{pb.DESCRIPTOR.services_by_name['Inference'].full_name}/Infer"
_ENCODING = {"jpeg": pb.ENCODING_JPEG, "png": pb.ENCODING_PNG, "raw": pb.ENCODING_RAW_BGR}

@dataclass(frozen=True, slots=True)
class UploadRequest:
    task: str
    model: str
    image: EncodedImage
    frame_id: int
    capture_time: float  # on the pipeline's clock
    deadline: float  # absolute, on the pipeline's clock


@dataclass(frozen=True, slots=True)
class UploadOutcome:
    """What became of one upload. ``detections`` is None unless it succeeded."""

    task: str
    frame_id: int
    model: str
    status: str  # "ok", "stale" (dropped before sending), "superseded", or a gRPC code name
    detections: list[Detection] | None = None
    sent_at: float | None = None  # pipeline clock
    done_at: float | None = None
    nbytes: int = 0
    server_ms: float = 0.0
    untrained: bool = False
    detail: str = ""


@dataclass
class _Slot:
    in_flight: UploadRequest | None = None
    queued: UploadRequest | None = None
    call: grpc.Future | None = field(default=None, repr=False)


@dataclass
class UplinkCounters:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    dropped_stale: int = 0
    superseded: int = 0
    probes: int = 0


class Uplink:
    """Sends uploads, enforces the per-task slots, reports outcomes to ``on_outcome``."""

    def __init__(
        self,
        channel: grpc.Channel,
        clock: Clock,
        estimator: UplinkEstimator,
        on_outcome: Callable[[UploadOutcome], None],
        ping_interval_s: float = PING_INTERVAL_S,
        probe_model: str = "noop",
        token: str | None = None,
        access: AccessMonitor | None = None,
    ) -> None:
        self._channel = channel
        self._stub = pb_grpc.InferenceStub(channel)
        # Infer with requests serialised by serialize_infer_request (image copied once).
        self._infer = channel.unary_unary(
            _INFER_METHOD, request_serializer=None, response_deserializer=pb.InferResponse.FromString,
        )
        self._clock = clock
        self._est = estimator
        self._on_outcome = on_outcome
        self._probe_model = probe_model
        # Bearer token for servers started with --token-file (sent with every call).
        self._md = (("authorization", f"Bearer {token}"),) if token else None
        # Told how every call ended: a refused car must say so, not run on-car in silence.
        self.access = access or AccessMonitor("cloud")
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._probe_call: grpc.Future | None = None
        self.counters = UplinkCounters()
        self.connected = False
        self._stop = threading.Event()
        self._ping_interval = ping_interval_s
        self._pinger = threading.Thread(target=self._ping_loop, name="uplink-ping", daemon=True)
        self._pinger.start()

    # -- uploads -------------------------------------------------------------------------------

    def submit(self, req: UploadRequest) -> None:
        """Send now if the task's slot is free, else wait behind the in-flight upload."""
        dropped: UploadRequest | None = None
        with self._lock:
            slot = self._slots.setdefault(req.task, _Slot())
            if slot.in_flight is None:
                send, slot.in_flight = req, req  # reserve the slot
            else:
                dropped, slot.queued, send = slot.queued, req, None
                if dropped is not None:
                    self.counters.superseded += 1
        if dropped is not None:
            self._report(UploadOutcome(dropped.task, dropped.frame_id, dropped.model, "superseded"))
        if send is not None:
            self._start(send)

    def pending(self) -> dict[str, tuple[int, int]]:
        """Per task: (uploads in flight, uploads queued); each is 0 or 1."""
        with self._lock:
            return {t: (int(s.in_flight is not None), int(s.queued is not None)) for t, s in self._slots.items()}

    def _start(self, req: UploadRequest) -> None:
        """Send ``req`` unless it is already too late to make its deadline."""
        while req is not None:
            now = self._clock.now()
            remaining = req.deadline - now
            if remaining <= self._est.rtt_s():
                with self._lock:
                    self.counters.dropped_stale += 1
                    slot = self._slots[req.task]
                    slot.in_flight = None
                    nxt, slot.queued = slot.queued, None
                    if nxt is not None:
                        slot.in_flight = nxt
                self._report(UploadOutcome(req.task, req.frame_id, req.model, "stale"))
                req = nxt
                continue
            header = pb.InferRequest(
                task=req.task,
                model=req.model,
                encoding=_ENCODING[req.image.codec],
                payload_size=pb.ImageSize(width=req.image.size[0], height=req.image.size[1]),
                original_size=pb.ImageSize(width=req.image.original_size[0], height=req.image.original_size[1]),
                frame_id=req.frame_id,
                # The wire carries Unix times: the clock's offsets from now, on the wall clock.
                capture_time_unix_us=unix_us(time.time() + req.capture_time - now),
                deadline_unix_us=unix_us(time.time() + remaining),
            )
            with self._lock:
                slot = self._slots[req.task]
                slot.in_flight = req
                self.counters.sent += 1
            try:
                call = self._infer.future(serialize_infer_request(header, req.image.payload), timeout=remaining,
                                          wait_for_ready=False, metadata=self._md)
            except Exception as exc:  # channel closed under us (shutdown)
                with self._lock:
                    self._slots[req.task].in_flight = None
                self._report(UploadOutcome(req.task, req.frame_id, req.model, "CANCELLED", detail=str(exc)))
                return
            with self._lock:
                slot.call = call
            call.add_done_callback(lambda f, r=req, t=now: self._done(r, t, f))
            return

    def _done(self, req: UploadRequest, sent_at: float, fut: grpc.Future) -> None:
        now = self._clock.now()
        nbytes = len(req.image.payload)
        outcome: UploadOutcome
        try:
            resp = fut.result()
        except grpc.RpcError as err:
            code = err.code()
            self.access.observe(code, err.details() or "")
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                self._est.record_timeout(nbytes, now - sent_at)
            outcome = UploadOutcome(
                req.task, req.frame_id, req.model, code.name if code else "UNKNOWN",
                sent_at=sent_at, done_at=now, nbytes=nbytes, detail=err.details() or "",
            )
        except grpc.FutureCancelledError:
            outcome = UploadOutcome(req.task, req.frame_id, req.model, "CANCELLED", sent_at=sent_at, done_at=now)
        else:
            self.access.observe(grpc.StatusCode.OK)
            server_ms = resp.timings.total_ms
            self._est.record_upload(nbytes, now - sent_at, server_ms / 1000.0, sent_at=sent_at)
            outcome = UploadOutcome(
                req.task, req.frame_id, req.model, "ok",
                detections=detections_from_proto(resp.detections),
                sent_at=sent_at, done_at=now, nbytes=nbytes, server_ms=server_ms,
                untrained=resp.untrained,
            )
        with self._lock:
            if outcome.status == "ok":
                self.counters.ok += 1
            else:
                self.counters.failed += 1
            slot = self._slots[req.task]
            slot.in_flight, slot.call = None, None
            nxt, slot.queued = slot.queued, None
            if nxt is not None:
                slot.in_flight = nxt  # reserve the slot before releasing the lock
        self._report(outcome)
        if nxt is not None and not self._stop.is_set():
            self._start(nxt)

    def _report(self, outcome: UploadOutcome) -> None:
        try:
            self._on_outcome(outcome)
        except Exception:  # a broken consumer must not kill gRPC's callback thread
            log.exception("outcome handler failed for task %s frame %s", outcome.task, outcome.frame_id)

    # -- probing -------------------------------------------------------------------------------

    def probe(self, nbytes: int, timeout_s: float = 1.0) -> None:
        """Send ``nbytes`` of padding (a blank raw image for the probe model) to measure capacity."""
        # A square-ish blank image: stays within the server's side-length limit for any size.
        height = max(1, math.isqrt(max(nbytes, 3) // 3))
        width = max(1, nbytes // (3 * height))
        msg = pb.InferRequest(
            task="_probe", model=self._probe_model, encoding=pb.ENCODING_RAW_BGR,
            payload=bytes(width * height * 3), payload_size=pb.ImageSize(width=width, height=height),
        )
        sent_at = self._clock.now()
        self.counters.probes += 1
        try:
            call = self._stub.Infer.future(msg, timeout=timeout_s, wait_for_ready=False, metadata=self._md)
        except Exception:
            self._est.probe_done()
            return
        self._probe_call = call

        def done(f: grpc.Future) -> None:
            try:
                resp = f.result()
                self._est.record_upload(len(msg.payload), self._clock.now() - sent_at,
                                        resp.timings.total_ms / 1000.0, sent_at=sent_at)
            except grpc.RpcError as err:
                self.access.observe(err.code(), err.details() or "")
                if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    self._est.record_timeout(len(msg.payload), self._clock.now() - sent_at)
            except grpc.FutureCancelledError:
                pass
            finally:
                self._est.probe_done()

        call.add_done_callback(done)

    # -- round trip ------------------------------------------------------------------------------

    def ping(self, timeout_s: float = 1.0) -> float | None:
        """One Ping; returns its round trip in seconds, None when the server did not answer."""
        t0 = self._clock.now()
        try:
            self._stub.Ping(pb.PingRequest(client_time_unix_us=unix_us()), timeout=timeout_s, metadata=self._md)
        except grpc.RpcError as err:
            self.connected = False
            self.access.observe(err.code(), err.details() or "")
            return None
        except ValueError:  # channel closed
            return None
        rtt = self._clock.now() - t0
        self.connected = True
        self.access.observe(grpc.StatusCode.OK)
        self._est.record_rtt(rtt)
        return rtt

    def _ping_loop(self) -> None:
        while not self._stop.wait(self._ping_interval):
            self.ping(timeout_s=max(self._ping_interval, 0.2))

    def close(self) -> None:
        """Cancel what is in flight and close the channel."""
        self._stop.set()
        with self._lock:
            calls = [s.call for s in self._slots.values() if s.call is not None]
            for s in self._slots.values():
                s.queued = None
        for c in calls + ([self._probe_call] if self._probe_call is not None else []):
            c.cancel()
        self._pinger.join(timeout=2.0)
        self._channel.close()

