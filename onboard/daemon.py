"""The onboard daemon's life: start-up checks, the frame loop, signals, systemd, shutdown.

* Start-up loads and validates everything before READY=1: config, profile, on-car models, sink,
  metrics endpoint and frame source. Any problem raises StartupError with a message naming the
  file and key, and the daemon exits non-zero before touching the road.
* SIGHUP: config, profile, models and a changed frame source are prepared on a helper thread while
  frames keep flowing, then swapped in between two frames; every section takes effect (see
  :meth:`OnboardDaemon._apply_reload`). A bad new config is logged and the old one kept whole.
* SIGTERM / SIGINT: the loop stops at once (waits are interruptible), uploads are cancelled, the
  frames still open are resolved with their on-car results, and the process exits 0 within 2 s.
* WATCHDOG=1 goes out from the frame loop itself, so a wedged loop is restarted by systemd.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from carlink.clock import Clock, WallClock
from carlink.onboard.cloud_access import open_cloud_channel
from carlink.onboard.config import ConfigError, MetricsConfig, OnboardConfig, load_config
from carlink.onboard.cpu_latency import CpuLatencyError, CpuLatencyRequest
from carlink.onboard.metrics import OnboardMetrics
from carlink.onboard.pipeline import OnboardPipeline, load_onboard_models
from carlink.onboard.planning import ProfileError, load_onboard_tasks
from carlink.onboard.sink import JsonLinesSink
from carlink.onboard.sources import CapturedFrame, FrameSourceBase, SkippedInput, SourceError, log_skipped, open_source
from carlink.onboard.systemd import SystemdNotifier, watchdog_interval_s
from carlink.tasks import Task
from carlink.zoo.base import Detector

log = logging.getLogger("carlink.onboard")

STOP_BUDGET_S = 1.5  # of the 2 s SIGTERM promise, what the shutdown itself may take


class DaemonError(RuntimeError):
    """The daemon failed; the message names the file and key (the CLI prints it, exit code 2)."""


class StartupError(DaemonError):
    """The daemon cannot start: bad config, missing or corrupt profile, unknown model..."""


class ResultsLostError(DaemonError):
    """The daemon ran to its end, but the sink could not write every result."""


@dataclass
class _Loaded:
    cfg: OnboardConfig
    tasks: tuple[Task, ...]
    models: dict[str, Detector]
    # A reload's new frame source, checked but not started; None when [source] did not change.
    source: FrameSourceBase | None = None


def _device(cfg: OnboardConfig) -> str:
    from carlink.zoo.devices import resolve_device

    return resolve_device(cfg.daemon.device)


def load_everything(config_path: Path, reuse: dict[str, Detector] | None = None,
                    reuse_device: str | None = None, reuse_backend: str = "auto") -> _Loaded:
    """Config, profile and on-car models; StartupError names what is wrong.

    ``reuse``: models already loaded for ``[daemon] device = reuse_device`` (with the backend
    the running config names), kept instead of loaded again when the config still asks for them.
    """
    try:
        cfg = load_config(config_path)
        tasks = load_onboard_tasks(cfg.profile_path, cfg.tasks)
    except (ConfigError, ProfileError) as exc:
        raise StartupError(str(exc)) from None
    try:
        _device(cfg)  # "cuda" on a machine without a GPU fails here, by name
        same = cfg.daemon.device == reuse_device and cfg.daemon.backend == reuse_backend
        reuse = reuse if reuse and same else {}
        need = [t for t in tasks if t.on_car.model not in reuse]
        models = {k: v for k, v in reuse.items() if k in {t.on_car.model for t in tasks}}
        # The zoo resolves "auto" per model: torch models go to the GPU, HOG stays on the CPU.
        models.update(load_onboard_models(tuple(need), cfg.daemon.device, cfg.daemon.backend))
    except (KeyError, ValueError, RuntimeError, FileNotFoundError) as exc:
        raise StartupError(f"{config_path}: on-car models: {exc}") from None
    return _Loaded(cfg, tasks, models)


def _cameras(tasks: tuple[Task, ...]) -> set[str]:
    return {t.camera for t in tasks}


def checked_source(cfg: OnboardConfig, tasks: tuple[Task, ...], clock: Clock,
                   stop: threading.Event | None = None, where: Path | str = "<config>") -> FrameSourceBase:
    """The config's frame source, checked (StartupError names the file and the path) but not started."""
    src_cfg = cfg.source
    if src_cfg.path:
        src_cfg = src_cfg.model_copy(update={"path": str(cfg.resolve(src_cfg.path))})
    source = open_source(src_cfg, clock, _cameras(tasks), stop)
    try:
        source.check()
    except SourceError as exc:
        raise StartupError(f"{where}: source: {exc}") from None
    return source


