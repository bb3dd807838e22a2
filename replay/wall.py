"""The wall-clock replay: the real onboard pipeline, in real time, over the emulated link.

    frames at their timestamps -> OnboardPipeline.step (real on-car models, real estimator,
    allocator, encoder, gRPC uplink) -> LinkProxy (loopback TCP, the trace's capacity and delay)
    -> cloud server (started in-process on loopback, or --cloud HOST:PORT) -> fuser -> results

Only the ``carlink`` policy runs here: it is the car's own code. The other policies are compared
on the virtual clock. What the pipeline reports is kept as is: results that missed their
deadline are counted (``deadline_misses``) and listed per task-frame, never dropped. If the cloud
server goes away mid-replay, uploads fail, the fuser uses the on-car results and the replay goes
on (``cloud_outage_after`` stops the in-process server after that many frames to show it).
Utility is the AP@0.5 of the detections actually used against the frame's labels. Bytes per
task-frame are the profile's mean payload of the option sent (the pipeline does not report its
encoded sizes); the run's delivered bytes are the proxy's own count.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from carlink.clock import WallClock
from carlink.datasets.frames import CameraName
from carlink.datasets.traces import Trace
from carlink.network import MTU
from carlink.replay.evaluation import Label, frame_ap
from carlink.replay.link import TraceLink
from carlink.replay.link_proxy import LinkProxy
from carlink.replay.player import PlayedFrame
from carlink.replay.profile_view import ReplayProfile
from carlink.replay.results import FrameRecord, PolicyRun, ReplayResult, TaskRecord, summarize
from carlink.replay.runner import ReplayConfig, one_way_delay, prepare_trace

log = logging.getLogger(__name__)


class WallError(RuntimeError):
    """The wall-clock replay cannot start (message says what: profile, cloud, models)."""


@dataclass(frozen=True)
class _Cloud:
    server: object | None  # InferenceServer when started here
    address: tuple[str, int]


def _start_cloud(profile: ReplayProfile, cloud: str | None) -> _Cloud:
    if cloud:
        host, sep, port = cloud.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise WallError(f"--cloud {cloud!r}: expected HOST:PORT")
        return _Cloud(None, (host, int(port)))
    from carlink.cloud.config import ServerConfig
    from carlink.cloud.server import InferenceServer

    models = tuple(dict.fromkeys([*profile.cloud_models(), "noop"]))  # noop answers the car's probes
    try:
        server = InferenceServer(ServerConfig(models=models, port=0, insecure=True, device="cpu"))
        port = server.start()
    except Exception as exc:
        raise WallError(f"cannot start the in-process cloud server for models {', '.join(models)}: {exc}") from exc
    return _Cloud(server, ("127.0.0.1", int(port)))


def _pipeline(profile: ReplayProfile, address: str, folder: Path, cameras: set[str], onboard: dict | None):
    from carlink.onboard.config import parse_config
    from carlink.onboard.pipeline import OnboardPipeline, load_onboard_models
    from carlink.onboard.planning import load_onboard_tasks
    from carlink.onboard.sink import MemorySink

    # Only the tasks whose camera the scenes have (the others would be skipped every frame).
    names = [{"name": t.name} for t in profile.tasks if t.camera in cameras]
    if not names:
        raise WallError(f"no task of profile {profile.path} watches a camera of these scenes ({', '.join(sorted(cameras))})")
    doc = {
        "daemon": {"profile": str(Path(profile.path).resolve()), "device": "cpu", "watchdog": False},
        "source": {"kind": "synthetic"},
        "cloud": {"address": address, "insecure": True},
        "tasks": names,
    }
    for section, values in (onboard or {}).items():
        doc[section] = {**doc.get(section, {}), **values}
    cfg = parse_config(doc, where="replay wall-clock onboard config", base_dir=folder)
    tasks = load_onboard_tasks(cfg.profile_path, [])
    sink = MemorySink()
    clock = WallClock()
    pipeline = OnboardPipeline(cfg, tasks, clock, sink, load_onboard_models(tasks, "cpu"))
    return pipeline, sink, clock, tasks


def _captured(index: int, t: float, images: dict, origin: str):
    from carlink.onboard.sources import CapturedFrame

    return CapturedFrame(index, t, images, origin)


def run_wall(
    frames: Sequence[PlayedFrame],
    profile: ReplayProfile,
    trace: Trace,
    cfg: ReplayConfig = ReplayConfig(),
    inputs: dict | None = None,
    cloud: str | None = None,
    progress: bool = False,
    cloud_outage_after: int | None = None,
    onboard: dict | None = None,
) -> ReplayResult:
    """Play ``frames`` in real time through the real pipeline; see the module doc.

    ``onboard``: extra onboard configuration tables (e.g. ``{"estimator": {"initial_bps": 5e6}}``),
    merged over the defaults of onboard/config.py.
    """
    if not frames:
        raise WallError("no frames to replay")
    max_deadline = max(t.deadline_ms for t in profile.tasks) / 1000.0
    trace = prepare_trace(trace, cfg, frames[-1].t + max_deadline + 30.0)
    delay = one_way_delay(trace, cfg)
    c = _start_cloud(profile, cloud)
    proxy = LinkProxy(c.address, TraceLink(trace, delay=delay, queue_bytes=cfg.queue_bytes))
    bar = None
    try:
        proxy.start()
        with tempfile.TemporaryDirectory(prefix="carlink-replay-") as folder:
            try:
                cams = {im.camera.name for pf in frames for im in pf.frame.images}
                pipeline, sink, clock, onboard_tasks = _pipeline(profile, proxy.address, Path(folder), cams, onboard)
            except WallError:
                raise
            except Exception as exc:
                raise WallError(f"cannot start the onboard pipeline with profile {profile.path}: {exc}") from exc
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=len(frames), unit="frame", desc="replay (wall clock)", leave=False)
            cameras = {t.camera for t in onboard_tasks}
            t0 = clock.now() + 0.2  # let the channel connect before the first frame
            for pf in frames:
                clock.sleep(t0 + pf.t - clock.now())
                if cloud_outage_after is not None and pf.index == cloud_outage_after and c.server is not None:
                    log.warning("fault injection: stopping the cloud server before frame %d", pf.index)
                    c.server.stop(grace=0.0)
                images = {im.camera.name: im.decode() for im in pf.frame.images if im.camera.name in cameras}
                captured = _captured(pf.index, clock.now(), images, pf.frame_id)
                pipeline.step(captured)
                if bar is not None:
                    bar.update(1)
            time.sleep(max_deadline + 0.1)  # answers still in flight
            pipeline.close(timeout_s=5.0)
    finally:
        if bar is not None:
            bar.close()
        proxy.stop()
        if c.server is not None:
            c.server.stop(grace=0.5)
    run = _collect(frames, profile, sink.frames, trace)
    run.delivered_bytes = proxy.stats.up_bytes
    run.capacity_bytes = trace.count_between(0.0, (frames[-1].t + max_deadline) * 1000.0) * MTU
    info = dict(inputs or {})
    info.update({"clock": "wall", "utilities": "measured", "profile": profile.path, "trace": trace.name,
                 "cloud": cloud or "in-process", "frames": len(frames), "policies_note":
                 "wall clock runs the real onboard pipeline (policy carlink) only"})
    if cloud_outage_after is not None:
        info["cloud_outage_after"] = cloud_outage_after
    runs = {"carlink": run}
    return ReplayResult(info, runs, summarize(runs, {t.name: t.weight for t in profile.tasks}))


def _collect(frames: Sequence[PlayedFrame], profile: ReplayProfile, results, trace: Trace) -> PolicyRun:
    """Task records from the pipeline's fused results, with the AP of what was used."""
    from carlink.zoo.registry import get_spec

    by_id = {pf.index: pf for pf in frames}
    tasks = {t.name: t for t in profile.tasks}
    run = PolicyRun("carlink")
    for fr in sorted(results, key=lambda r: r.frame_id):
        pf = by_id.get(fr.frame_id)
        if pf is None:
            continue
        value = 0.0
        for name, r in sorted(fr.tasks.items()):
            t = tasks[name]
            classes = t.classes or tuple(sorted(set(get_spec(t.on_car.model).classes)))
            labels = [Label(lab.box, lab.type) for lab in pf.frame.labels.get(CameraName[t.camera], ())]
            ap = frame_ap(labels, r.detections, classes).mean
            if ap is not None:
                value += t.weight * ap
            nbytes = 0
            if r.cloud_status not in ("not-sent",):
                opt = next((o for o in t.options if o.id == r.planned_option), None)
                nbytes = int(round(opt.payload_bytes_mean)) if opt is not None and not opt.on_car else 0
            status = {"pending": "late"}.get(r.cloud_status, r.cloud_status)
            if status not in ("ok", "late", "not-sent"):
                status = "failed"
            run.tasks.append(TaskRecord(pf.index, name, r.planned_option, r.source, r.option,
                                        round(r.latency_s * 1000.0, 3), r.deadline_met, status, ap, nbytes))
        info = fr.info
        est = info.get("estimate", {})
        alloc = info.get("allocation", {})
        run.frames.append(FrameRecord(pf.index, pf.t, float(est.get("bandwidth_bps", 0.0)),
                                      float(est.get("bandwidth_bps", 0.0)), float(alloc.get("used_bps", 0.0)),
                                      trace.count_between(pf.t * 1000.0, pf.t * 1000.0 + 100.0) * MTU * 80.0,
                                      float(alloc.get("expected_utility", 0.0)), value,
                                      sum(r.bytes_sent for r in run.tasks if r.frame == pf.index)))
    return run
