"""Measuring on Ray: the profile's model runs split into units, run by workers that keep their models.

A unit is one scene file x one task x one model (the on-car model or a cloud model with all its
options), over some of that scene's frames: where there are few such groups for the workers, a
group's frames are split into several units so that every worker stays busy to the end. A worker
(:class:`ProfileWorker`, one per Ray actor) reads the scene files itself (they must be at the
same path on every node), loads each model once, and measures with the serial path's own code
(:mod:`.measure`), so a measurement is the same whichever worker makes it; only its runtime
differs. The driver appends each unit's measurements to the checkpoint as they arrive, so an
interrupted run resumes as a serial one does.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Sequence

from carlink.datasets.frames import Frame
from carlink.datasets.scene import read_frames
from carlink.replay.distributed import RayTarget, run_units
from carlink.replay.profiling.checkpoint import ON_CAR_ID, Checkpoint, Measurement
from carlink.replay.profiling.config import ProfileConfig
from carlink.replay.profiling.errors import ProfilerError, ProfilingStopped
from carlink.replay.profiling.frames import FrameRef
from carlink.replay.profiling.measure import ModelCache, RunResult, evaluate, labels_of, measure_options, timed_detect
from carlink.replay.profiling.tasks import TaskKey

# Units per worker to aim for when splitting groups: enough that the last ones end close together.
_UNITS_PER_WORKER = 4
# The cluster's size is unknown before connecting; split as if for this many workers.
_CLUSTER_WORKERS_GUESS = 64
_SCENES_KEPT = 2  # scene files a worker keeps read (units come scene by scene)


@dataclass(frozen=True)
class FrameWork:
    """What is still to measure on one frame: the on-car model and/or some cloud options."""

    frame: str  # frame id
    on_car: bool
    options: tuple[str, ...]  # option ids, in the config's order

    @property
    def size(self) -> int:
        return int(self.on_car) + len(self.options)


@dataclass(frozen=True)
class MeasureUnit:
    """One scene file x task x model, over some frames of the scene."""

    scene: str  # path of the scene file, absolute (workers may run in another directory)
    task: TaskKey
    model: str
    frames: tuple[FrameWork, ...]

    @property
    def size(self) -> int:
        """Measurements it makes (its weight on the progress bar)."""
        return sum(f.size for f in self.frames)


class ProfileWorker:
    """Lives in one Ray actor for the whole run: models loaded once, the last scenes read kept."""

    def __init__(self, config: ProfileConfig) -> None:
        import cv2

        # One Ray CPU per worker: OpenCV's own thread pool would make the workers fight over cores.
        cv2.setNumThreads(1)
        self._config = config
        self._classes = config.classes()
        self._options = {o.id: o for o in config.options()}
        self._models = ModelCache(config.backend)
        self._scenes: OrderedDict[str, dict[str, Frame]] = OrderedDict()

    def _frames(self, scene: str) -> dict[str, Frame]:
        if scene not in self._scenes:
            if not Path(scene).is_file():
                raise ProfilerError(f"scene file {scene} is not on the Ray worker's node; every node needs "
                                    "the scene files at the same path")
            frames: dict[str, Frame] = {}
            for n, frame in enumerate(read_frames(scene)):
                if self._config.max_frames is not None and n >= self._config.max_frames:
                    break
                frames[frame.stable_id] = frame
            self._scenes[scene] = frames
            while len(self._scenes) > _SCENES_KEPT:
                self._scenes.popitem(last=False)
        self._scenes.move_to_end(scene)
        return self._scenes[scene]

    def run(self, unit: MeasureUnit) -> list[Measurement]:
        """The unit's measurements, frame by frame, on-car first, options in the config's order."""
        out: list[Measurement] = []
        frames = self._frames(unit.scene)
        task = unit.task
        for work in unit.frames:
            image = task.image_of(frames[work.frame]).decode()
            labels = labels_of(frames[work.frame], task.camera)
            if work.on_car:
                dets, ms = timed_detect(self._models(self._config.onboard), image)
                out.append(Measurement(work.frame, task.name, ON_CAR_ID, None, ms,
                                       evaluate(labels, dets, self._classes)))
            todo = [self._options[o] for o in work.options]
            measure_options(image, labels, todo, work.frame, task.name, self._classes, self._models, out.append)
        return out


def plan_units(
    config: ProfileConfig,
    frames: Sequence[FrameRef],
    tasks: Sequence[TaskKey],
    done: dict[tuple[str, str, str], Measurement],
    workers: int,
) -> tuple[list[MeasureUnit], int]:
    """The units still to run (scene by scene) and how many measurements the checkpoint holds."""
    options = config.options()
    models = list(dict.fromkeys([config.onboard, *config.models]))
    groups: list[tuple[str, TaskKey, str, list[FrameWork]]] = []
    reused = 0
    for scene_index, scene in enumerate(config.scenes):
        path = str(Path(scene).resolve())
        scene_frames = [f for f in frames if f.scene == scene_index]
        for tk in tasks:
            tframes = [f for f in scene_frames if tk.image_of(f.frame) is not None]
            for model in models:
                work = []
                for f in tframes:
                    on_car = model == config.onboard and (f.id, tk.name, ON_CAR_ID) not in done
                    mine = [o.id for o in options if o.model == model]
                    todo = tuple(o for o in mine if (f.id, tk.name, o) not in done)
                    reused += len(mine) - len(todo) + (model == config.onboard and not on_car)
                    if on_car or todo:
                        work.append(FrameWork(f.id, on_car, todo))
                if work:
                    groups.append((path, tk, model, work))
    target_units = _UNITS_PER_WORKER * workers
    per_group = max(1, math.ceil(target_units / len(groups))) if groups else 1
    units = []
    for path, tk, model, work in groups:
        step = max(1, math.ceil(len(work) / per_group))
        units += [MeasureUnit(path, tk, model, tuple(work[i:i + step])) for i in range(0, len(work), step)]
    return units, reused


def measure_on_ray(
    config: ProfileConfig,
    frames: Sequence[FrameRef],
    tasks: Sequence[TaskKey],
    checkpoint: Checkpoint,
    target: RayTarget,
    *,
    stop_after: int | None = None,
    progress_bar: bool = True,
) -> RunResult:
    """Measure every (frame, task, option) not yet in the checkpoint on Ray workers."""
    units, reused = plan_units(config, frames, tasks, checkpoint.done, target.workers or _CLUSTER_WORKERS_GUESS)
    result = RunResult(reused=reused)

    def record(_: int, measurements: list[Measurement]) -> None:
        for m in measurements:
            checkpoint.add(m)
        result.measured += len(measurements)
        if stop_after is not None and result.measured >= stop_after:
            raise ProfilingStopped(f"stopped after {result.measured} measurements, as asked")

    make_worker = partial(ProfileWorker, config)
    run_units(units, make_worker, target, on_result=record, weight=lambda u: u.size,
              progress_bar=progress_bar, desc="profiling", unit_name="measurement")
    return result


__all__ = ["FrameWork", "MeasureUnit", "ProfileWorker", "measure_on_ray", "plan_units"]
