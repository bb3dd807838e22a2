"""Pre- and post-processing shared by both Darknet backends, so that they differ only in the network.

Pre-processing is cv2.dnn.blobFromImages(images, 1/255, (W, H), swapRB=True, crop=False): a plain
resize to the network input (no letterbox), BGR -> RGB, scaled to [0, 1], NCHW float32.

Post-processing takes the raw outputs of the convolutions that feed each [yolo] layer
(N x anchors*(5 + classes) x rows x cols) and decodes them as OpenCV's Region layer does for YOLO
(modules/dnn/src/layers/region_layer.cpp, logistic activation, new_coords=0):

    x = (col + (sigmoid(tx) - 0.5) * scale_x_y + 0.5) / cols      (same for y with rows)
    w = exp(tw) * anchor_w / input_width                          (same for h)
    score(class j) = sigmoid(objectness) * sigmoid(class_j)

OpenCV's layer then zeroes every class score <= 0.2 (its fixed `thresh`), too high for AP, which
needs the low-confidence tail: that is why both backends stop at the convolutions and share this
decoder, with the score threshold a setting. A test checks this decoder against OpenCV's own Region
output above 0.2. COCO classes map to Waymo types; a box's score for a Waymo type is its best
score among the COCO classes mapped there; then greedy NMS per Waymo type.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from carlink.detection import Box2D, Detection, WaymoClass
from carlink.zoo.darknet_cfg import YoloLayer
from carlink.zoo.errors import ModelFileError

# COCO names as coco.names spells them (Darknet's "motorbike", not torchvision's "motorcycle").
DARKNET_COCO_TO_WAYMO: dict[str, WaymoClass] = {
    "car": WaymoClass.VEHICLE,
    "truck": WaymoClass.VEHICLE,
    "bus": WaymoClass.VEHICLE,
    "motorbike": WaymoClass.VEHICLE,
    "person": WaymoClass.PEDESTRIAN,
    "bicycle": WaymoClass.CYCLIST,
}
DARKNET_WAYMO_CLASSES: tuple[WaymoClass, ...] = (WaymoClass.VEHICLE, WaymoClass.PEDESTRIAN, WaymoClass.CYCLIST)

# Chosen on the profiling sequences (README "Model zoo"): AP@0.5 keeps rising as the threshold
# falls to about 0.01 and is flat below, while the detections per frame grow tenfold.
DEFAULT_SCORE_THRESHOLD = 0.01
DEFAULT_NMS_IOU = 0.45  # Darknet's and OpenCV's samples' value


def read_class_names(path: Path, expected: int) -> tuple[str, ...]:
    """coco.names: one class name per line, as many as the [yolo] layers' classes."""
    try:
        names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except FileNotFoundError:
        raise ModelFileError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(path, f"cannot read: {exc}") from None
    if len(names) != expected:
        raise ModelFileError(path, f"{len(names)} class names: expected {expected}, one per line, as the cfg's "
                             "[yolo] classes")
    missing = [n for n in DARKNET_COCO_TO_WAYMO if n not in names]
    if missing:
        raise ModelFileError(path, f"no class named {', '.join(missing)}: expected COCO's names as in Darknet's coco.names")
    return names


def make_blob(images: Sequence[np.ndarray], input_size: tuple[int, int]) -> np.ndarray:
    """N x 3 x H x W float32 in [0, 1], RGB, each image resized to `input_size` (W, H)."""
    return cv2.dnn.blobFromImages(list(images), 1.0 / 255.0, input_size, swapRB=True, crop=False)


