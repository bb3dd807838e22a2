"""The scene player: the frames of one or more scene files on one timeline, at their timestamps.

Frame times are relative to the first frame of the scene (Waymo Frame ``timestamp_micros``; the
1 Hz TF-Example sequences' ``frame_index / 10``). Several scenes play one after the other, each
starting ``gap_s`` after the previous one's last frame. Frames are read lazily but kept (they hold
encoded JPEGs only, a few hundred KB each); images are decoded only by whoever needs pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterable, Sequence

from carlink.datasets.frames import Frame
from carlink.datasets.scene import read_frames

DEFAULT_GAP_S = 1.0
_DEFAULT_PERIOD_S = 0.1  # frames without any time stamp: 10 Hz, as Waymo records


class PlayerError(ValueError):
    """A scene that cannot be played (message names the file and record)."""


@dataclass(frozen=True, eq=False)
class PlayedFrame:
    index: int  # position in the replay (0, 1, ...)
    t: float  # seconds on the replay timeline (first frame at 0)
    frame: Frame
    scene: int  # index of the scene file it came from
    frame_id: str  # the profiler's id of the frame (profile per-frame values are keyed by it)

    @cached_property
    def camera_names(self) -> frozenset[str]:
        return frozenset(im.camera.name for im in self.frame.images)

    def cameras(self) -> frozenset[str]:
        return self.camera_names


def play(frames_per_scene: Iterable[Sequence[Frame]], gap_s: float = DEFAULT_GAP_S,
         max_frames: int | None = None) -> list[PlayedFrame]:
    """Place the frames of each scene on one timeline."""
    out: list[PlayedFrame] = []
    start = 0.0
    for s, frames in enumerate(frames_per_scene):
        t0 = None
        last = start
        for k, frame in enumerate(frames):
            if max_frames is not None and len(out) >= max_frames:
                return out
            ts = frame.time_s
            if ts is None:
                ts = k * _DEFAULT_PERIOD_S
            if t0 is None:
                t0 = ts
            t = start + (ts - t0)
            if out and t < out[-1].t:
                where = frame.source.path if frame.source else f"scene {s}"
                rec = frame.source.record_index if frame.source else k
                raise PlayerError(f"{where}: record {rec}: time stamp goes back by {out[-1].t - t:.3f} s")
            out.append(PlayedFrame(len(out), t, frame, s, frame.stable_id))
            last = t
        start = last + gap_s
    return out


def load_scenes(paths: Sequence[str | Path], max_frames: int | None = None,
                gap_s: float = DEFAULT_GAP_S) -> list[PlayedFrame]:
    """Read scene files (Waymo v1 Frame or TF-Example TFRecords) into one replay timeline."""
    scenes = []
    for p in paths:
        if not Path(p).is_file():
            raise PlayerError(f"scene file {p} does not exist")
        scenes.append(list(read_frames(p)))
    frames = play(scenes, gap_s, max_frames)
    if not frames:
        raise PlayerError(f"no frames in {', '.join(map(str, paths))}")
    return frames
