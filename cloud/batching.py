"""One queue per model, served by worker threads that run the model, batching where it can.

A detector runs one call at a time (see carlink.zoo.base.Detector), so each worker owns one
detector instance. Workers of batchable (torch) models take up to ``max_batch`` queued requests
at once, waiting at most ``batch_wait_s`` after the first for more to arrive: under load the
batch fills at once, when idle a lone request waits no longer than the bound. A request whose
deadline has passed by the time a worker reaches it is failed with DeadlineExpired and the model
never sees it.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from carlink.detection import Detection
from carlink.zoo.base import Detector, ModelSpec

log = logging.getLogger("carlink.cloud.batching")


class DeadlineExpired(Exception):
    """The request's deadline passed while it waited for the model."""


class RunnerClosed(Exception):
    """The model runner shut down before serving the request."""


@dataclass(frozen=True, slots=True)
class JobResult:
    detections: list[Detection]
    queue_wait_s: float
    inference_s: float
    batch_size: int


@dataclass(slots=True)
class _Job:
    image: np.ndarray
    deadline: float | None  # monotonic seconds; None: no deadline
    enqueued: float
    future: Future = field(default_factory=Future)


def _forget_image(job: _Job) -> None:
    job.image = None  # type: ignore[assignment]


class RuntimeStats:
    """Recent model-call durations, for the p50/p99 that ListModels reports."""

    def __init__(self, window: int = 2048) -> None:
        self._samples: collections.deque[float] = collections.deque(maxlen=window)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._samples.append(seconds)

    def percentiles_ms(self) -> tuple[float, float, int]:
        with self._lock:
            data = np.fromiter(self._samples, dtype=np.float64)
        if data.size == 0:
            return 0.0, 0.0, 0
        p50, p99 = np.percentile(data, [50, 99]) * 1e3
        return float(p50), float(p99), int(data.size)


CallObserver = Callable[[str, float, int], None]  # (model, model-call seconds, batch size), once per call
WaitObserver = Callable[[str, float], None]  # (model, queue wait seconds), once per request
DropObserver = Callable[[str, str], None]  # (model, reason)


class ModelRunner:
    """The queue and worker threads of one served model."""

    def __init__(self, detectors: Sequence[Detector], *, max_batch: int = 1, batch_wait_s: float = 0.0,
                 on_call: CallObserver | None = None, on_wait: WaitObserver | None = None,
                 on_drop: DropObserver | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not detectors:
            raise ValueError("a model runner needs at least one detector instance")
        self.detectors = list(detectors)
        self.spec: ModelSpec = detectors[0].spec
        self.max_batch = max_batch if self.spec.batchable else 1
        self.batch_wait_s = batch_wait_s
        self.stats = RuntimeStats()
        self._on_call = on_call
        self._on_wait = on_wait
        self._on_drop = on_drop
        self._clock = clock
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, args=(d,), name=f"model-{self.spec.name}-{i}", daemon=True)
            for i, d in enumerate(self.detectors)
        ]
        for t in self._threads:
            t.start()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def untrained(self) -> bool:
        return not self.detectors[0].pretrained

    @property
    def device(self) -> str:
        return getattr(self.detectors[0], "device", "cpu")

    def submit(self, image: np.ndarray, deadline: float | None) -> Future:
        """Queue one image; the future gives a JobResult or raises DeadlineExpired/RunnerClosed."""
        job = _Job(image, deadline, self._clock())
        # A job cancelled while queued lets go of its image at once: the caller's pixel budget
        # counts it free from then on.
        job.future.add_done_callback(lambda f: f.cancelled() and _forget_image(job))
        if self._closed:
            job.future.set_exception(RunnerClosed(f"model {self.name} is shutting down"))
            return job.future
        self._queue.put(job)
        return job.future

    def close(self, timeout: float = 5.0) -> None:
        """Stop the workers after the jobs already queued; fail whatever is left."""
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout)
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(RunnerClosed(f"model {self.name} shut down"))

    # -- worker side ----------------------------------------------------------------------------

    def _work(self, detector: Detector) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                self._run(detector, batch)

    def _next_batch(self) -> list[_Job] | None:
        """Jobs for one model call ([] when all were dropped), or None to stop."""
        first = self._queue.get()
        if first is None:
            return None
        jobs = [first]
        if self.max_batch > 1:
            until = self._clock() + self.batch_wait_s
            while len(jobs) < self.max_batch:
                try:
                    remaining = until - self._clock()
                    job = self._queue.get_nowait() if remaining <= 0 else self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
                if job is None:  # a stop request: hand it back for this or another worker
                    self._queue.put(None)
                    break
                jobs.append(job)
        return self._admit(jobs)

    def _admit(self, jobs: list[_Job]) -> list[_Job]:
        now = self._clock()
        kept = []
        for job in jobs:
            if not job.future.set_running_or_notify_cancel():  # the caller gave up already
                self._dropped("cancelled")
                continue
            if job.deadline is not None and now >= job.deadline:
                late_ms = (now - job.deadline) * 1e3
                _forget_image(job)
                job.future.set_exception(DeadlineExpired(
                    f"deadline passed {late_ms:.1f} ms before model {self.name} could run it"))
                self._dropped("deadline")
                continue
            kept.append(job)
        return kept

    def _run(self, detector: Detector, jobs: list[_Job]) -> None:
        start = self._clock()
        try:
            if len(jobs) == 1:
                results = [detector.detect(jobs[0].image)]
            else:
                results = detector.detect_batch([j.image for j in jobs])
        except Exception as exc:  # the model failed: every caller in the batch hears why
            log.exception("model %s failed on a batch of %d", self.name, len(jobs))
            for job in jobs:
                _forget_image(job)
                job.future.set_exception(exc)
            return
        for job in jobs:
            _forget_image(job)  # before the callers hear: they count the image's memory free then
        elapsed = self._clock() - start
        self.stats.add(elapsed)
        if self._on_call:
            self._on_call(self.name, elapsed, len(jobs))
        for job, dets in zip(jobs, results):
            wait = start - job.enqueued
            if self._on_wait:
                self._on_wait(self.name, wait)
            job.future.set_result(JobResult(dets, wait, elapsed, len(jobs)))

    def _dropped(self, reason: str) -> None:
        if self._on_drop:
            self._on_drop(self.name, reason)