def camera_warnings(source: FrameSourceBase, tasks: tuple[Task, ...]) -> list[str]:
    """One line per task whose camera the (checked) source never delivers: such a task would
    silently run on nothing."""
    have = source.available_cameras()
    if have is None:
        return []
    offered = ", ".join(sorted(have)) or "no camera images"
    return [f"task {t.name!r} watches camera {t.camera}, which source {source.cfg.path or source.cfg.kind} "
            f"does not have (it has {offered}); the task will never run" for t in tasks if t.camera not in have]


def check_sink(cfg: OnboardConfig, where: Path | str) -> None:
    """StartupError unless the sink file can be opened for appending, as `run` will (a file that
    does not exist yet is created and removed again)."""
    if cfg.sink.path == "-":
        return
    path = cfg.resolve(cfg.sink.path)
    try:
        if path.exists():
            with open(path, "a", encoding="utf-8"):
                pass
        else:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            path.unlink()
    except OSError as exc:
        raise StartupError(f"{where}: sink.path: cannot write {path}: {exc.strerror or exc}") from None


def preflight(cfg: OnboardConfig, tasks: tuple[Task, ...], where: Path | str) -> list[str]:
    """What `run` would refuse, checked without starting anything (check-config): the device, the
    frame source (each file read to its first good record), the sink, the cloud's credentials.
    StartupError names the key; returns warnings (tasks watching a camera the source lacks)."""
    if cfg.daemon.device == "cuda":  # "auto" and "cpu" always resolve
        try:
            _device(cfg)
        except ImportError:
            raise StartupError(f"{where}: daemon.device: 'cuda' needs torch, which is not installed") from None
        except (ValueError, RuntimeError) as exc:
            raise StartupError(f"{where}: daemon.device: {exc}") from None
    source = checked_source(cfg, tasks, WallClock(), where=where)
    try:
        warnings = camera_warnings(source, tasks)
    finally:
        source.close()
    check_sink(cfg, where)
    try:
        channel, _token = open_cloud_channel(cfg)
    except ValueError as exc:
        raise StartupError(f"{where}: {exc}") from None
    channel.close()
    return warnings


