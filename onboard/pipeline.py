"""One frame through the car: on-car models, estimate, allocation, encoding, upload, fusion.

``OnboardPipeline.step(frame)`` does the per-frame work on the caller's thread and returns as soon
as everything is handed off: on-car inference runs on its own worker thread, uploads are gRPC
futures, and a fuser thread emits each frame to the sink when every task has its result (the
cloud's if it came in time, else the car's). ``step`` time is therefore the onboard overhead:
allocation, encoding, request serialisation and the hand-off to gRPC.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from carlink.allocation import Allocation
from carlink.clock import Clock
from carlink.onboard.config import OnboardConfig
from carlink.onboard.encoder import STRIP_MIN_PIXELS, ParallelEncoder, encode_spec
from carlink.onboard.estimator import LinkEstimate, UplinkEstimator
from carlink.onboard.fuser import FrameResult, Fuser, TaskPlan
from carlink.onboard.metrics import OnboardMetrics
from carlink.onboard.planning import Planner
from carlink.onboard.policy import PlanInputs, backlog_bytes
from carlink.onboard.sources import CapturedFrame
from carlink.onboard.cloud_access import AccessMonitor, credentials_fingerprint, open_cloud_channel
from carlink.tasks import Task
from carlink.onboard.uplink import Uplink, UploadOutcome, UploadRequest
from carlink.zoo.base import Detector

log = logging.getLogger(__name__)
# One line per frame with the link estimate and the allocation: its own logger, so operators can
# route or silence it apart from the rest.
estimate_log = logging.getLogger("carlink.onboard.estimate")

# On-car work queued beyond this many frames makes step() wait: a model slower than the camera
# must slow the loop down rather than pile frames up in memory.
_MAX_ONBOARD_BACKLOG_FRAMES = 3
_IN_FLIGHT_FORGET_S = 30.0


class Sink(Protocol):
    def write(self, fr: FrameResult) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class StepReport:
    frame_id: int
    allocation: Allocation
    estimate: LinkEstimate
    encode_ms: float  # from the first image's encode starting to the last one's finishing
    step_ms: float  # the whole onboard overhead of this frame
    uploads: int
    probe_bytes: int


def onboard_backend(model: str, device: str, backend: str = "auto") -> str:
    """The zoo backend an on-car model runs on: an explicit choice as given; "auto" is OpenCV
    for the Darknet detectors unless the device is explicitly "cuda" (then torch), and the
    zoo's own choice for every other family."""
    from carlink.zoo.registry import get_spec

    if backend != "auto":
        return backend
    if get_spec(model).family == "darknet":
        return "torch" if device.strip().lower().startswith("cuda") else "opencv"
    return "auto"


def load_onboard_models(tasks: tuple[Task, ...], device: str, backend: str = "auto") -> dict[str, Detector]:
    """One detector per distinct on-car model name (shared by tasks: one call at a time)."""
    from carlink.zoo.registry import get_model

    models: dict[str, Detector] = {}
    for t in tasks:
        if t.on_car.model not in models:
            # HOG runs on the CPU only; forcing "cuda" for it is a config error the zoo reports.
            models[t.on_car.model] = get_model(t.on_car.model, device=device,
                                                backend=onboard_backend(t.on_car.model, device, backend))
    return models


def _make_encoder(cfg: OnboardConfig) -> ParallelEncoder:
    return ParallelEncoder(cfg.encoder.threads, STRIP_MIN_PIXELS if cfg.encoder.strips else None)


