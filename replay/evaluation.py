"""Accuracy metric: COCO-style average precision at IoU 0.5 per Waymo class, per frame and per set.

What is computed
----------------
For every evaluated class (vehicle, pedestrian, cyclist, sign; a class takes part in a frame or a
set only where it has at least one label), detections of that class are matched greedily to
labels of that class, highest score first, and AP is COCO's 101-point interpolated AP at a single
IoU threshold of 0.5. It equals ``pycocotools.cocoeval.COCOeval`` with ``iouType='bbox'``,
``iouThrs=[0.5]``, ``areaRng=[[0, 1e10]]`` ('all'), no crowd labels and a ``maxDets`` at least as
large as the number of detections per frame (checked in tests/replay/test_evaluation_ap.py to 1e-6).
The details that make it equal, taken from pycocotools:

* IoU on ``[x, y, w, h]`` boxes with no +1 pixel term (``bbIou`` in maskApi.c): the intersection
  width is ``min(x_d + w_d, x_g + w_g) - max(x_d, x_g)``, zero overlap when it is ``<= 0``, and
  the union is ``w_d*h_d + w_g*h_g - intersection``. Waymo boxes (center, length along x, width
  along y) are converted with :meth:`carlink.detection.Box2D.to_xywh`.
* Detections are ordered by descending score with a stable sort (numpy ``mergesort``): equal
  scores keep their input order within a frame and frame order across a set.
* A detection matches the unmatched label of highest IoU if that IoU is ``>= 0.5``; among labels
  with the same IoU the last one in input order wins (COCO's ``>=`` update rule).
* Precision is made monotone from the right, then read at the 101 recall points
  ``0, 0.01, ..., 1`` with ``searchsorted(side='left')``; recall points beyond the highest recall
  reached count as precision 0. AP is the mean of those 101 values.
* There is no cap on detections per frame (COCO's default of 100 would truncate busy frames).

Edge cases (what a frame counts as)
-----------------------------------
* A class with labels but no detections has AP 0.
* A class with detections but no labels is *not present*: it has no AP and is left out of the
  mean, as in COCO (its false positives still lower the class's AP over a set of frames, where
  other frames have labels of that class).
* A frame with no labels of any evaluated class has an *undefined* mean (``None``), whether or not
  it has detections, under the default :attr:`EmptyFrameRule.EXCLUDE`; means over frames skip
  such frames. Why: AP measures how well labelled objects are found; giving label-free frames a
  constant (TURBO counts a window with nothing to find as 1.0) adds the same value to every
  option and so flattens the differences between options that the allocator must rank, and it
  makes the reported utility depend on how many empty frames a scene happens to have. Replay
  compares every policy on the same frames, so skipping a frame skips it for all of them.
* :attr:`EmptyFrameRule.TURBO` reproduces TURBO's convention for those who want its numbers: a
  frame with neither labels nor detections counts as 1.0, a frame with detections but no labels
  as 0.0 (pure false positives). Frames with labels are unaffected.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Iterable, Protocol, Sequence

import numpy as np

from carlink.detection import Box2D, Detection, WaymoClass

IOU_THRESHOLD = 0.5
EVAL_CLASSES: tuple[WaymoClass, ...] = (
    WaymoClass.VEHICLE, WaymoClass.PEDESTRIAN, WaymoClass.CYCLIST, WaymoClass.SIGN,
)
# Exactly pycocotools' Params.recThrs (linspace, not arange: see the note there).
RECALL_POINTS = np.linspace(0.0, 1.0, 101, endpoint=True)


class Labeled(Protocol):
    """A ground-truth object: anything with a Waymo 2D box and a class."""

    @property
    def box(self) -> Box2D: ...

    @property
    def cls(self) -> WaymoClass: ...


@dataclass(frozen=True, slots=True)
class Label:
    """A ground-truth box (Waymo camera label) for the metric."""

    box: Box2D
    cls: WaymoClass


class EmptyFrameRule(enum.Enum):
    """How a frame without labels of any evaluated class counts in the frame mean."""

    EXCLUDE = "exclude"  # mean is None; skipped by means over frames (the default)
    TURBO = "turbo"  # 1.0 with no detections either, 0.0 with detections


@dataclass(frozen=True)
class ClassMatches:
    """One class in one frame: detections in score order, whether each matched, label count."""

    scores: np.ndarray  # float64, descending (stable order)
    matched: np.ndarray  # bool, same length
    n_labels: int


@dataclass(frozen=True)
class FrameMatches:
    """Matching result of one frame, per evaluated class. Pool several with :func:`set_ap`."""

    classes: dict[WaymoClass, ClassMatches]

    @property
    def n_labels(self) -> int:
        return sum(c.n_labels for c in self.classes.values())

    @property
    def n_detections(self) -> int:
        return sum(len(c.scores) for c in self.classes.values())


@dataclass(frozen=True)
class APResult:
    """AP per present class and their mean (None when no class is present; see module doc)."""

    per_class: dict[WaymoClass, float]
    mean: float | None
    n_labels: dict[WaymoClass, int] = field(default_factory=dict)
    n_detections: dict[WaymoClass, int] = field(default_factory=dict)


def _xywh(boxes: Sequence[Box2D], what: str) -> np.ndarray:
    arr = np.array([b.to_xywh() for b in boxes], dtype=np.float64).reshape(-1, 4)
    bad = ~np.isfinite(arr).all(axis=1) | (arr[:, 2] < 0) | (arr[:, 3] < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what} {i}: box {boxes[i]} has a non-finite coordinate or negative size")
    return arr


def iou_matrix(det_xywh: np.ndarray, gt_xywh: np.ndarray) -> np.ndarray:
    """IoU of every detection (rows) with every label (columns), as pycocotools' ``bbIou``."""
    d = det_xywh[:, None, :]
    g = gt_xywh[None, :, :]
    w = np.minimum(d[..., 2] + d[..., 0], g[..., 2] + g[..., 0]) - np.maximum(d[..., 0], g[..., 0])
    h = np.minimum(d[..., 3] + d[..., 1], g[..., 3] + g[..., 1]) - np.maximum(d[..., 1], g[..., 1])
    inter = w * h
    union = (d[..., 2] * d[..., 3]) + (g[..., 2] * g[..., 3]) - inter
    overlap = (w > 0) & (h > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(overlap, inter / np.where(overlap, union, 1.0), 0.0)


def _greedy_match(iou: np.ndarray) -> np.ndarray:
    """COCO matching: rows (detections) already in score order; returns matched flag per row."""
    n_det, n_gt = iou.shape
    matched = np.zeros(n_det, dtype=bool)
    if n_gt == 0:
        return matched
    taken = np.zeros(n_gt, dtype=bool)
    threshold = min(IOU_THRESHOLD, 1 - 1e-10)
    for d in range(n_det):
        row = np.where(taken, -1.0, iou[d])
        best = row.max()
        if best < threshold:
            continue
        g = n_gt - 1 - int(np.argmax(row[::-1]))  # the last label attaining the best IoU
        taken[g] = True
        matched[d] = True
    return matched


def match_frame(
    labels: Sequence[Labeled],
    detections: Sequence[Detection],
    classes: Sequence[WaymoClass] = EVAL_CLASSES,
) -> FrameMatches:
    """Match one frame's detections to its labels, class by class (other classes are ignored)."""
    gt_xywh = _xywh([lab.box for lab in labels], "label")
    det_xywh = _xywh([det.box for det in detections], "detection")
    gt_cls = np.array([int(lab.cls) for lab in labels], dtype=np.int64)
    det_cls = np.array([int(det.cls) for det in detections], dtype=np.int64)
    det_score = np.array([det.score for det in detections], dtype=np.float64)
    if not np.isfinite(det_score).all():
        i = int(np.flatnonzero(~np.isfinite(det_score))[0])
        raise ValueError(f"detection {i}: score {det_score[i]} is not finite")
    out: dict[WaymoClass, ClassMatches] = {}
    for cls in classes:
        g = gt_xywh[gt_cls == int(cls)]
        sel = det_cls == int(cls)
        scores = det_score[sel]
        order = np.argsort(-scores, kind="mergesort")
        iou = iou_matrix(det_xywh[sel][order], g)
        out[WaymoClass(cls)] = ClassMatches(scores[order], _greedy_match(iou), len(g))
    return FrameMatches(out)


def average_precision(scores: np.ndarray, matched: np.ndarray, n_labels: int) -> float | None:
    """COCO 101-point interpolated AP of pooled detections; None when there is no label."""
    if n_labels == 0:
        return None
    order = np.argsort(-scores, kind="mergesort")
    hit = matched[order]
    tp = np.cumsum(hit).astype(float)
    fp = np.cumsum(~hit).astype(float)
    recall = tp / n_labels
    precision = tp / (fp + tp + np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    q = np.zeros(len(RECALL_POINTS))
    ok = idx < len(precision)
    q[ok] = precision[idx[ok]]
    return float(q.mean())


def set_ap(frames: Iterable[FrameMatches], rule: EmptyFrameRule = EmptyFrameRule.EXCLUDE) -> APResult:
    """AP over a set of frames, detections pooled per class as COCOeval pools images.

    With one frame this is the frame's AP. ``rule`` decides the mean when no class has a label.
    """
    frames = list(frames)
    pooled: dict[WaymoClass, list[ClassMatches]] = {}
    for fm in frames:
        for cls, cm in fm.classes.items():
            pooled.setdefault(cls, []).append(cm)
    per_class: dict[WaymoClass, float] = {}
    n_labels: dict[WaymoClass, int] = {}
    n_dets: dict[WaymoClass, int] = {}
    for cls, parts in pooled.items():
        n = sum(p.n_labels for p in parts)
        scores = np.concatenate([p.scores for p in parts])
        matched = np.concatenate([p.matched for p in parts])
        n_labels[cls], n_dets[cls] = n, len(scores)
        ap = average_precision(scores, matched, n)
        if ap is not None:
            per_class[cls] = ap
    if per_class:
        mean: float | None = float(np.mean(list(per_class.values())))
    elif rule is EmptyFrameRule.TURBO:
        mean = 0.0 if sum(n_dets.values()) else 1.0
    else:
        mean = None
    return APResult(per_class, mean, n_labels, n_dets)


def frame_ap(
    labels: Sequence[Labeled],
    detections: Sequence[Detection],
    classes: Sequence[WaymoClass] = EVAL_CLASSES,
    rule: EmptyFrameRule = EmptyFrameRule.EXCLUDE,
) -> APResult:
    """AP per present class and the mean of one frame."""
    return set_ap([match_frame(labels, detections, classes)], rule)


def mean_of_frames(results: Iterable[APResult]) -> float | None:
    """Mean of per-frame means, skipping frames whose mean is undefined (None if all are)."""
    values = [r.mean for r in results if r.mean is not None]
    return math.fsum(values) / len(values) if values else None
