"""Camera frames as both scene readers present them (Waymo v1 Frame and TF-Example records).

Reading a frame never decodes an image: sizes come from the stored metadata or the JPEG/PNG
header, labels are plain values, and pixels are decoded (with cv2) only when
:meth:`CameraImage.decode` is called.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from typing import Mapping

import cv2
import numpy as np

from carlink.detection import Box2D, WaymoClass


class CameraName(enum.IntEnum):
    """Cameras, numbered as ``waymo.open_dataset.CameraName.Name``."""

    UNKNOWN = 0
    FRONT = 1
    FRONT_LEFT = 2
    FRONT_RIGHT = 3
    SIDE_LEFT = 4
    SIDE_RIGHT = 5
    REAR_LEFT = 6
    REAR = 7
    REAR_RIGHT = 8


@dataclass(frozen=True, slots=True)
class CameraLabel:
    """One 2D box label on one camera image, in that image's pixels."""

    box: Box2D
    type: WaymoClass
    id: str  # the dataset's object id; "" where the source has none (TF-Example)


@dataclass(frozen=True, slots=True)
class CameraCalibration:
    camera: CameraName
    width: int
    height: int


@dataclass(frozen=True, slots=True, eq=False)
class CameraImage:
    """One encoded camera image. ``data`` stays encoded until :meth:`decode`."""

    camera: CameraName
    width: int
    height: int
    data: bytes
    encoding: str  # "jpeg" or "png" (from the magic bytes), "unknown" otherwise
    pose_timestamp: float | None  # seconds since the Unix epoch; None where the source has none

    def decode(self, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
        """Decode to an H x W x 3 uint8 BGR array (cv2's convention)."""
        return decode_image(self.data, flags, what=f"{self.camera.name} image")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def decode_image(data: bytes, flags: int = cv2.IMREAD_COLOR, what: str = "image") -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if image is None:
        raise ValueError(f"cannot decode {what} ({len(data)} bytes, starts {data[:4]!r})")
    return image


@dataclass(frozen=True, slots=True)
class ContextStats:
    """Segment-level metadata of a Waymo context (empty strings where absent)."""

    time_of_day: str = ""
    location: str = ""
    weather: str = ""


@dataclass(frozen=True, slots=True)
class FrameSource:
    """Where a frame was read from."""

    path: str
    record_index: int
    offset: int  # byte offset of the record in the file
    format: str  # "waymo-frame" or "tf-example"


@dataclass(frozen=True, eq=False)
class Frame:
    """One time step of one driving segment: camera images and their 2D box labels.

    ``timestamp_micros`` is the frame start time where the source has one (Waymo Frame). The 1 Hz
    TF-Example sequences have none: there ``frame_index`` is the index of the frame in its 10 Hz
    Waymo segment, parsed from ``image/filename``, and :attr:`time_s` is ``frame_index / 10``.
    """

    context_name: str
    timestamp_micros: int | None
    frame_index: int | None
    images: tuple[CameraImage, ...]
    labels: Mapping[CameraName, tuple[CameraLabel, ...]]
    calibrations: Mapping[CameraName, CameraCalibration] = field(default_factory=dict)
    stats: ContextStats = ContextStats()
    n_laser_labels: int = 0
    source: FrameSource | None = None

    SOURCE_RATE_HZ = 10.0  # Waymo v1 segments are recorded at 10 Hz

    @property
    def time_s(self) -> float | None:
        """Seconds: the timestamp where there is one, else frame_index / 10 (relative)."""
        if self.timestamp_micros is not None:
            return self.timestamp_micros / 1e6
        if self.frame_index is not None:
            return self.frame_index / self.SOURCE_RATE_HZ
        return None

    @property
    def stable_id(self) -> str:
        """An id that names this frame across runs and tools (profiles key per-frame values by it):
        context@timestamp, else context#index, else context/record<n>."""
        if self.timestamp_micros is not None:
            return f"{self.context_name}@{self.timestamp_micros}"
        if self.frame_index is not None:
            return f"{self.context_name}#{self.frame_index}"
        rec = self.source.record_index if self.source else 0
        return f"{self.context_name}/record{rec}"

    @property
    def cameras(self) -> tuple[CameraName, ...]:
        """Cameras with an image, a calibration or labels, in Waymo's numbering order."""
        names = {im.camera for im in self.images} | set(self.labels) | set(self.calibrations)
        return tuple(sorted(names))

    def image(self, camera: CameraName) -> CameraImage | None:
        for im in self.images:
            if im.camera == camera:
                return im
        return None

    def all_labels(self) -> list[tuple[CameraName, CameraLabel]]:
        return [(cam, label) for cam, labels in self.labels.items() for label in labels]
