"""AP at IoU 0.5 (carlink.replay.evaluation) against pycocotools' COCOeval on identical input."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from carlink.detection import Box2D, Detection, WaymoClass
from carlink.replay.evaluation import (
    EVAL_CLASSES, EmptyFrameRule, Label, frame_ap, match_frame, mean_of_frames, set_ap,
)

Frame = tuple[list[Label], list[Detection]]


# ---------------------------------------------------------------- the reference: pycocotools


def coco_reference(frames: list[Frame]) -> tuple[dict[WaymoClass, float], float | None]:
    """AP@0.5 per class with labels and its mean, as pycocotools computes them for these frames."""
    images = [{"id": i + 1} for i in range(len(frames))]
    cats = [{"id": int(c), "name": c.label} for c in EVAL_CLASSES]
    anns, dets = [], []
    for i, (labels, detections) in enumerate(frames):
        for lab in labels:
            x, y, w, h = lab.box.to_xywh()
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(lab.cls),
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
        for det in detections:
            dets.append({"image_id": i + 1, "category_id": int(det.cls),
                         "bbox": list(det.box.to_xywh()), "score": det.score})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": cats}
        gt.createIndex()
        if dets:
            dt = gt.loadRes(dets)
        else:  # loadRes cannot take an empty list; build what it would have built
            dt = COCO()
            dt.dataset = {"images": images, "annotations": [], "categories": cats}
            dt.createIndex()
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.params.iouThrs = np.array([0.5])
        ev.params.areaRng = [[0, 1e10]]
        ev.params.areaRngLbl = ["all"]
        ev.params.maxDets = [100000]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][0, :, :, 0, 0]  # recall points x classes
    per_class = {WaymoClass(c): float(precision[:, k].mean())
                 for k, c in enumerate(ev.params.catIds) if (precision[:, k] > -1).all()}
    present = precision[precision > -1]
    return per_class, (float(present.mean()) if present.size else None)


def assert_equal_to_coco(frames: list[Frame]) -> None:
    ref_cls, ref_mean = coco_reference(frames)
    ours = set_ap(match_frame(lab, det) for lab, det in frames)
    assert set(ours.per_class) == set(ref_cls)
    for c, v in ref_cls.items():
        assert ours.per_class[c] == pytest.approx(v, abs=1e-6), c
    if ref_mean is None:
        assert ours.mean is None
    else:
        assert ours.mean == pytest.approx(ref_mean, abs=1e-6)


# ---------------------------------------------------------------- random cases

CLASSES = [WaymoClass.VEHICLE, WaymoClass.PEDESTRIAN, WaymoClass.CYCLIST, WaymoClass.SIGN]
# A coarse grid makes exact IoU ties, equal scores and IoU == 0.5 happen often.
coord = st.integers(0, 40).map(float)
size = st.integers(0, 20).map(float)
box = st.builds(lambda x, y, w, h: Box2D(x + w / 2, y + h / 2, w, h), coord, coord, size, size)
label = st.builds(Label, box, st.sampled_from(CLASSES))
detection = st.builds(Detection, box, st.sampled_from([0.1, 0.5, 0.5, 0.9, 1.0]) | st.floats(0, 1),
                      st.sampled_from(CLASSES))
frame = st.tuples(st.lists(label, max_size=8), st.lists(detection, max_size=10))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frame, min_size=1, max_size=4))
def test_random_sets_equal_pycocotools(frames: list[Frame]) -> None:
    assert_equal_to_coco(frames)


@settings(max_examples=60, deadline=None)
@given(frame)
def test_detections_near_labels_equal_pycocotools(f: Frame) -> None:
    # Perturbed copies of the labels, so that matches (not only misses) are common.
    labels, _ = f
    rng = np.random.default_rng(len(labels))
    dets = [Detection(Box2D(lab.box.center_x + float(rng.integers(-3, 4)), lab.box.center_y,
                            max(0.0, lab.box.length + float(rng.integers(-2, 3))), lab.box.width),
                      float(rng.choice([0.3, 0.6, 0.6])), lab.cls) for lab in labels]
    assert_equal_to_coco([(labels, dets)])


# ---------------------------------------------------------------- real labels

TYPES = {"TYPE_VEHICLE": WaymoClass.VEHICLE, "TYPE_PEDESTRIAN": WaymoClass.PEDESTRIAN,
         "TYPE_CYCLIST": WaymoClass.CYCLIST, "TYPE_SIGN": WaymoClass.SIGN}


def real_camera_labels(data_dir: Path) -> list[list[Label]]:
    """Every camera's labels of both real v1 Frames (expected.json mirrors the TFRecords)."""
    expected = json.loads((data_dir / "waymo/v1_frames/expected.json").read_text())
    out = []
    for frames in expected.values():
        for fr in frames:
            for cam in fr["cameras"].values():
                labs = [Label(Box2D(l["center_x"], l["center_y"], l["length"], l["width"]),
                              TYPES[l["type"]]) for l in cam.get("labels", []) if l["type"] in TYPES]
                out.append(labs)
    return out