class OnboardDaemon:
    def __init__(self, config_path: str | Path, clock: Clock | None = None, notifier: SystemdNotifier | None = None) -> None:
        self.config_path = Path(config_path)
        self.clock = clock or WallClock()
        self.notifier = notifier or SystemdNotifier()
        self.stop_event = threading.Event()
        self._reload_requested = threading.Event()
        self._pending: _Loaded | Exception | None = None
        self._reload_lock = threading.Lock()
        self.pipeline: OnboardPipeline | None = None
        self.metrics = OnboardMetrics()
        self.metrics_port: int | None = None
        self.source: FrameSourceBase | None = None
        self._frames: Iterator[CapturedFrame] | None = None
        self.frames = 0
        self.reloads = 0
        self.failed_reloads = 0
        self._cpu_latency: CpuLatencyRequest | None = None
        self._source_problem: str | None = None  # set while the source cannot be read
        self._reported_refusal: str | None = None  # the cloud's refusal last told to systemd
        self._wd_interval: float | None = None
        self._last_wd = 0.0

    # -- signals -------------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
        signal.signal(signal.SIGINT, lambda *_: self.request_stop())
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload())

    def request_stop(self) -> None:
        self.stop_event.set()

    def request_reload(self) -> None:
        # Signal handlers must return fast: the loading happens on a helper thread.
        if not self._reload_requested.is_set():
            self._reload_requested.set()
            threading.Thread(target=self._prepare_reload, name="reload", daemon=True).start()

    def _prepare_reload(self) -> None:
        """Load and check everything the new config names, off the frame loop."""
        self.notifier.reloading()
        running = self.pipeline.cfg if self.pipeline else None
        try:
            # Models are kept across a reload unless they must move to another device.
            loaded: _Loaded | Exception = load_everything(
                self.config_path, reuse=self.pipeline.models if self.pipeline else None,
                reuse_device=running.daemon.device if running else None,
                reuse_backend=running.daemon.backend if running else "auto",
            )
            if running is not None and loaded.cfg.source != running.source:
                loaded.source = self._open_source(loaded.cfg, loaded.tasks)
        except Exception as exc:  # kept to report; the running config stays
            loaded = exc
        with self._reload_lock:
            self._pending = loaded

    def _apply_reload(self) -> None:
        """Swap in a prepared reload between two frames; on any failure nothing changes.

        Every section applies: [daemon] (profile, device: models re-loaded there, watchdog,
        status interval, CPU wake-up limit), [tasks], [policy], [allocator], [estimator],
        [encoder] (a new encoder pool), [cloud] (a new channel), [sink] (the new file opened
        first), [metrics] (the endpoint moved) and [source] (the new source continues the frame
        numbering; a source that stays only learns which cameras the new tasks watch).
        """
        with self._reload_lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        self._reload_requested.clear()
        if isinstance(pending, Exception):
            self._reload_failed(pending)
            return
        old = self.pipeline.cfg
        sink = None
        try:
            sink = self._open_sink(pending.cfg) if pending.cfg.sink != old.sink else None
            self._move_metrics(old.metrics, pending.cfg.metrics)
            try:
                self.pipeline.reload(pending.cfg, pending.tasks, pending.models, sink)
            except ValueError:
                self._move_metrics(pending.cfg.metrics, old.metrics)
                raise
        except (StartupError, ValueError) as exc:
            if sink is not None:
                sink.close()
            if pending.source is not None:
                pending.source.close()
            self._reload_failed(exc)
            return
        if pending.source is not None:
            self._switch_source(pending.source)
        else:
            self.source.cameras = _cameras(pending.tasks)
        for warning in camera_warnings(self.source, pending.tasks):
            log.warning("%s: %s", self.config_path, warning)
        try:
            self._hold_cpu_latency(pending.cfg)
        except CpuLatencyError as exc:
            log.error("daemon.cpu_wakeup_latency_us: %s; keeping the previous limit", exc.strerror)
        self.reloads += 1
        log.info("reloaded config=%s tasks=%s", self.config_path, [t.name for t in pending.tasks])
        self.notifier.notify(READY=1, STATUS=f"reloaded; {self.frames} frames")

    def _reload_failed(self, exc: Exception) -> None:
        self.failed_reloads += 1
        log.error("reload failed, keeping the running config: %s", exc)
        self.notifier.notify(READY=1, STATUS=f"reload failed: {exc}".replace("\n", " ")[:200])

    # -- run -----------------------------------------------------------------------------------

    def run(self) -> int:
        """Start, loop until the source ends or a stop is requested, shut down. Returns 0."""
        loaded = load_everything(self.config_path)
        cfg = loaded.cfg
        sink = None
        try:
            self.source = self._open_source(cfg, loaded.tasks)
            self._move_metrics(MetricsConfig(), cfg.metrics)
            sink = self._open_sink(cfg)
            try:
                self._hold_cpu_latency(cfg)
            except CpuLatencyError as exc:
                raise StartupError(f"{self.config_path}: daemon.cpu_wakeup_latency_us: {exc.strerror}") from None
            try:
                self.pipeline = OnboardPipeline(cfg, loaded.tasks, self.clock, sink, loaded.models, self.metrics)
            except ValueError as exc:  # e.g. an unreadable cloud.token_file; the message names the key
                raise StartupError(f"{self.config_path}: {exc}") from None
        except StartupError:
            if sink is not None:
                sink.close()
            self._stop_metrics()
            self._release_cpu_latency()
            raise
        self._frames = iter(self.source)
        self._wd_interval = watchdog_interval_s()  # systemd's WatchdogSec: fixed for the process's life
        self._last_wd = time.monotonic()
        for warning in camera_warnings(self.source, loaded.tasks):
            log.warning("%s: %s", self.config_path, warning)
        self.notifier.ready(f"running {len(loaded.tasks)} tasks; cloud {cfg.cloud.address}")
        log.info("started tasks=%s cloud=%s source=%s", [t.name for t in loaded.tasks], cfg.cloud.address, cfg.source.kind)
        try:
            while not self.stop_event.is_set():
                if self._pending is not None:
                    self._apply_reload()
                try:
                    frame = next(self._frames, None)
                except Exception as exc:  # a source never ends the daemon: degraded, retried
                    self._source_failed(exc)
                    continue
                if frame is None or self.stop_event.is_set():
                    break
                if self._source_problem is not None:
                    self._source_recovered()
                # Numbered by the daemon, so a source switched at SIGHUP continues the ids.
                rep = self.pipeline.step(dataclasses.replace(frame, frame_id=self.frames))
                self.frames += 1
                self._keep_alive()
                self._report_access()
                if self.frames % self.pipeline.cfg.daemon.status_every_frames == 0:
                    self.notifier.status(self._status_line(rep))
        finally:
            self.notifier.stopping()
            self._close_source()
            self.pipeline.close(STOP_BUDGET_S)
            self._stop_metrics()
            self._release_cpu_latency()
            log.info("stopped frames=%d emitted=%d", self.frames, self.pipeline.emitted)
        self._check_results_written()
        return 0

    def _check_results_written(self) -> None:
        """ResultsLostError when the sink failed to write some results or to close: the run
        ended, but not every result reached the sink, and the exit code must say so."""
        pipeline = self.pipeline
        close_error = getattr(pipeline.sink, "close_error", None)
        if pipeline.sink_lost or close_error:
            raise ResultsLostError(
                f"{self.config_path}: sink.path {pipeline.cfg.sink.path}: {pipeline.sink_lost} of "
                f"{pipeline.emitted} results could not be written ({pipeline.sink_failing or close_error})")

    def _keep_alive(self) -> None:
        """WATCHDOG=1 when due (systemd's WatchdogSec, and [daemon] watchdog on)."""
        wd = self._wd_interval if self.pipeline.cfg.daemon.watchdog else None
        if wd is not None and time.monotonic() - self._last_wd >= wd:
            self.notifier.watchdog()
            self._last_wd = time.monotonic()

    def _report_access(self) -> None:
        """STATUS= as soon as the cloud starts or stops refusing the car (the monitor logs and counts)."""
        refused = self.pipeline.access.refused
        if (refused is None) == (self._reported_refusal is None):
            return
        self._reported_refusal = refused
        if refused is not None:
            self.notifier.status(f"CLOUD REFUSED: {refused}; on-car only; {self.frames} frames"[:400])
        else:
            self.notifier.status(f"cloud accepts calls again; {self.frames} frames")

    # -- an unreadable source: degraded, reported, retried ---------------------------------------

    def _source_failed(self, exc: Exception) -> None:
        """Report the source unreadable (log once per state change, metric, STATUS), wait, retry."""
        retry_s = self.pipeline.cfg.source.retry_s
        detail = str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"
        self.metrics.source_failures.inc()
        if self._source_problem is None:
            log.error("source degraded: %s; on-car and cloud idle until it reads again (retry every %g s)",
                      detail, retry_s, exc_info=not isinstance(exc, SourceError))
            self.metrics.source_degraded.set(1)
        else:
            log.debug("source still unreadable: %s", detail)
        self._source_problem = detail
        self.notifier.status(f"DEGRADED: source unreadable: {detail}; retrying every {retry_s:g} s; "
                             f"{self.frames} frames"[:400])
        self._wait(retry_s)
        self._close_frames()
        self._frames = iter(self.source)  # the next frame opens the source afresh

    def _source_recovered(self) -> None:
        log.info("source readable again (was: %s)", self._source_problem)
        self._source_problem = None
        self.metrics.source_degraded.set(0)
        self.notifier.status(f"source readable again; {self.frames} frames")

    def _source_skipped(self, skipped: SkippedInput) -> None:
        self.metrics.source_skipped.labels(reason=skipped.reason).inc()
        log_skipped(skipped)

    def _wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, keeping the watchdog fed; a stop or a reload cuts it short."""
        end = time.monotonic() + seconds
        while not self.stop_event.is_set() and self._pending is None:
            left = end - time.monotonic()
            if left <= 0:
                return
            self.stop_event.wait(min(left, 0.25))
            self._keep_alive()
            self._report_access()

    # -- parts that a reload can replace ---------------------------------------------------------

    def _open_source(self, cfg: OnboardConfig, tasks: tuple[Task, ...]) -> FrameSourceBase:
        source = checked_source(cfg, tasks, self.clock, self.stop_event, self.config_path)
        source.on_skip = self._source_skipped
        return source

    def _switch_source(self, new: FrameSourceBase) -> None:
        """Close the running source (its device or file is released first) and read from ``new``."""
        self._close_source()
        self.source, self._frames = new, iter(new)
        log.info("source now %s (frames continue from %d)", new.cfg.kind, self.frames)

    def _close_frames(self) -> None:
        if self._frames is not None and hasattr(self._frames, "close"):
            self._frames.close()  # a generator paused mid-file: its files close now

    def _close_source(self) -> None:
        self._close_frames()
        if self.source is not None:
            self.source.close()

    def _move_metrics(self, old: MetricsConfig, new: MetricsConfig) -> None:
        """Serve /metrics where ``new`` says; on failure the endpoint stays where ``old`` put it."""
        if new == old and (self.metrics_port is not None or not new.port):
            return
        self._stop_metrics()
        try:
            if new.port:
                self.metrics_port = self.metrics.serve(new.port, new.address)
        except OSError as exc:
            if old.port:
                try:
                    self.metrics_port = self.metrics.serve(old.port, old.address)
                except OSError:
                    log.exception("metrics endpoint %s:%d could not be restored", old.address, old.port)
            raise StartupError(
                f"{self.config_path}: metrics.port: cannot listen on {new.address}:{new.port}: {exc.strerror or exc}"
            ) from None

    def _stop_metrics(self) -> None:
        self.metrics.close()
        self.metrics_port = None

    def _open_sink(self, cfg: OnboardConfig) -> JsonLinesSink:
        try:
            return JsonLinesSink(cfg.resolve(cfg.sink.path) if cfg.sink.path != "-" else "-", cfg.sink.include_detections)
        except OSError as exc:
            raise StartupError(f"{self.config_path}: sink.path: cannot open {cfg.sink.path}: {exc.strerror or exc}") from None

    def _hold_cpu_latency(self, cfg: OnboardConfig) -> None:
        """Make the held PM QoS request match the config (a new one first, then drop the old)."""
        want = cfg.daemon.cpu_wakeup_latency_us
        held = self._cpu_latency.max_us if self._cpu_latency else None
        if want == held:
            return
        new = CpuLatencyRequest(want) if want is not None else None
        self._release_cpu_latency()
        self._cpu_latency = new
        if new is not None:
            log.info("holding CPU wake-up latency <= %d us (%s)", want, new.device)

    def _release_cpu_latency(self) -> None:
        if self._cpu_latency is not None:
            self._cpu_latency.close()
            self._cpu_latency = None

    def _status_line(self, rep) -> str:
        c = self.pipeline.fuser.counters
        refused = self.pipeline.access.refused
        sink = f"SINK FAILING: {self.pipeline.sink_lost} results lost; " if self.pipeline.sink_failing else ""
        return (sink + ("CLOUD REFUSED: on-car only; " if refused else "") +
            f"{self.frames} frames; estimate {rep.estimate.bandwidth_bps / 1e6:.2f} Mbit/s, "
            f"rtt {rep.estimate.rtt_s * 1000:.0f} ms; cloud {c.cloud_used} on-car {c.onboard_used} "
            f"misses {c.deadline_misses}"
        )
