"""A detector that finds nothing at near-zero cost: for measuring the serving path alone."""

from __future__ import annotations

import numpy as np

from carlink.detection import Detection
from carlink.zoo.base import Detector, ModelSpec, check_bgr_image

NOOP_SPEC = ModelSpec(
    name="noop",
    family="noop",
    input_size=None,
    classes=(),
    description="returns no detections; isolates decode, transport and queueing costs",
    batchable=True,
    tags=("benchmark",),
    needs_pixels=False,
)


class NoopDetector(Detector):
    pretrained = True  # nothing to learn: its (empty) output is exactly what it is meant to give

    def __init__(self, spec: ModelSpec = NOOP_SPEC) -> None:
        self.spec = spec
        self.device = "cpu"

    def detect(self, image: np.ndarray) -> list[Detection]:
        check_bgr_image(image, self.spec.name)
        return []

    def detect_batch(self, images) -> list[list[Detection]]:
        return [self.detect(im) for im in images]

