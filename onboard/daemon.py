"""The onboard daemon's life: start-up checks, the frame loop, signals, systemd, shutdown.

* Start-up loads and validates everything before READY=1: config, profile, on-car models, sink,
  metrics endpoint and frame source. Any problem raises StartupError with a message naming the
  file and key, and the daemon exits non-zero before touching the road.
* SIGHUP: config, profile and models are re-loaded on a helper thread while frames keep flowing,
  then swapped in between two frames. A bad new config is logged and the old one kept.
* SIGTERM / SIGINT: the loop stops at once (waits are interruptible), uploads are cancelled, the
  frames still open are resolved with their on-car results, and the process exits 0 within 2 s.
* WATCHDOG=1 goes out from the frame loop itself, so a wedged loop is restarted by systemd.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from carlink.clock import Clock, WallClock
from carlink.onboard.config import ConfigError, OnboardConfig, load_config
from carlink.onboard.cpu_latency import CpuLatencyError, CpuLatencyRequest
from carlink.onboard.metrics import OnboardMetrics
from carlink.onboard.pipeline import OnboardPipeline, load_onboard_models
from carlink.onboard.planning import OnboardTask, ProfileError, load_onboard_tasks
from carlink.onboard.sink import JsonLinesSink
from carlink.onboard.sources import SourceError, open_source
from carlink.onboard.systemd import SystemdNotifier, watchdog_interval_s
from carlink.zoo.base import Detector

log = logging.getLogger("carlink.onboard")

STOP_BUDGET_S = 1.5  # of the 2 s SIGTERM promise, what the shutdown itself may take


class StartupError(RuntimeError):
    """The daemon cannot start: bad config, missing or corrupt profile, unknown model..."""


@dataclass
class _Loaded:
    cfg: OnboardConfig
    tasks: tuple[OnboardTask, ...]
    models: dict[str, Detector]


def _device(cfg: OnboardConfig) -> str:
    from carlink.zoo.devices import resolve_device

    return resolve_device(cfg.daemon.device)


def load_everything(config_path: Path, reuse: dict[str, Detector] | None = None) -> _Loaded:
    """Config, profile and on-car models; StartupError names what is wrong."""
    try:
        cfg = load_config(config_path)
        tasks = load_onboard_tasks(cfg.profile_path, cfg.tasks)
    except (ConfigError, ProfileError) as exc:
        raise StartupError(str(exc)) from None
    try:
        _device(cfg)  # "cuda" on a machine without a GPU fails here, by name
        reuse = reuse or {}
        need = [t for t in tasks if t.onboard_model not in reuse]
        models = {k: v for k, v in reuse.items() if k in {t.onboard_model for t in tasks}}
        # The zoo resolves "auto" per model: torch models go to the GPU, HOG stays on the CPU.
        models.update(load_onboard_models(tuple(need), cfg.daemon.device))
    except (KeyError, ValueError, RuntimeError, FileNotFoundError) as exc:
        raise StartupError(f"{config_path}: on-car models: {exc}") from None
    return _Loaded(cfg, tasks, models)


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
        self.metrics_port: int | None = None
        self.frames = 0
        self.reloads = 0
        self._cpu_latency: CpuLatencyRequest | None = None

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
        self.notifier.reloading()
        try:
            loaded: _Loaded | Exception = load_everything(
                self.config_path, reuse=self.pipeline.models if self.pipeline else None
            )
        except Exception as exc:  # kept to report; the running config stays
            loaded = exc
        with self._reload_lock:
            self._pending = loaded

    def _apply_reload(self) -> None:
        with self._reload_lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        self._reload_requested.clear()
        if isinstance(pending, Exception):
            log.error("reload failed, keeping the running config: %s", pending)
            self.notifier.notify(READY=1, STATUS=f"reload failed: {pending}".replace("\n", " ")[:200])
            return
        if pending.cfg.source != self.pipeline.cfg.source:
            log.warning("source changes take effect at the next restart")
        try:
            sink = self._open_sink(pending.cfg) if pending.cfg.sink != self.pipeline.cfg.sink else None
            try:
                self.pipeline.reload(pending.cfg, pending.tasks, pending.models, sink)
            except ValueError:
                if sink is not None:
                    sink.close()
                raise
        except (StartupError, ValueError) as exc:
            log.error("reload failed, keeping the running config: %s", exc)
            self.notifier.notify(READY=1, STATUS=f"reload failed: {exc}".replace("\n", " ")[:200])
            return
        try:
            self._hold_cpu_latency(pending.cfg)
        except CpuLatencyError as exc:
            log.error("daemon.cpu_wakeup_latency_us: %s; keeping the previous limit", exc.strerror)
        self.reloads += 1
        log.info("reloaded config=%s tasks=%s", self.config_path, [t.name for t in pending.tasks])
        self.notifier.notify(READY=1, STATUS=f"reloaded; {self.frames} frames")

    # -- run -----------------------------------------------------------------------------------

    def run(self) -> int:
        """Start, loop until the source ends or a stop is requested, shut down. Returns 0."""
        loaded = load_everything(self.config_path)
        cfg = loaded.cfg
        metrics = OnboardMetrics()
        if cfg.metrics.port:
            try:
                self.metrics_port = metrics.serve(cfg.metrics.port, cfg.metrics.address)
            except OSError as exc:
                raise StartupError(
                    f"{self.config_path}: metrics.port: cannot listen on {cfg.metrics.address}:{cfg.metrics.port}: "
                    f"{exc.strerror or exc}"
                ) from None
        sink = self._open_sink(cfg)
        try:
            self._hold_cpu_latency(cfg)
        except CpuLatencyError as exc:
            sink.close()
            metrics.close()
            raise StartupError(f"{self.config_path}: daemon.cpu_wakeup_latency_us: {exc.strerror}") from None
        src_cfg = cfg.source
        if src_cfg.path:
            src_cfg = src_cfg.model_copy(update={"path": str(cfg.resolve(src_cfg.path))})
        source = open_source(src_cfg, self.clock, {t.camera for t in loaded.tasks}, self.stop_event)
        self.pipeline = OnboardPipeline(cfg, loaded.tasks, self.clock, sink, loaded.models, metrics)
        wd = watchdog_interval_s() if cfg.daemon.watchdog else None
        last_wd = time.monotonic()
        self.notifier.ready(f"running {len(loaded.tasks)} tasks; cloud {cfg.cloud.address}")
        log.info("started tasks=%s cloud=%s source=%s", [t.name for t in loaded.tasks], cfg.cloud.address, cfg.source.kind)
        try:
            for frame in source:
                if self.stop_event.is_set():
                    break
                if self._pending is not None:
                    self._apply_reload()
                rep = self.pipeline.step(frame)
                self.frames += 1
                if wd is not None and time.monotonic() - last_wd >= wd:
                    self.notifier.watchdog()
                    last_wd = time.monotonic()
                if self.frames % self.pipeline.cfg.daemon.status_every_frames == 0:
                    self.notifier.status(self._status_line(rep))
        except SourceError as exc:
            log.error("source failed: %s", exc)
            raise StartupError(str(exc)) from None
        finally:
            self.notifier.stopping()
            source.close()
            self.pipeline.close(STOP_BUDGET_S)
            metrics.close()
            self._release_cpu_latency()
            log.info("stopped frames=%d emitted=%d", self.frames, self.pipeline.emitted)
        return 0

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
        return (
            f"{self.frames} frames; estimate {rep.estimate.bandwidth_bps / 1e6:.2f} Mbit/s, "
            f"rtt {rep.estimate.rtt_s * 1000:.0f} ms; cloud {c.cloud_used} on-car {c.onboard_used} "
            f"misses {c.deadline_misses}"
        )