def synthetic_detections(labels: list[Label], rng: np.random.Generator) -> list[Detection]:
    dets = []
    for lab in labels:
        if rng.random() < 0.2:  # missed
            continue
        b = lab.box
        jitter = rng.normal(0, 0.15, 4)  # relative to size: IoU lands on both sides of 0.5
        dets.append(Detection(Box2D(b.center_x + jitter[0] * b.length, b.center_y + jitter[1] * b.width,
                                    b.length * (1 + jitter[2]), b.width * abs(1 + jitter[3])),
                              float(np.round(rng.random(), 2)), lab.cls))
    for _ in range(rng.integers(0, 6)):  # false positives, some of a class with no label
        x, y = rng.uniform(0, 1800, 2)
        dets.append(Detection(Box2D(x, y, rng.uniform(5, 200), rng.uniform(5, 200)),
                              float(np.round(rng.random(), 2)), CLASSES[rng.integers(0, 4)]))
    return list(rng.permutation(np.array(dets, dtype=object)))


def test_real_frames_equal_pycocotools_per_frame_and_pooled(data_dir: Path) -> None:
    cams = real_camera_labels(data_dir)
    assert sum(len(c) for c in cams) == 66 + 11  # 66 labels in one frame, 11 in the other
    rng = np.random.default_rng(7)
    for trial in range(5):
        frames = [(labs, synthetic_detections(labs, rng)) for labs in cams]
        for f in frames:
            assert_equal_to_coco([f])
        assert_equal_to_coco(frames)
    # and the AP really varies: not all 0 or 1
    aps = [frame_ap(*f).mean for f in frames]
    assert any(a is not None and 0.05 < a < 0.95 for a in aps)


def test_real_labels_detected_perfectly_score_one(data_dir: Path) -> None:
    for labs in real_camera_labels(data_dir):
        dets = [Detection(l.box, 0.9, l.cls) for l in labs]
        r = frame_ap(labs, dets)
        if labs:
            assert r.mean == pytest.approx(1.0)
            assert set(r.per_class) == {l.cls for l in labs}


# ---------------------------------------------------------------- edge cases, as documented

CAR = Label(Box2D(50, 50, 20, 10), WaymoClass.VEHICLE)
PED = Label(Box2D(10, 10, 4, 8), WaymoClass.PEDESTRIAN)


def test_no_labels_no_detections_is_undefined_or_one_under_turbo() -> None:
    assert frame_ap([], []).mean is None
    assert frame_ap([], []).per_class == {}
    assert frame_ap([], [], rule=EmptyFrameRule.TURBO).mean == 1.0