@dataclass(frozen=True)
class PostProcessor:
    """Raw [yolo] inputs -> Waymo detections in the pixels of the images given."""

    heads: tuple[YoloLayer, ...]
    class_names: tuple[str, ...]
    input_size: tuple[int, int]  # (W, H) the network ran at
    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    nms_iou: float = DEFAULT_NMS_IOU

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_threshold < 1.0:
            raise ValueError(f"score_threshold {self.score_threshold}: expected a number in [0, 1)")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ValueError(f"nms_iou {self.nms_iou}: expected a number in (0, 1]")

    def _mapped(self) -> list[tuple[WaymoClass, list[int]]]:
        out = []
        for waymo in DARKNET_WAYMO_CLASSES:
            ids = [i for i, n in enumerate(self.class_names) if DARKNET_COCO_TO_WAYMO.get(n) == waymo]
            out.append((waymo, ids))
        return out

    def candidates(self, outputs: Sequence[np.ndarray], index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image `index`'s boxes (k x 4: cx, cy, w, h, normalised) and Waymo scores (k x 3)."""
        mapped = self._mapped()
        boxes, scores = [], []
        in_w, in_h = self.input_size
        for layer, out in zip(self.heads, outputs):
            anchors = len(layer.anchors)
            rows, cols = out.shape[2], out.shape[3]
            raw = out[index].reshape(anchors, layer.classes + 5, rows, cols)
            obj = _sigmoid(raw[:, 4])
            # A class score is objectness x class probability <= objectness: prune before the rest.
            a, r, c = np.nonzero(obj > self.score_threshold)
            if a.size == 0:
                continue
            o = obj[a, r, c]
            s = layer.scale_x_y
            cx = (c + (_sigmoid(raw[a, 0, r, c]) - np.float32(0.5)) * np.float32(s) + np.float32(0.5)) / cols
            cy = (r + (_sigmoid(raw[a, 1, r, c]) - np.float32(0.5)) * np.float32(s) + np.float32(0.5)) / rows
            aw = np.array([layer.anchors[i][0] for i in range(anchors)], np.float32)[a]
            ah = np.array([layer.anchors[i][1] for i in range(anchors)], np.float32)[a]
            w = np.exp(raw[a, 2, r, c]) * aw / np.float32(in_w)
            h = np.exp(raw[a, 3, r, c]) * ah / np.float32(in_h)
            per_class = np.stack(
                [(o[:, None] * _sigmoid(raw[a[:, None], 5 + np.array(ids)[None, :], r[:, None], c[:, None]])).max(1)
                 for _, ids in mapped], axis=1)
            boxes.append(np.stack([cx, cy, w, h], axis=1))
            scores.append(per_class)
        if not boxes:
            return np.zeros((0, 4), np.float32), np.zeros((0, len(mapped)), np.float32)
        return np.concatenate(boxes).astype(np.float32), np.concatenate(scores).astype(np.float32)

    def detections(self, outputs: Sequence[np.ndarray], index: int, image_size: tuple[int, int]) -> list[Detection]:
        """Image `index`'s detections; `image_size` (W, H) of the image as given to the detector."""
        boxes, scores = self.candidates(outputs, index)
        img_w, img_h = image_size
        x1 = np.clip((boxes[:, 0] - boxes[:, 2] / 2) * img_w, 0, img_w)
        y1 = np.clip((boxes[:, 1] - boxes[:, 3] / 2) * img_h, 0, img_h)
        x2 = np.clip((boxes[:, 0] + boxes[:, 2] / 2) * img_w, 0, img_w)
        y2 = np.clip((boxes[:, 1] + boxes[:, 3] / 2) * img_h, 0, img_h)
        xyxy = np.stack([x1, y1, x2, y2], axis=1).astype(np.float64)
        dets: list[Detection] = []
        for k, waymo in enumerate(DARKNET_WAYMO_CLASSES):
            sel = np.nonzero(scores[:, k] > self.score_threshold)[0]
            if sel.size == 0:
                continue
            keep = sel[nms(xyxy[sel], scores[sel, k], self.nms_iou)]
            for box, score in zip(xyxy[keep].tolist(), scores[keep, k].tolist()):
                dets.append(Detection(Box2D.from_xyxy(*box), score, waymo))
        dets.sort(key=lambda d: d.score, reverse=True)
        return dets


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # OpenCV's formula; exp overflows to inf for logits below about -88, giving exactly 0.
    with np.errstate(over="ignore"):
        return (np.float32(1.0) / (np.float32(1.0) + np.exp(-x, dtype=np.float32))).astype(np.float32)


def nms(xyxy: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS: indices kept, best first. Ties keep input order (stable sort)."""
    order = np.argsort(-scores, kind="stable")
    areas = np.maximum(0.0, xyxy[:, 2] - xyxy[:, 0]) * np.maximum(0.0, xyxy[:, 3] - xyxy[:, 1])
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(xyxy[i, 2], xyxy[rest, 2]) - np.maximum(xyxy[i, 0], xyxy[rest, 0]))
        h = np.maximum(0.0, np.minimum(xyxy[i, 3], xyxy[rest, 3]) - np.maximum(xyxy[i, 1], xyxy[rest, 1]))
        inter = w * h
        union = areas[i] + areas[rest] - inter
        overlap = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
        order = rest[overlap <= iou]
    return np.asarray(keep, dtype=np.int64)
