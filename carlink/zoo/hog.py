"""OpenCV's pretrained HOG + linear-SVM pedestrian detectors, in cost/accuracy variants.

Two real pretrained detectors ship inside OpenCV and run offline: the default people detector
(Dalal-Triggs, 64x128 window, trained on INRIA) and the Daimler one (48x96 window). The variants
trade cost for accuracy with three knobs: the input scale (how much the image is shrunk before
detection), the window stride (how densely windows are placed) and the pyramid scale (the factor
between levels of the image pyramid, closer to 1 = more levels).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from carlink.detection import Box2D, Detection, WaymoClass
from carlink.zoo.base import Detector, ModelSpec, check_bgr_image


@dataclass(frozen=True)
class HogParams:
    """How one HOG variant runs."""

    detector: str  # "default" (64x128 people detector) or "daimler" (48x96)
    input_scale: float  # the image is resized by this factor first (1.0: native resolution)
    win_stride: int  # window step in pixels of the resized image
    pyramid_scale: float  # ratio between pyramid levels (> 1)
    hit_threshold: float = 0.0  # SVM margin a window needs to count
    group_threshold: int = 2  # overlapping windows needed to keep a grouped box (cv2 default)
    # Fraction of the detection window trimmed from each side (x, y) to get the person's box.
    # The default detector's 64x128 training windows (INRIA) hold a person about 96 px tall and
    # 32 px wide at the centre; labels box the person tightly, so the raw window would fail IoU.
    box_trim: tuple[float, float] = (0.0, 0.0)


def _descriptor(kind: str) -> cv2.HOGDescriptor:
    if kind == "default":
        hog = cv2.HOGDescriptor()  # (64,128) window, (16,16) block, (8,8) stride/cell, 9 bins
        hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    elif kind == "daimler":
        hog = cv2.HOGDescriptor((48, 96), (16, 16), (8, 8), (8, 8), 9)
        hog.setSVMDetector(cv2.HOGDescriptor_getDaimlerPeopleDetector())
    else:
        raise ValueError(f"unknown HOG detector {kind!r}: expected 'default' or 'daimler'")
    return hog


class HogDetector(Detector):
    """One HOG variant. Scores are the SVM margins that cv2 reports for each grouped box."""

    pretrained = True

    def __init__(self, spec: ModelSpec, params: HogParams) -> None:
        if not 0.0 < params.input_scale <= 4.0:
            raise ValueError(f"model {spec.name}: input_scale {params.input_scale} not in (0, 4]")
        if params.win_stride < 1 or params.pyramid_scale <= 1.0:
            raise ValueError(f"model {spec.name}: need win_stride >= 1 and pyramid_scale > 1")
        self.spec = spec
        self.params = params
        self.device = "cpu"
        self._hog = _descriptor(params.detector)

    def detect(self, image: np.ndarray) -> list[Detection]:
        check_bgr_image(image, self.spec.name)
        p = self.params
        scale = p.input_scale
        if scale != 1.0:
            h, w = image.shape[:2]
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
            image = cv2.resize(image, size, interpolation=interp)
            sx, sy = w / size[0], h / size[1]  # exact back-mapping despite rounding
        else:
            sx = sy = 1.0
        win_w, win_h = self._hog.winSize
        if image.shape[0] < win_h or image.shape[1] < win_w:
            return []  # smaller than one detection window: nothing can be found
        rects, weights = self._hog.detectMultiScale(
            image,
            hitThreshold=p.hit_threshold,
            winStride=(p.win_stride, p.win_stride),
            padding=(8, 8),
            scale=p.pyramid_scale,
            groupThreshold=p.group_threshold,
        )
        weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        out = []
        for (x, y, w, h), score in zip(np.asarray(rects).reshape(-1, 4), weights):
            tx, ty = p.box_trim[0] * w, p.box_trim[1] * h
            box = Box2D.from_xyxy((x + tx) * sx, (y + ty) * sy, (x + w - tx) * sx, (y + h - ty) * sy)
            out.append(Detection(box=box, score=float(score), cls=WaymoClass.PEDESTRIAN))
        out.sort(key=lambda d: d.score, reverse=True)
        return out


# name -> how it runs. Ordered cheap to expensive within each detector.
_INRIA_TRIM = (0.25, 0.125)

HOG_VARIANTS: dict[str, HogParams] = {
    "hog-default-fast": HogParams("default", 0.5, win_stride=16, pyramid_scale=1.2, box_trim=_INRIA_TRIM),
    "hog-default": HogParams("default", 0.75, win_stride=8, pyramid_scale=1.1, box_trim=_INRIA_TRIM),
    "hog-default-accurate": HogParams("default", 1.0, win_stride=4, pyramid_scale=1.05, box_trim=_INRIA_TRIM),
    "hog-daimler-fast": HogParams("daimler", input_scale=0.5, win_stride=16, pyramid_scale=1.2),
    "hog-daimler": HogParams("daimler", input_scale=0.75, win_stride=8, pyramid_scale=1.1),
    "hog-daimler-accurate": HogParams("daimler", input_scale=1.0, win_stride=4, pyramid_scale=1.05),
}


def hog_spec(name: str, params: HogParams) -> ModelSpec:
    window = "64x128" if params.detector == "default" else "48x96"
    return ModelSpec(
        name=name,
        family="hog",
        input_size=None,
        classes=(WaymoClass.PEDESTRIAN,),
        description=(
            f"OpenCV HOG+SVM {params.detector} people detector ({window} window); input x"
            f"{params.input_scale:g}, stride {params.win_stride}px, pyramid x{params.pyramid_scale:g}"
        ),
        batchable=False,
        tags=("pretrained", "offline", "cpu"),
    )
