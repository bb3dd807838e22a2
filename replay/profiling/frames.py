"""The frames a profile is measured on, and the windows its windowed utilities cover."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from carlink.datasets.errors import DatasetError
from carlink.datasets.frames import Frame
from carlink.datasets.scene import detect_scene_format, read_frames
from carlink.replay.profiling.errors import ProfilerError


@dataclass(frozen=True)
class FrameRef:
    """One frame of one scene file, with its stable id (what per-frame values are keyed by)."""

    id: str
    scene: int  # index into the scene list
    context: str
    frame: Frame


def load_frames(scenes: Sequence[str], max_frames: int | None = None) -> list[FrameRef]:
    """Every frame of the scene files in order (the first ``max_frames`` of each where given)."""
    out: list[FrameRef] = []
    seen: set[str] = set()
    for i, path in enumerate(scenes):
        if not Path(path).exists():
            raise ProfilerError(f"scene file {path} does not exist")
        if not Path(path).is_file():
            raise ProfilerError(f"scene file {path} is not a file (for a folder, name its *.tfrecord files)")
        try:
            for n, frame in enumerate(read_frames(path)):
                if max_frames is not None and n >= max_frames:
                    break
                fid = frame.stable_id
                if fid in seen:
                    raise ProfilerError(f"{path}: frame {fid} appears twice among the scenes")
                seen.add(fid)
                out.append(FrameRef(fid, i, frame.context_name, frame))
        except DatasetError as exc:  # not a TFRecord, a corrupt record: named, not a traceback
            raise ProfilerError(f"scene: {exc}") from None
    return out


def windows(frames: Sequence[FrameRef], size: int) -> list[tuple[int, int]]:
    """Consecutive runs of ``size`` frames (half-open index ranges) that never cross a context."""
    out: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(frames) + 1):
        if i == len(frames) or frames[i].context != frames[start].context or i - start == size:
            out.append((start, i))
            start = i
    return out


def scene_provenance(scenes: Sequence[str], frames: Sequence[FrameRef]) -> list[dict]:
    """Per scene file: path, content hash, format and frames used (the profile's ``data``)."""
    out = []
    for i, path in enumerate(scenes):
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        out.append({"path": path, "sha256": digest, "format": detect_scene_format(path),
                    "frames": sum(1 for f in frames if f.scene == i)})
    return out
