"""A profile's per-frame measurements, looked up by image and option.

A per-frame utility (and payload) belongs to the image and the option: the same image sent with
the same option gives the same detections whichever camera slot it plays in (replay/compose.py
plays single-camera sequences as the five cameras of one car). So a value is found by the id of
the image's source frame (``Frame.stable_id``, :meth:`PlayedFrame.source_id`) and the option id,
preferring the task of the same name and otherwise taking the first task of the profile, in file
order, that measured that frame with that option.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from carlink.profile import Profile
from carlink.replay.player import PlayedFrame
from carlink.replay.profile_view import ReplayTask

_MISSING = object()


@dataclass(frozen=True)
class FrameValue:
    """One option's measurement on one image."""

    utility: float | None  # None: undefined (no label of the evaluated classes)
    payload: int | None  # bytes sent; None where the profile has no per-frame payloads (and on-car: 0)


@dataclass(frozen=True)
class _TaskColumns:
    name: str
    positions: dict[str, int]  # frame id -> index into the per-frame lists
    options: dict[str, tuple[Sequence | None, Sequence | None]]  # option id -> (utilities, payloads)


class PerFrameIndex:
    """Per-frame values of one profile by (frame id, option id), see the module doc."""

    def __init__(self, profile: Profile) -> None:
        self._tasks: list[_TaskColumns] = []
        for t in profile.tasks:
            opts = {t.on_car.id: (t.on_car.utilities, None)}
            for o in t.options:
                opts[o.id] = (o.utilities, o.payloads)
            self._tasks.append(_TaskColumns(t.name, t.frame_positions, opts))
        self._cache: dict[tuple[str, str, str], FrameValue | None] = {}

    def option_ids(self) -> set[str]:
        """Every option id with per-frame utilities (any task)."""
        return {o for t in self._tasks for o, lists in t.options.items() if lists[0] is not None}

    def frame_ids(self) -> set[str]:
        """Every frame id the profile measured (any task)."""
        return {fid for t in self._tasks for fid in t.positions}

    def value(self, task: str, frame_id: str, option: str) -> FrameValue | None:
        """The measurement of ``option`` on the image ``frame_id`` (None: not measured)."""
        key = (task, frame_id, option)
        hit = self._cache.get(key, _MISSING)
        if hit is not _MISSING:
            return hit  # type: ignore[return-value]
        found = None
        ordered = sorted(self._tasks, key=lambda c: c.name != task)  # same-named task first (stable)
        for cols in ordered:
            k = cols.positions.get(frame_id)
            lists = cols.options.get(option)
            if k is None or lists is None or lists[0] is None:
                continue
            utilities, payloads = lists
            found = FrameValue(utilities[k], None if payloads is None else int(payloads[k]))
            break
        self._cache[key] = found
        return found


def task_frames(frames: Iterable[PlayedFrame], tasks: Sequence[ReplayTask]) -> list[tuple[ReplayTask, str]]:
    """(task, source frame id) of every task-frame of the replay (tasks whose camera has an image)."""
    out = []
    for pf in frames:
        cams = pf.cameras()
        for t in tasks:
            if t.camera in cams:
                out.append((t, pf.source_id(t.camera)))
    return out


def missing_measurements(index: PerFrameIndex, frames: Sequence[PlayedFrame],
                         tasks: Sequence[ReplayTask]) -> tuple[list[str], list[str]]:
    """Frame ids the index lacks (for some task-frame and option), and "task/option" pairs of the
    tasks whose option id has no per-frame measurement at all; both sorted, each once."""
    measured = index.option_ids()
    never = sorted({f"{t.name}/{o.id}" for t in tasks for o in t.options if o.id not in measured})
    missing: dict[str, None] = {}
    for task, fid in task_frames(frames, tasks):
        for o in task.options:
            if o.id not in measured:
                continue
            v = index.value(task.name, fid, o.id)
            if v is None or (not o.on_car and v.payload is None):
                missing[fid] = None
    return sorted(missing), never


def overlapping_frames(index: PerFrameIndex, frames: Sequence[PlayedFrame], tasks: Sequence[ReplayTask]) -> list[str]:
    """Ids of replayed images that the profile was measured on (sorted)."""
    measured = index.frame_ids()
    return sorted({fid for _, fid in task_frames(frames, tasks) if fid in measured})
