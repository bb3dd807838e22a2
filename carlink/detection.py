"""Detection and box types shared by the car, the cloud and the evaluation."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class WaymoClass(enum.IntEnum):
    """Object classes, numbered as `waymo.open_dataset.Label.Type`."""

    UNKNOWN = 0
    VEHICLE = 1
    PEDESTRIAN = 2
    SIGN = 3
    CYCLIST = 4

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Box2D:
    """An axis-aligned image box in Waymo's convention, in pixels.

    ``length`` is the extent along x (image columns), ``width`` the extent along y (rows).
    """

    center_x: float
    center_y: float
    length: float
    width: float

    @classmethod
    def from_xyxy(cls, x1: float, y1: float, x2: float, y2: float) -> "Box2D":
        return cls((x1 + x2) / 2.0, (y1 + y2) / 2.0, x2 - x1, y2 - y1)

    def to_xyxy(self) -> tuple[float, float, float, float]:
        hx, hy = self.length / 2.0, self.width / 2.0
        return (self.center_x - hx, self.center_y - hy, self.center_x + hx, self.center_y + hy)

    def to_xywh(self) -> tuple[float, float, float, float]:
        """COCO's [x, y, w, h] (top-left corner and size)."""
        x1, y1, _, _ = self.to_xyxy()
        return (x1, y1, self.length, self.width)

    def scaled(self, sx: float, sy: float) -> "Box2D":
        return Box2D(self.center_x * sx, self.center_y * sy, self.length * sx, self.width * sy)


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object: box in the original image's pixels, confidence, Waymo class."""

    box: Box2D
    score: float
    cls: WaymoClass
