"""Which tasks a profile measures: one camera at one native image size each.

A camera seen at several sizes in the scenes (the 640x640 FRONT sequences and a 1920x1280 FRONT
image) gives one task per size, ``CAMERA@WxH``, because resize targets and runtimes depend on
the size; ``--tasks CAMERA@WxH`` keeps one, named CAMERA. A task without any label of the
evaluated classes has no defined utility (under the default empty-frame rule) and is skipped
(``--tasks all``) or refused (named in ``--tasks``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Sequence

from carlink.datasets.frames import CameraName, Frame
from carlink.detection import WaymoClass
from carlink.replay.evaluation import EmptyFrameRule
from carlink.replay.profiling.errors import ProfilerError
from carlink.replay.profiling.frames import FrameRef

log = logging.getLogger("carlink.replay.profiler")

_TASK = re.compile(r"^([A-Z_]+)(?:@(\d+)x(\d+))?$")


def _known_cameras() -> list[str]:
    return [c.name for c in CameraName if c is not CameraName.UNKNOWN]


def parse_tasks(text: str) -> tuple[str, ...] | None:
    """``all`` or comma-separated cameras (FRONT, FRONT_LEFT, ...), each optionally narrowed to
    one native image size (``FRONT@640x640``) where the scenes hold the camera at several sizes."""
    if text.strip().lower() == "all":
        return None
    names = [t.strip().upper().replace("X", "x") if "@" in t else t.strip().upper()
             for t in text.split(",") if t.strip()]
    known = _known_cameras()
    for n in names:
        m = _TASK.match(n)
        if m is None or m.group(1) not in known:
            raise ProfilerError(f"--tasks: unknown camera {n!r}; known cameras: {', '.join(known)} "
                                "(optionally CAMERA@WIDTHxHEIGHT), or 'all'")
    if not names:
        raise ProfilerError("--tasks names no camera")
    return tuple(dict.fromkeys(names))


def parse_cameras(text: str) -> tuple[str, ...]:
    """``--as-cameras``: comma-separated camera names, each once."""
    names = [t.strip().upper() for t in text.split(",") if t.strip()]
    known = _known_cameras()
    for n in names:
        if n not in known:
            raise ProfilerError(f"--as-cameras: unknown camera {n!r}; known cameras: {', '.join(known)}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ProfilerError(f"--as-cameras names {dup[0]} twice")
    if not names:
        raise ProfilerError("--as-cameras names no camera")
    return tuple(names)


@dataclass(frozen=True)
class TaskKey:
    """A measured task: one camera at one native image size."""

    name: str
    camera: CameraName
    size: tuple[int, int]  # (width, height) as captured

    def image_of(self, frame: Frame):
        im = frame.image(self.camera)
        return im if im is not None and (im.width, im.height) == self.size else None


def _sizes_by_camera(frames: Sequence[FrameRef]) -> dict[CameraName, list[tuple[int, int]]]:
    sizes_of: dict[CameraName, list[tuple[int, int]]] = {}
    for f in frames:
        for im in f.frame.images:
            sizes = sizes_of.setdefault(im.camera, [])
            if (im.width, im.height) not in sizes:
                sizes.append((im.width, im.height))
    for sizes in sizes_of.values():
        sizes.sort(key=lambda s: (-s[0] * s[1], s))  # largest first
    return sizes_of


def _groups(wanted: tuple[str, ...] | None, sizes_of: dict[CameraName, list[tuple[int, int]]]) -> list[tuple[CameraName, tuple[int, int]]]:
    """(camera, size) pairs to measure, in the order asked (cameras in enum order for 'all')."""
    groups: list[tuple[CameraName, tuple[int, int]]] = []
    for entry in (wanted if wanted is not None else [c.name for c in sorted(sizes_of)]):
        m = _TASK.match(entry)
        assert m is not None  # parse_tasks checked it
        camera = CameraName[m.group(1)]
        if camera not in sizes_of:
            raise ProfilerError(f"--tasks: no image of camera {camera.name} in the scenes")
        if not m.group(2):
            groups.extend((camera, size) for size in sizes_of[camera])
            continue
        size = (int(m.group(2)), int(m.group(3)))
        if size not in sizes_of[camera]:
            have = ", ".join(f"{w}x{h}" for w, h in sizes_of[camera])
            raise ProfilerError(f"--tasks: no {camera.name} image of {size[0]}x{size[1]} in the scenes "
                                f"(they hold {have})")
        groups.append((camera, size))
    return list(dict.fromkeys(groups))


def select_tasks(
    wanted: tuple[str, ...] | None,
    frames: Sequence[FrameRef],
    classes: Sequence[WaymoClass],
    empty_frames: EmptyFrameRule = EmptyFrameRule.EXCLUDE,
) -> tuple[list[TaskKey], list[str]]:
    """The tasks to measure, and those skipped for want of any label of ``classes`` (``all``)."""
    groups = _groups(wanted, _sizes_by_camera(frames))
    what = " or ".join(c.label for c in classes)
    tasks: list[TaskKey] = []
    skipped: list[str] = []
    for camera, size in groups:
        several = sum(1 for c, _ in groups if c == camera) > 1
        key = TaskKey(f"{camera.name}@{size[0]}x{size[1]}" if several else camera.name, camera, size)
        n_labels = sum(1 for f in frames if key.image_of(f.frame) is not None
                       for lab in f.frame.labels.get(camera, ()) if lab.type in classes)
        if n_labels == 0 and empty_frames is EmptyFrameRule.EXCLUDE:
            if wanted is not None:
                raise ProfilerError(
                    f"task {key.name}: no frame has a {what} label, so its utility is undefined under "
                    "--empty-frames exclude; leave the camera out of --tasks or use --empty-frames turbo")
            log.warning("task %s skipped: no %s label in any of its frames", key.name, what)
            skipped.append(key.name)
            continue
        tasks.append(key)
    if not tasks:
        raise ProfilerError(f"no task has a {what} label in any frame: nothing to profile")
    return tasks, skipped
