"""The scene player: the frames of one or more scene files on one timeline, at their timestamps.

Frame times are relative to the first frame of the scene (Waymo Frame ``timestamp_micros``; the
1 Hz TF-Example sequences' ``frame_index / 10``), or ``k / rate_hz`` for the k-th frame when a
rate is given. Several scenes play one after the other, each starting ``gap_s`` after the
previous one's last frame. Frames are read lazily but kept (they hold encoded JPEGs only, a few
hundred KB each); images are decoded only by whoever needs pixels.

Five-camera cars composed from single-camera sequences are built by replay/compose.py and play
through the same :class:`PlayedFrame`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterable, Mapping, Sequence

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
    scene: int  # index of the scene file (or composition) it came from
    frame_id: str  # the frame's id (Frame.stable_id; a composed frame's joins its sources')
    # Camera -> the id of the source frame whose image plays as that camera (composed frames):
    # a profile's per-frame values belong to the image, whichever camera slot it plays in.
    camera_ids: Mapping[str, str] = field(default_factory=dict)

    @cached_property
    def camera_names(self) -> frozenset[str]:
        return frozenset(im.camera.name for im in self.frame.images)

    def cameras(self) -> frozenset[str]:
        return self.camera_names

    def source_id(self, camera: str) -> str:
        """The id a profile keys this camera's image by (its source frame's Frame.stable_id)."""
        return self.camera_ids.get(camera, self.frame_id)


@dataclass(frozen=True)
class Playlist:
    """Frames on one timeline plus what a reader of the results must know about them."""

    frames: list[PlayedFrame]
    description: str  # what the scenes are, e.g. "3 scene files" or "composed from real sequences ..."
    warnings: tuple[str, ...] = ()
    rate_hz: float | None = None  # frames played at this rate; None: at their own time stamps
    composed: bool = False


def play(frames_per_scene: Iterable[Sequence[Frame]], gap_s: float = DEFAULT_GAP_S,
         max_frames: int | None = None, rate_hz: float | None = None) -> list[PlayedFrame]:
    """Place the frames of each scene on one timeline (``rate_hz``: the k-th frame of a scene at
    k / rate_hz instead of its own time stamp)."""
    out: list[PlayedFrame] = []
    start = 0.0
    for s, frames in enumerate(frames_per_scene):
        t0 = None
        last = start
        for k, frame in enumerate(frames):
            if max_frames is not None and len(out) >= max_frames:
                return out
            ts = k / rate_hz if rate_hz else frame.time_s
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


def read_scene(path: str | Path) -> list[Frame]:
    """All frames of one scene file (PlayerError when it is missing or not a file)."""
    p = Path(path)
    if not p.exists():
        raise PlayerError(f"scene file {p} does not exist")
    if not p.is_file():
        raise PlayerError(f"scene file {p} is not a file")
    return list(read_frames(p))


def load_playlist(paths: Sequence[str | Path], max_frames: int | None = None, gap_s: float = DEFAULT_GAP_S,
                  rate_hz: float | None = None) -> Playlist:
    """Read scene files (Waymo v1 Frame or TF-Example TFRecords) into one replay timeline; an
    empty file is skipped with a warning, no frame at all is an error."""
    scenes, warnings = [], []
    for p in paths:
        frames = read_scene(p)
        if not frames:
            warnings.append(f"scene file {p} is empty (no frames): skipped")
        scenes.append(frames)
    frames = play(scenes, gap_s, max_frames, rate_hz)
    if not frames:
        raise PlayerError(f"no frames in {', '.join(map(str, paths))}")
    what = f"{len(paths)} scene file{'s' if len(paths) != 1 else ''}"
    if rate_hz:
        what += f" at {rate_hz:g} Hz"
    return Playlist(frames, what, tuple(warnings), rate_hz)


def load_scenes(paths: Sequence[str | Path], max_frames: int | None = None,
                gap_s: float = DEFAULT_GAP_S) -> list[PlayedFrame]:
    """Read scene files into one replay timeline (the frames of :func:`load_playlist`)."""
    return load_playlist(paths, max_frames, gap_s).frames