class OnboardPipeline:
    def __init__(
        self,
        cfg: OnboardConfig,
        tasks: tuple[Task, ...],
        clock: Clock,
        sink: Sink,
        models: dict[str, Detector],
        metrics: OnboardMetrics | None = None,
    ) -> None:
        self.clock = clock
        self.sink = sink
        self.metrics = metrics or OnboardMetrics()
        self._swap_lock = threading.Lock()
        self._apply(cfg, tasks, models, self._planner(cfg, tasks, models))
        self.estimator = UplinkEstimator(cfg.estimator, clock)
        self.encoder = _make_encoder(cfg)
        self.fuser = Fuser()
        self._sink_lock = threading.Lock()
        self.sink_failing: str | None = None  # the sink's last error while its writes fail
        self.sink_lost = 0  # results no sink could write, across reloads
        # One across reloads: the refused state is the car's, whichever channel saw it.
        self.access = AccessMonitor(cfg.cloud.address, self._cloud_refused, self._cloud_access_changed)
        self.uplink = self._make_uplink(cfg)
        self._onboard_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onboard-model")
        self._onboard_futures: deque[Future] = deque()
        # Uploads handed to the uplink and not yet answered: (task, frame) -> (sent at, bytes).
        self._in_flight: dict[tuple[str, int], tuple[float, int]] = {}
        self._in_flight_lock = threading.Lock()
        self._stop = threading.Event()
        self._emitted = 0
        self._fuse_thread = threading.Thread(target=self._fuse_loop, name="fuser", daemon=True)
        self._fuse_thread.start()

    # -- configuration -------------------------------------------------------------------------

    @staticmethod
    def _planner(cfg: OnboardConfig, tasks: tuple[Task, ...], models: dict[str, Detector]) -> Planner:
        """The planner of a config; ValueError when a task's on-car model is not loaded."""
        missing = {t.on_car.model for t in tasks} - set(models)
        if missing:
            raise ValueError(f"no loaded on-car model for {sorted(missing)}")
        return Planner(tasks, cfg.allocator_config(), cfg.policy.settings())

    def _apply(self, cfg: OnboardConfig, tasks: tuple[Task, ...], models: dict[str, Detector],
               planner: Planner) -> None:
        with self._swap_lock:
            self.cfg, self.tasks, self.models, self.planner = cfg, tasks, models, planner

    def _make_uplink(self, cfg: OnboardConfig) -> Uplink:
        """An uplink on a new channel to the config's cloud (ValueError names a bad token, certificate
        or key file by its key)."""
        fingerprint = credentials_fingerprint(cfg)
        channel, token = open_cloud_channel(cfg)
        self._cloud_fingerprint = fingerprint
        self.access.address = cfg.cloud.address
        return Uplink(channel, self.clock, self.estimator, self._on_upload, cfg.cloud.ping_interval_s,
                      cfg.estimator.probe_model, token=token, access=self.access)

    def _cloud_refused(self, code: str) -> None:
        self.metrics.cloud_refusals.labels(code=code).inc()

    def _cloud_access_changed(self, refused: str | None) -> None:
        self.metrics.cloud_refused.set(0 if refused is None else 1)

    def reload(self, cfg: OnboardConfig, tasks: tuple[Task, ...], models: dict[str, Detector],
               sink: Sink | None = None) -> None:
        """Swap config, tasks and models between frames (SIGHUP); frames in flight finish as planned.

        A changed ``[cloud]`` section, or a token, CA, certificate or key file whose content changed,
        gets a new channel from the next frame on; uploads still in
        flight on the old one are cancelled, and their frames use the on-car results. ``sink``,
        when given (the caller opened it), takes over from the next frame emitted and the old one
        is closed. A changed ``[encoder]`` gets a new pool from the next frame on (the old one is
        idle between frames: step() encodes on the caller's thread, the same as reload()'s).
        """
        planner = self._planner(cfg, tasks, models)  # first: what can fail leaves everything as it was
        old_uplink = None
        if credentials_fingerprint(cfg) != self._cloud_fingerprint:
            new = self._make_uplink(cfg)  # a bad token file raises here, before any swap
            new.counters = self.uplink.counters  # one count of uploads across channels
            old_uplink, self.uplink = self.uplink, new
            log.info("cloud now %s", cfg.cloud.address)
        encoder_changed = cfg.encoder != self.cfg.encoder
        self._apply(cfg, tasks, models, planner)
        self.estimator.reconfigure(cfg.estimator)
        if encoder_changed:
            old_encoder, self.encoder = self.encoder, _make_encoder(cfg)
            old_encoder.close()
            log.info("encoder now %d threads, strips %s", cfg.encoder.threads, cfg.encoder.strips)
        if sink is not None:
            with self._sink_lock:
                old_sink, self.sink = self.sink, sink
            old_sink.close()
        if old_uplink is not None:
            # Closing joins the old ping thread: not on the frame loop.
            threading.Thread(target=old_uplink.close, name="uplink-close", daemon=True).start()

    # -- per frame -----------------------------------------------------------------------------

    def step(self, frame: CapturedFrame) -> StepReport:
        t0 = time.perf_counter()
        with self._swap_lock:
            cfg, tasks, models, planner = self.cfg, self.tasks, self.models, self.planner
        capture = frame.capture_time
        est = self.estimator.estimate()
        with self._in_flight_lock:
            # An answer that never came (cancelled at a reload) must not leak: forget old entries.
            for key in [k for k, (t, _) in self._in_flight.items() if capture - t > _IN_FLIGHT_FORGET_S]:
                del self._in_flight[key]
            backlog = backlog_bytes(self._in_flight.values(), self.clock.now(), est.bandwidth_bps)
        alloc = planner.plan(PlanInputs(self.estimator.bandwidth_samples(), est.rtt_s * 1000.0, backlog,
                                        estimate_bps=est.bandwidth_bps))
        margin = cfg.cloud.response_margin_ms / 1000.0
        plans: dict[str, TaskPlan] = {}
        jobs: dict[str, tuple] = {}
        for t in tasks:
            image = frame.images.get(t.camera)
            if image is None:
                log.warning("frame %d has no %s image; task %s skipped", frame.frame_id, t.camera, t.name)
                continue
            choice = alloc.choice(t.name)
            hard = capture + t.deadline_ms / 1000.0
            plans[t.name] = TaskPlan(hard - margin, hard, choice.option, t.on_car.id, not choice.on_car)
            if not choice.on_car:
                jobs[t.name] = (image, encode_spec(t.option(choice.option)))
        info = {
            "origin": frame.origin,  # the record, image file or device the frame came from
            "estimate": {
                "bandwidth_bps": round(est.bandwidth_bps, 1), "rtt_ms": round(est.rtt_s * 1000.0, 3),
                "samples": est.samples, "stale": est.stale,
            },
            "allocation": {
                "expected_utility": round(alloc.expected_utility, 6), "used_bps": round(alloc.used_bps, 1),
                "solver": alloc.solver, "solve_ms": round(alloc.solve_time_ms, 3),
            },
        }
        self.fuser.open_frame(frame.frame_id, capture, plans, info)
        self._run_onboard(frame, tasks, models, set(plans))
        te = time.perf_counter()
        encode_ms, uploads = 0.0, 0
        # Each image goes to the uplink as soon as it is encoded, while the others still encode.
        for name, enc in self.encoder.encode_as_completed(jobs):
            encode_ms = (time.perf_counter() - te) * 1000.0
            model = next(t for t in tasks if t.name == name).option(plans[name].option).model
            with self._in_flight_lock:
                self._in_flight[(name, frame.frame_id)] = (self.clock.now(), len(enc.payload))
            self.uplink.submit(UploadRequest(name, model, enc, frame.frame_id, capture, plans[name].deadline))
            uploads += 1
        probe = self.estimator.probe_bytes(alloc.used_bps)
        if probe:
            self.uplink.probe(probe)
        step_ms = (time.perf_counter() - t0) * 1000.0
        self._record(frame, tasks, alloc, est, encode_ms, jobs)
        estimate_log.info(
            "frame=%d bandwidth_bps=%.0f rtt_ms=%.1f samples=%d stale=%s planned_bps=%.0f used_bps=%.0f "
            "uploads=%d probe_bytes=%d solver=%s solve_ms=%.2f step_ms=%.2f",
            frame.frame_id, est.bandwidth_bps, est.rtt_s * 1000, est.samples, est.stale, alloc.bandwidth_bps,
            alloc.used_bps, uploads, probe, alloc.solver, alloc.solve_time_ms, step_ms,
        )
        return StepReport(frame.frame_id, alloc, est, encode_ms, step_ms, uploads, probe)

    def _run_onboard(self, frame: CapturedFrame, tasks, models, names: set[str]) -> None:
        while len(self._onboard_futures) >= _MAX_ONBOARD_BACKLOG_FRAMES:
            self._onboard_futures.popleft().result()
        fid = frame.frame_id

        def run() -> None:
            for t in tasks:
                if t.name not in names:
                    continue
                try:
                    dets = models[t.on_car.model].detect(frame.images[t.camera])
                except Exception:
                    log.exception("on-car model %s failed on frame %d", t.on_car.model, fid)
                    dets = []
                self.fuser.onboard_result(fid, t.name, dets, self.clock.now())

        self._onboard_futures.append(self._onboard_pool.submit(run))

    def _record(self, frame, tasks, alloc: Allocation, est: LinkEstimate, encode_ms: float, jobs) -> None:
        m = self.metrics
        m.frames.inc()
        m.estimate_bps.set(est.bandwidth_bps)
        m.rtt_ms.set(est.rtt_s * 1000.0)
        m.solve_ms.observe(alloc.solve_time_ms)
        if jobs:
            m.encode_ms.observe(encode_ms)
        for t in tasks:
            m.set_choice(t.name, [o.id for o in t.options], alloc.choice(t.name).option)

    # -- results -------------------------------------------------------------------------------

    def _on_upload(self, outcome: UploadOutcome) -> None:
        with self._in_flight_lock:
            self._in_flight.pop((outcome.task, outcome.frame_id), None)
        self.metrics.uploads.labels(status=outcome.status).inc()
        self.fuser.cloud_outcome(outcome)

    def _fuse_loop(self) -> None:
        while True:
            stopping = self._stop.is_set()
            now = self.clock.now()
            for fr in self.fuser.poll(now, flush=stopping):
                self._emit(fr)
            if stopping and self.fuser.open_frames() == 0:
                return
            wake = self.fuser.next_wakeup()
            timeout = 0.05 if wake is None else min(max(wake - self.clock.now(), 0.0), 0.05)
            with self.fuser.changed:
                self.fuser.changed.wait(timeout if timeout > 0 else 0.0005)

    def _emit(self, fr: FrameResult) -> None:
        m = self.metrics
        for name, r in fr.tasks.items():
            m.results.labels(task=name, source=r.source).inc()
            if not r.deadline_met:
                m.deadline_misses.labels(task=name).inc()
        sent = self.uplink.counters.sent
        if sent:
            m.cloud_hit_rate.set(self.fuser.counters.cloud_used / sent)
        try:
            with self._sink_lock:
                self.sink.write(fr)
        except OSError as exc:  # the disk is full, the pipe closed: counted, said once per change
            m.sink_errors.inc()
            self.sink_lost += 1
            if not self.sink_failing:
                log.error("%s; results are lost until it writes again (frame %d)", exc, fr.frame_id)
            self.sink_failing = str(exc)
        except Exception:
            m.sink_errors.inc()
            self.sink_lost += 1
            log.exception("sink failed on frame %d", fr.frame_id)
        else:
            if self.sink_failing:
                log.warning("sink writes again (frame %d)", fr.frame_id)
                self.sink_failing = None
        self._emitted += 1

    @property
    def emitted(self) -> int:
        return self._emitted

    def close(self, timeout_s: float = 1.5) -> None:
        """Finish: stop uploads, resolve the open frames (on-car results), flush the sink."""
        t_end = time.monotonic() + timeout_s
        self.uplink.close()
        self._onboard_pool.shutdown(wait=False, cancel_futures=False)
        self._stop.set()
        with self.fuser.changed:
            self.fuser.changed.notify_all()
        self._fuse_thread.join(timeout=max(0.0, t_end - time.monotonic()))
        if self._fuse_thread.is_alive():
            log.warning("%d frames still open at shutdown (on-car model still running)", self.fuser.open_frames())
        self.encoder.close()
        with self._sink_lock:
            self.sink.close()
