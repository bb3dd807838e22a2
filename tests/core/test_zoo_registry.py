"""The zoo's registry, HOG and noop detectors, on real Waymo camera images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from carlink.detection import Box2D, Detection, WaymoClass
from carlink.zoo.base import Detector, ModelSpec
from carlink.zoo.devices import DeviceUnavailableError, resolve_device
from carlink.zoo.registry import (
    UnknownModelError,
    WeightsNotFoundError,
    get_model,
    get_spec,
    list_specs,
    register_model,
    unregister_model,
)

TORCH_MODELS = (
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "ssdlite320_mobilenet_v3_large",
    "retinanet_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
)


def _iou(a: Box2D, b: Box2D) -> float:
    ax1, ay1, ax2, ay2 = a.to_xyxy()
    bx1, by1, bx2, by2 = b.to_xyxy()
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    return inter / (a.length * a.width + b.length * b.width - inter)


@pytest.fixture(scope="module")
def front(waymo_frame_file: Path):
    """The real Waymo FRONT image (1920x1280) and its labelled pedestrian boxes."""
    from carlink.datasets.frames import CameraName
    from carlink.datasets.scene import read_frames

    frame = next(iter(read_frames(waymo_frame_file)))
    image = frame.image(CameraName.FRONT).decode()
    peds = [l.box for l in frame.labels[CameraName.FRONT] if l.type == WaymoClass.PEDESTRIAN]
    return image, peds


def test_builtin_names_and_specs() -> None:
    names = [s.name for s in list_specs()]
    for name in ("hog-default-fast", "hog-default", "hog-default-accurate", "hog-daimler", "noop", *TORCH_MODELS):
        assert name in names
    assert len(names) == len(set(names))
    hog = get_spec("hog-daimler")
    assert hog.family == "hog" and hog.classes == (WaymoClass.PEDESTRIAN,) and not hog.batchable
    tv = get_spec("ssdlite320_mobilenet_v3_large")
    assert tv.family == "torchvision" and tv.batchable and tv.input_size == (320, 320)
    assert set(tv.classes) == {WaymoClass.VEHICLE, WaymoClass.PEDESTRIAN, WaymoClass.CYCLIST, WaymoClass.SIGN}
    assert get_spec("noop").family == "noop"


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(UnknownModelError) as info:
        get_model("yolo-v99")
    message = str(info.value)
    assert "yolo-v99" in message and "hog-default" in message and "noop" in message
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    with pytest.raises(UnknownModelError):
        get_spec("yolo-v99")


def test_missing_weights_says_where_and_how(tmp_path: Path, monkeypatch) -> None:
    import torch.hub

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty hub cache
    with pytest.raises(WeightsNotFoundError) as info:
        get_model("ssdlite320_mobilenet_v3_large")
    message = str(info.value)
    assert str(tmp_path / "checkpoints" / "ssdlite320_mobilenet_v3_large_coco-a79551df.pth") in message
    assert "carlink models fetch ssdlite320_mobilenet_v3_large" in message
    assert "--allow-untrained" in message
    missing = tmp_path / "nope.pth"
    with pytest.raises(WeightsNotFoundError, match="nope.pth"):
        get_model("ssdlite320_mobilenet_v3_large", weights=missing, allow_untrained=True)


def test_builtin_weights_models_refuse_files_and_gpus(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="built-in weights"):
        get_model("hog-default", weights=tmp_path / "w.pth")
    with pytest.raises(ValueError, match="CPU only"):
        get_model("hog-default", device="cuda")


class _FixedDetector(Detector):
    pretrained = True

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        return [Detection(Box2D.from_xyxy(0, 0, w, h), 1.0, WaymoClass.VEHICLE)]


def test_register_custom_model_and_duplicates() -> None:
    spec = ModelSpec("test-fixed", "test", None, (WaymoClass.VEHICLE,))
    seen: dict = {}

    def factory(*, weights, allow_untrained, device):
        seen.update(weights=weights, allow_untrained=allow_untrained, device=device)
        return _FixedDetector(spec)

    register_model(spec, factory)
    try:
        assert get_spec("test-fixed") is spec and spec in list_specs()
        det = get_model("test-fixed", allow_untrained=True, device="cpu")
        assert seen == {"weights": None, "allow_untrained": True, "device": "cpu"}
        assert det.detect_batch([np.zeros((4, 6, 3), np.uint8)])[0][0].box.to_xyxy() == (0, 0, 6, 4)
        with pytest.raises(ValueError, match="already registered"):
            register_model(spec, factory)
        register_model(spec, factory, replace=True)
        with pytest.raises(ValueError, match="whitespace"):
            register_model(ModelSpec("bad name", "test", None, ()), factory)
    finally:
        unregister_model("test-fixed")
    with pytest.raises(UnknownModelError):
        get_spec("test-fixed")


def test_device_resolution() -> None:
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailableError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_noop_and_bad_images() -> None:
    noop = get_model("noop")
    assert noop.detect(np.zeros((10, 10, 3), np.uint8)) == []
    assert noop.detect_batch([np.zeros((10, 10, 3), np.uint8)] * 3) == [[], [], []]
    hog = get_model("hog-default")
    with pytest.raises(ValueError, match="hog-default.*HxWx3"):
        hog.detect(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        hog.detect(np.zeros((10, 10, 3), np.float32))
    assert hog.detect(np.zeros((50, 30, 3), np.uint8)) == []  # smaller than a window


def test_hog_finds_real_pedestrians(front) -> None:
    image, peds = front
    assert image.shape == (1280, 1920, 3) and len(peds) == 4
    for name in ("hog-default", "hog-daimler"):
        dets = get_model(name).detect(image)
        assert dets, name
        assert all(d.cls == WaymoClass.PEDESTRIAN for d in dets)
        assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
        for d in dets:  # boxes are in the original image's pixels, not the resized input's
            x1, y1, x2, y2 = d.box.to_xyxy()
            assert -16 <= x1 < x2 <= 1920 + 16 and -16 <= y1 < y2 <= 1280 + 16
        matched = [p for p in peds if any(_iou(p, d.box) >= 0.5 for d in dets)]
        assert matched, f"{name} matched none of the {len(peds)} labelled pedestrians at IoU 0.5"
    # the large pair of pedestrians in front of the car: both detectors box one at IoU >= 0.5
    big = max(peds, key=lambda b: b.width)
    assert max(_iou(big, d.box) for d in get_model("hog-daimler").detect(image)) >= 0.5
