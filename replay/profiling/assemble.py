"""Assembling the profile from the measurements: the typed :class:`carlink.profile.Profile`.

Utility is AP@0.5 of the evaluated classes (:meth:`ProfileConfig.evaluated`). Per frame it is the
frame's AP averaged over the classes that frame has labels of, ``None`` for a frame without such
a label (``EmptyFrameRule.EXCLUDE``) or the TURBO convention when asked. The task's aggregate,
and each window's, pools the matches of all its frames per class as COCO pools images and
averages over the classes with at least one label there (:func:`carlink.replay.evaluation.set_ap`).

Runtimes are p50/p99 over the frames of what was measured here, or a :class:`RuntimeTable`'s
figures. Everything is taken in a fixed order from the checkpoint's records, so the same records
give the same profile.
"""

from __future__ import annotations

import platform
from typing import Sequence

import cv2
import numpy as np

from carlink import __version__ as carlink_version
from carlink.detection import WaymoClass
from carlink.profile import VERSION, FrameInfo, OnCarProfile, OptionProfile, Profile, Provenance, TaskProfile
from carlink.replay.evaluation import EmptyFrameRule, set_ap
from carlink.replay.profiling.checkpoint import ON_CAR_ID, Measurement
from carlink.replay.profiling.config import ProfileConfig, metric_name
from carlink.replay.profiling.frames import FrameRef, scene_provenance, windows
from carlink.replay.profiling.runtimes import RuntimeTable, this_hardware
from carlink.replay.profiling.tasks import TaskKey
from carlink.zoo.registry import get_spec

Done = dict[tuple[str, str, str], Measurement]


def _r(x: float, nd: int = 6) -> float:
    return float(round(x, nd))


def _ap(ms: Sequence[Measurement], classes: Sequence[WaymoClass], rule: EmptyFrameRule) -> float | None:
    mean = set_ap([m.matches(classes) for m in ms], rule).mean
    return None if mean is None else _r(mean)


def _utilities(ms: list[Measurement], wins: list[tuple[int, int]], classes: Sequence[WaymoClass],
               rule: EmptyFrameRule) -> dict:
    return {"utility": _ap(ms, classes, rule),
            "utilities": [_ap([m], classes, rule) for m in ms],
            "window_utilities": [_ap(ms[a:b], classes, rule) for a, b in wins]}


def _runtime(ms: Sequence[Measurement], table: RuntimeTable | None, model: str, resize: str) -> tuple[float, float]:
    if table is not None:
        row = table.lookup(model, resize)
        return row.p50, row.p99
    values = np.array([m.runtime_ms for m in ms])
    return _r(float(np.percentile(values, 50)), 2), _r(float(np.percentile(values, 99)), 2)


def _task(config: ProfileConfig, tk: TaskKey, frames: Sequence[FrameRef], done: Done,
          table: RuntimeTable | None) -> TaskProfile:
    rule, classes = config.empty_frames, config.evaluated()
    tframes = [f for f in frames if tk.image_of(f.frame) is not None]
    wins = windows(tframes, config.window_frames)

    def series(option: str) -> list[Measurement]:
        return [done[(f.id, tk.name, option)] for f in tframes]

    on_car = series(ON_CAR_ID)
    p50, p99 = _runtime(on_car, table, config.onboard, "native")
    oc = OnCarProfile(id=ON_CAR_ID, model=config.onboard, runtime_ms_p50=p50, runtime_ms_p99=p99,
                      **_utilities(on_car, wins, classes, rule))
    options = []
    for o in config.options():
        ms = series(o.id)
        payload = np.array([m.payload_bytes for m in ms], dtype=float)
        p50, p99 = _runtime(ms, table, o.model, o.resize.label)
        options.append(OptionProfile(
            id=o.id, model=o.model, resize=o.target(*tk.size), resize_rule=o.resize.label, codec=o.codec.codec,
            jpeg_quality=o.codec.jpeg_quality, payload_bytes_mean=_r(float(payload.mean()), 1),
            payload_bytes_p95=_r(float(np.percentile(payload, 95)), 1), payloads=[int(p) for p in payload],
            runtime_ms_p50=p50, runtime_ms_p99=p99, **_utilities(ms, wins, classes, rule)))
    return TaskProfile(
        name=tk.name, camera=tk.camera.name, family=get_spec(config.models[0]).family,
        classes=[c.label for c in classes], deadline_ms=config.deadline_ms, weight=config.weight,
        image_size=tk.size, frames=[FrameInfo(id=f.id, labels=m.n_labels(classes)) for f, m in zip(tframes, on_car)],
        windows=wins, on_car=oc, options=options)


def _as_cameras(tasks: list[TaskProfile], cameras: tuple[str, ...] | None) -> list[TaskProfile]:
    """The one measured task written once per camera (measured once, the same numbers)."""
    if cameras is None:
        return tasks
    [task] = tasks  # run_profile checked that there is one
    return [task.model_copy(update={"name": cam, "camera": cam}) for cam in cameras]


def _runtime_provenance(table: RuntimeTable | None, backend: str) -> dict:
    if table is not None:
        return {"kind": "table", "path": table.source, "sha256": table.sha256,
                "hardware": table.hardware() or "not stated in the table"}
    return {"kind": "measured", "hardware": this_hardware(), "machine": platform.machine(),
            "backend": backend, "opencv_threads": cv2.getNumThreads(),
            "cloud_runtime": "payload decode + detect", "on_car_runtime": "detect"}


def assemble(
    config: ProfileConfig,
    frames: Sequence[FrameRef],
    task_keys: Sequence[TaskKey],
    skipped: Sequence[str],
    done: Done,
    *,
    command: str,
    table: RuntimeTable | None,
) -> Profile:
    """The profile (version 2) from the measurements, in a fixed order."""
    metric = metric_name(config.evaluated())
    tasks = _as_cameras([_task(config, tk, frames, done, table) for tk in task_keys], config.as_cameras)
    measured_as = "" if config.as_cameras is None else (
        f" The task {task_keys[0].name} was measured once and is written as the cameras "
        f"{', '.join(config.as_cameras)}.")
    description = config.description or (
        f"Measured by `carlink profile run` on {len(frames)} real frames; utility = {metric}.{measured_as}")
    provenance = Provenance(
        command=command, on_car_model=config.onboard, cloud_models=list(config.models),
        detectors={m: get_spec(m).description for m in dict.fromkeys([config.onboard, *config.models])},
        data=scene_provenance(config.scenes, frames), empty_frame_rule=config.empty_frames.value,
        aggregate="per class, AP with detections pooled over the frames (COCO style), then the mean over "
                  "the classes with a label there; not a mean of frame APs",
        window_frames=config.window_frames, runtime=_runtime_provenance(table, config.backend),
        software={"carlink": carlink_version, "opencv": cv2.__version__}, skipped_tasks=list(skipped))
    return Profile(version=VERSION, description=description, metric=metric, provenance=provenance, tasks=tasks)
