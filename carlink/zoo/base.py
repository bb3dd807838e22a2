"""One detector interface for every model of the zoo (HOG, torchvision, test stand-ins)."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from carlink.detection import Detection, WaymoClass


@dataclass(frozen=True)
class ModelSpec:
    """What a model is, independent of whether its weights are loaded."""

    name: str
    family: str  # e.g. "hog", "torchvision", "noop"
    input_size: tuple[int, int] | None  # (width, height) the model resizes to; None: native size
    classes: tuple[WaymoClass, ...]
    description: str = ""
    batchable: bool = False  # True where detect_batch runs one forward pass for many images
    tags: tuple[str, ...] = field(default=())
    # False for models that ignore pixel values (the no-op stand-in): the server still checks the
    # image header and limits but skips the decode, so benchmarks measure the serving path alone.
    needs_pixels: bool = True


class Detector(abc.ABC):
    """Image in (H x W x 3, uint8, BGR as cv2 decodes it), detections out.

    Boxes are in the pixels of the image given, with Waymo classes. Implementations are
    thread-compatible: one call at a time per instance (the server serialises per model).
    """

    spec: ModelSpec
    pretrained: bool  # False: randomly initialised weights (served only with --allow-untrained)
    device: str = "cpu"

    @abc.abstractmethod
    def detect(self, image: np.ndarray) -> list[Detection]:
        """Detect objects in one image."""

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Detect objects in several images; batchable models override this with one pass."""
        return [self.detect(im) for im in images]

    @property
    def name(self) -> str:
        return self.spec.name


def check_bgr_image(image: np.ndarray, model: str) -> None:
    """Refuse anything but an H x W x 3 uint8 array, naming the model and what was wrong."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"model {model}: expected a numpy image, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"model {model}: expected an HxWx3 BGR image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"model {model}: expected a uint8 image, got dtype {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"model {model}: empty image of shape {image.shape}")
