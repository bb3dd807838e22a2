"""Five-camera cars composed from real single-camera sequences.

The real 1 Hz Waymo sequences here hold the FRONT camera only. Played in lockstep as the cameras
FRONT, FRONT_LEFT, FRONT_RIGHT, SIDE_LEFT and SIDE_RIGHT of one car (fewer files: fewer cameras),
they exercise the cross-task allocation on real images: frame k of every sequence is captured at
the same instant, and each image keeps its own real labels, re-keyed to the camera slot it plays
as. Sequences of different lengths play to the shortest (and the playlist says so).

``rate_hz`` plays the composed frames at that rate (the 1 Hz sequences at 10 Hz: time
compressed tenfold, so the link carries a real car's frame rate). Several compositions play one
after the other, like several scene files do.

Each image keeps the id of its source frame (``PlayedFrame.camera_ids``): a per-frame utility
belongs to the image and the option, whichever camera slot it plays in, so one profile measured
on the sequences serves any composition.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Sequence

from carlink.datasets.frames import CameraName, Frame
from carlink.replay.player import DEFAULT_GAP_S, PlayedFrame, Playlist, PlayerError, read_scene

CAR_CAMERAS = (CameraName.FRONT, CameraName.FRONT_LEFT, CameraName.FRONT_RIGHT,
               CameraName.SIDE_LEFT, CameraName.SIDE_RIGHT)
COMPOSED_LABEL = "composed from real sequences"


def _source_camera(frame: Frame, path: str | Path, k: int) -> CameraName:
    """The camera of a sequence that plays in a slot: its only image, or FRONT where it has more."""
    cams = [im.camera for im in frame.images]
    if len(cams) == 1:
        return cams[0]
    if CameraName.FRONT in cams:
        return CameraName.FRONT
    raise PlayerError(f"{path}: frame {k} has {'no camera image' if not cams else 'several cameras and no FRONT'}: "
                      "a composed camera needs one image per frame")


def compose_frame(sources: Sequence[Frame], paths: Sequence[str | Path], k: int) -> tuple[Frame, dict[str, str]]:
    """One car frame from frame k of each sequence: image and labels of sequence s as camera
    CAR_CAMERAS[s]; also the source frame id of each camera."""
    images, labels, ids = [], {}, {}
    for slot, (frame, path) in zip(CAR_CAMERAS, zip(sources, paths)):
        cam = _source_camera(frame, path, k)
        images.append(dataclasses.replace(frame.image(cam), camera=slot))
        labels[slot] = tuple(frame.labels.get(cam, ()))
        ids[slot.name] = frame.stable_id
    context = "+".join(f.context_name for f in sources)
    composed = Frame(context_name=context, timestamp_micros=None, frame_index=k, images=tuple(images),
                     labels=labels)
    return composed, ids


def _native_period_s(frames: Sequence[Frame]) -> float | None:
    times = [f.time_s for f in frames]
    if len(times) < 2 or any(t is None for t in times):
        return None
    steps = [b - a for a, b in zip(times, times[1:])]
    period = statistics.median(steps)
    return period if period > 0 else None


def compose_playlist(groups: Sequence[Sequence[str | Path]], rate_hz: float | None = None,
                     max_frames: int | None = None, gap_s: float = DEFAULT_GAP_S) -> Playlist:
    """Read each group of sequence files as one car (files in CAR_CAMERAS order) and play the
    cars one after the other. Without ``rate_hz`` frame k plays at the first sequence's own time
    of frame k."""
    if not groups:
        raise PlayerError("no composition given")
    frames: list[PlayedFrame] = []
    warnings: list[str] = []
    native: list[float] = []
    start = 0.0
    for c, paths in enumerate(groups):
        if not paths:
            raise PlayerError(f"composition {c + 1} names no sequence file")
        if len(paths) > len(CAR_CAMERAS):
            raise PlayerError(f"composition {c + 1} names {len(paths)} sequences; a car has at most "
                              f"{len(CAR_CAMERAS)} cameras ({', '.join(n.name for n in CAR_CAMERAS)})")
        sequences = [read_scene(p) for p in paths]
        empty = [str(p) for p, s in zip(paths, sequences) if not s]
        if empty:
            raise PlayerError(f"composition {c + 1}: sequence file {', '.join(empty)} is empty (no frames)")
        lengths = [len(s) for s in sequences]
        n = min(lengths)
        if len(set(lengths)) > 1:
            warnings.append(f"composition {c + 1}: its sequences differ in length "
                            f"({', '.join(f'{Path(p).name}: {m}' for p, m in zip(paths, lengths))} frames); "
                            f"it plays to the shortest, {n} frames")
        period = _native_period_s(sequences[0])
        if period is not None:
            native.append(1.0 / period)
        first = sequences[0][0].time_s
        last = start
        for k in range(n):
            if max_frames is not None and len(frames) >= max_frames:
                break
            frame, ids = compose_frame([s[k] for s in sequences], paths, k)
            if rate_hz:
                t = start + k / rate_hz
            else:
                own = sequences[0][k].time_s
                t = start + ((own - first) if own is not None and first is not None else k * 0.1)
            if frames and t < frames[-1].t:
                raise PlayerError(f"{paths[0]}: record {k}: time stamp goes back")
            frames.append(PlayedFrame(len(frames), t, frame, c, "|".join(ids.values()), ids))
            last = t
        start = last + gap_s
    if not frames:
        raise PlayerError("the compositions hold no frame")
    return Playlist(frames, describe(groups, rate_hz, native), tuple(warnings), rate_hz, composed=True)


def describe(groups: Sequence[Sequence[str | Path]], rate_hz: float | None, native_hz: Sequence[float]) -> str:
    """E.g. "composed from real sequences: 3 cars of 5 cameras, played at 10 Hz (recorded at
    1 Hz: time compressed 10x)"."""
    sizes = sorted({len(g) for g in groups})
    cams = "/".join(str(s) for s in sizes)
    cars = f"{len(groups)} car{'s' if len(groups) != 1 else ''} of {cams} camera{'s' if sizes != [1] else ''}"
    src = statistics.median(native_hz) if native_hz else None
    if rate_hz:
        rate = f"played at {rate_hz:g} Hz"
        if src:
            factor = rate_hz / src
            how = "compressed" if factor > 1 else "stretched"
            rate += (f" (recorded at {src:g} Hz: time {how} {max(factor, 1 / factor):g}x)"
                     if abs(factor - 1) > 1e-9 else " (as recorded)")
    else:
        rate = f"played at their own rate ({src:g} Hz)" if src else "played at their own time stamps"
    return f"{COMPOSED_LABEL}: {cars}, {rate}"