def test_detections_without_labels_are_excluded_or_zero_under_turbo() -> None:
    fp = [Detection(Box2D(5, 5, 3, 3), 0.8, WaymoClass.VEHICLE)]
    assert frame_ap([], fp).mean is None
    assert frame_ap([], fp, rule=EmptyFrameRule.TURBO).mean == 0.0


def test_labels_without_detections_score_zero() -> None:
    r = frame_ap([CAR, PED], [])
    assert r.per_class == {WaymoClass.VEHICLE: 0.0, WaymoClass.PEDESTRIAN: 0.0}
    assert r.mean == 0.0


def test_class_with_only_false_positives_is_left_out_of_the_mean() -> None:
    dets = [Detection(CAR.box, 0.9, WaymoClass.VEHICLE), Detection(PED.box, 0.9, WaymoClass.CYCLIST)]
    r = frame_ap([CAR], dets)
    assert r.per_class == {WaymoClass.VEHICLE: pytest.approx(1.0)}
    assert r.mean == pytest.approx(1.0)
    assert r.n_detections[WaymoClass.CYCLIST] == 1


def test_mean_of_frames_skips_undefined_frames() -> None:
    results = [frame_ap([CAR], [Detection(CAR.box, 0.5, WaymoClass.VEHICLE)]), frame_ap([], []),
               frame_ap([CAR], [])]
    assert mean_of_frames(results) == pytest.approx(0.5)
    assert mean_of_frames([frame_ap([], [])]) is None


def test_iou_of_exactly_half_matches() -> None:
    # Detection covers exactly half of a label it lies inside: IoU = 0.5, which COCO counts.
    lab = Label(Box2D.from_xyxy(0, 0, 20, 10), WaymoClass.VEHICLE)
    det = Detection(Box2D.from_xyxy(0, 0, 10, 10), 0.7, WaymoClass.VEHICLE)
    assert frame_ap([lab], [det]).mean == pytest.approx(1.0)
    assert_equal_to_coco([([lab], [det])])


def test_bad_boxes_are_refused_with_their_index() -> None:
    with pytest.raises(ValueError, match="detection 1"):
        match_frame([CAR], [Detection(CAR.box, 0.5, WaymoClass.VEHICLE),
                            Detection(Box2D(0, 0, -1, 2), 0.5, WaymoClass.VEHICLE)])
    with pytest.raises(ValueError, match="label 0"):
        match_frame([Label(Box2D(float("nan"), 0, 1, 1), WaymoClass.VEHICLE)], [])
    with pytest.raises(ValueError, match="score"):
        match_frame([CAR], [Detection(CAR.box, float("nan"), WaymoClass.VEHICLE)])


def test_equal_iou_tie_goes_to_the_last_label_as_in_coco() -> None:
    # Detection A overlaps labels G1 and G2 equally (IoU 9/11); COCO gives it the last one (G2),
    # so the weaker B, which only overlaps G2 well enough, finds G2 taken and is a false positive.
    g1 = Label(Box2D.from_xyxy(0, 0, 10, 10), WaymoClass.VEHICLE)
    g2 = Label(Box2D.from_xyxy(2, 0, 12, 10), WaymoClass.VEHICLE)
    a = Detection(Box2D.from_xyxy(1, 0, 11, 10), 0.9, WaymoClass.VEHICLE)
    b = Detection(Box2D.from_xyxy(4, 0, 14, 10), 0.8, WaymoClass.VEHICLE)
    assert frame_ap([g1, g2], [a, b]).mean == pytest.approx(51 / 101)
    assert_equal_to_coco([([g1, g2], [a, b])])
    # Equal scores keep input order (stable sort): B first takes G2, then A takes G1.
    b_tied = Detection(b.box, 0.9, WaymoClass.VEHICLE)
    assert frame_ap([g1, g2], [b_tied, a]).mean == pytest.approx(1.0)
    assert_equal_to_coco([([g1, g2], [b_tied, a]), ([g1, g2], [a, b_tied])])
