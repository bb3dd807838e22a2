"""Open a scene file of either kind (Waymo v1 Frame or TF-Example TFRecord) and summarise it."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from carlink.datasets import tf_example, waymo
from carlink.datasets.frames import Frame
from carlink.datasets.tfrecord import DEFAULT_MAX_RECORD_BYTES, CorruptRecord, TFRecordReader

SCENE_FORMATS = ("auto", waymo.FORMAT, tf_example.FORMAT)


def detect_scene_format(path: str | os.PathLike[str], max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> str:
    """'tf-example' if the first intact record is an image tf.train.Example, else 'waymo-frame'.

    Raises NotATFRecordError for files that are not TFRecords. An empty file is 'waymo-frame'.
    """
    reader = TFRecordReader(path, skip_corrupt=True, max_record_bytes=max_record_bytes)
    for record in reader:
        return tf_example.FORMAT if tf_example.is_image_example(record.data) else waymo.FORMAT
    return waymo.FORMAT


def read_frames(
    path: str | os.PathLike[str],
    format: str = "auto",
    *,
    verify_crc: bool = True,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    skip_corrupt: bool = False,
    reader: TFRecordReader | None = None,
) -> Iterator[Frame]:
    """Stream the frames of a scene file of either kind (``format``: one of SCENE_FORMATS)."""
    if format not in SCENE_FORMATS:
        raise ValueError(f"unknown scene format {format!r}; expected one of {', '.join(SCENE_FORMATS)}")
    if format == "auto":
        format = detect_scene_format(path, max_record_bytes)
    read = waymo.read_waymo_frames if format == waymo.FORMAT else tf_example.read_tf_example_frames
    return read(path, verify_crc=verify_crc, max_record_bytes=max_record_bytes,
                skip_corrupt=skip_corrupt, reader=reader)


@dataclass
class CameraSummary:
    images: int = 0
    sizes: Counter = field(default_factory=Counter)  # (width, height) -> images
    labels: int = 0
    labels_by_type: Counter = field(default_factory=Counter)  # type name -> labels


@dataclass
class SceneSummary:
    path: str
    format: str
    frames: int = 0
    contexts: list[str] = field(default_factory=list)
    first_time_s: float | None = None
    last_time_s: float | None = None
    time_basis: str = "timestamp_micros"  # or "frame index at 10 Hz" (TF-Example: no timestamps)
    cameras: dict[str, CameraSummary] = field(default_factory=dict)
    labels_by_type: Counter = field(default_factory=Counter)
    corrupt: list[CorruptRecord] = field(default_factory=list)
    bytes_skipped: int = 0
    synthetic: bool = False

    @property
    def labels(self) -> int:
        return sum(self.labels_by_type.values())

    @property
    def span_s(self) -> float | None:
        if self.first_time_s is None or self.last_time_s is None:
            return None
        return round(self.last_time_s - self.first_time_s, 6)  # timestamps are whole microseconds

    def add(self, frame: Frame) -> None:
        self.frames += 1
        if frame.context_name not in self.contexts:
            self.contexts.append(frame.context_name)
        if frame.timestamp_micros is None:
            self.time_basis = "frame index / 10 Hz (no timestamps in file)"
        t = frame.time_s
        if t is not None:
            self.first_time_s = t if self.first_time_s is None else min(self.first_time_s, t)
            self.last_time_s = t if self.last_time_s is None else max(self.last_time_s, t)
        for camera in frame.cameras:
            self.cameras.setdefault(camera.name, CameraSummary())
        for image in frame.images:
            cam = self.cameras[image.camera.name]
            cam.images += 1
            cam.sizes[(image.width, image.height)] += 1
        for camera, labels in frame.labels.items():
            cam = self.cameras[camera.name]
            for label in labels:
                cam.labels += 1
                cam.labels_by_type[label.type.label] += 1
                self.labels_by_type[label.type.label] += 1

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "format": self.format,
            "synthetic": self.synthetic,
            "frames": self.frames,
            "contexts": self.contexts,
            "time": {"first_s": self.first_time_s, "last_s": self.last_time_s, "span_s": self.span_s,
                     "basis": self.time_basis},
            "cameras": {
                name: {
                    "images": cam.images,
                    "sizes": [{"width": w, "height": h, "images": n} for (w, h), n in sorted(cam.sizes.items())],
                    "labels": cam.labels,
                    "labels_by_type": dict(sorted(cam.labels_by_type.items())),
                }
                for name, cam in self.cameras.items()
            },
            "labels": self.labels,
            "labels_by_type": dict(sorted(self.labels_by_type.items())),
            "corrupt_records": [{"index": c.index, "offset": c.offset, "reason": c.reason} for c in self.corrupt],
            "bytes_skipped": self.bytes_skipped,
        }


def summarize_scene(
    path: str | os.PathLike[str],
    format: str = "auto",
    *,
    skip_corrupt: bool = False,
    verify_crc: bool = True,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> SceneSummary:
    """Read every frame of a scene file (no image is decoded) and count what it holds."""
    if format == "auto":
        format = detect_scene_format(path, max_record_bytes)
    reader = TFRecordReader(path, verify_crc=verify_crc, max_record_bytes=max_record_bytes,
                            skip_corrupt=skip_corrupt)
    summary = SceneSummary(str(Path(path)), format)
    for frame in read_frames(path, format, reader=reader):
        summary.add(frame)
    summary.corrupt = list(reader.report.corrupt)
    summary.bytes_skipped = reader.report.bytes_skipped
    return summary
