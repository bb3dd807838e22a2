"""A small synthetic Waymo v1 scene, generated in code: the built-in example of ``carlink scene info``.

It is NOT real data. Each frame has a few cameras with cv2-encoded JPEG images of drawn "objects"
(filled rectangles on a road-like background) and one camera label per drawn object, with the
box exactly around it, so detectors and evaluation code can be exercised end to end without any
dataset. The output is deterministic for a given seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from carlink.datasets.frames import (
    CameraCalibration,
    CameraImage,
    CameraLabel,
    CameraName,
    ContextStats,
    Frame,
)
from carlink.datasets.tfrecord import TFRecordWriter
from carlink.datasets.waymo import frame_to_proto
from carlink.detection import Box2D, WaymoClass

SYNTHETIC_CONTEXT = "synthetic_carlink_example"
_COLORS = {WaymoClass.VEHICLE: (40, 40, 200), WaymoClass.PEDESTRIAN: (40, 200, 40), WaymoClass.CYCLIST: (200, 40, 40)}
_SHAPES = {WaymoClass.VEHICLE: (0.16, 0.10), WaymoClass.PEDESTRIAN: (0.04, 0.16), WaymoClass.CYCLIST: (0.06, 0.12)}


@dataclass(frozen=True)
class SyntheticSpec:
    frames: int = 3
    cameras: tuple[CameraName, ...] = (CameraName.FRONT, CameraName.FRONT_LEFT, CameraName.FRONT_RIGHT)
    width: int = 480
    height: int = 320
    objects_per_camera: int = 4
    jpeg_quality: int = 90
    start_timestamp_micros: int = 1_700_000_000_000_000
    seed: int = 0


def _render(rng: np.random.Generator, spec: SyntheticSpec, camera: CameraName, t: int) -> tuple[bytes, tuple[CameraLabel, ...]]:
    w, h = spec.width, spec.height
    image = np.empty((h, w, 3), np.uint8)
    image[: h // 2] = (235, 206, 135)  # sky
    image[h // 2:] = (90, 90, 90)  # road
    noise = rng.integers(0, 12, size=image.shape, dtype=np.uint8)
    image = cv2.add(image, noise)
    labels = []
    for k in range(spec.objects_per_camera):
        cls = (WaymoClass.VEHICLE, WaymoClass.PEDESTRIAN, WaymoClass.CYCLIST)[k % 3]
        bw, bh = _SHAPES[cls][0] * w, _SHAPES[cls][1] * h * 2
        # Objects drift to the right from frame to frame, so consecutive frames differ.
        cx = (0.15 + 0.7 * rng.random() + 0.02 * t) % 0.85 * w + bw / 2
        cy = h * (0.55 + 0.3 * rng.random())
        x1, y1 = int(round(cx - bw / 2)), int(round(cy - bh / 2))
        x2, y2 = int(round(cx + bw / 2)), int(round(cy + bh / 2))
        x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w - 1), min(y2, h - 1)
        cv2.rectangle(image, (x1, y1), (x2, y2), _COLORS[cls], thickness=-1)
        labels.append(CameraLabel(Box2D.from_xyxy(x1, y1, x2 + 1, y2 + 1), cls, f"synthetic-{camera.name.lower()}-{k}"))
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality])
    if not ok:
        raise RuntimeError("cv2 could not encode the synthetic image")
    return jpeg.tobytes(), tuple(labels)


def make_synthetic_frames(spec: SyntheticSpec = SyntheticSpec()) -> list[Frame]:
    """Frames 100 ms apart (10 Hz, like Waymo), deterministic for ``spec.seed``."""
    rng = np.random.default_rng(spec.seed)
    frames = []
    for t in range(spec.frames):
        ts = spec.start_timestamp_micros + t * 100_000
        images, labels = [], {}
        for camera in spec.cameras:
            data, cam_labels = _render(rng, spec, camera, t)
            images.append(CameraImage(camera, spec.width, spec.height, data, "jpeg", ts / 1e6 + 0.05))
            labels[camera] = cam_labels
        frames.append(Frame(
            context_name=SYNTHETIC_CONTEXT, timestamp_micros=ts, frame_index=t, images=tuple(images),
            labels=labels,
            calibrations={c: CameraCalibration(c, spec.width, spec.height) for c in spec.cameras},
            stats=ContextStats("Day", "synthetic", "sunny"),
        ))
    return frames


def write_synthetic_scene(path: str | os.PathLike[str], spec: SyntheticSpec = SyntheticSpec()) -> Path:
    """Write the synthetic frames as a Waymo v1 Frame TFRecord file; return its path."""
    path = Path(path)
    with TFRecordWriter(path) as writer:
        for frame in make_synthetic_frames(spec):
            writer.write(frame_to_proto(frame).SerializeToString())
    return path
