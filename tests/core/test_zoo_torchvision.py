"""torchvision detectors in the zoo: built offline, weights from a file, COCO -> Waymo classes,
and all four models running on top of carlink.torchvision_compat."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from carlink.detection import WaymoClass
from carlink.torchvision_compat import import_torchvision, ops_backend
from carlink.zoo.coco import COCO_CATEGORIES, COCO_TO_WAYMO, coco_label_map
from carlink.zoo.registry import get_model
from carlink.zoo.torchvision_models import TORCHVISION_MODELS, build_torchvision_model

SMALL = "ssdlite320_mobilenet_v3_large"


pytestmark = pytest.mark.usefixtures("two_torch_threads")


@pytest.fixture(scope="module")
def tv():
    return import_torchvision()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)


def test_registered_ops_route_to_working_kernels(tv) -> None:
    gen = torch.Generator().manual_seed(1)
    xy = torch.rand(50, 2, generator=gen) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(50, 2, generator=gen) * 20], 1)
    scores = torch.rand(50, generator=gen)
    from carlink.torchvision_compat import nms, roi_align

    assert tv.ops.nms(boxes, scores, 0.5).tolist() == nms(boxes, scores, 0.5).tolist()
    feats = torch.rand(1, 3, 16, 16, generator=gen)
    rois = torch.tensor([[0.0, 1, 2, 9, 12], [0, 4, 4, 15, 15]])
    torch.testing.assert_close(
        tv.ops.roi_align(feats, rois, (4, 4), 1.0, 2, True), roi_align(feats, rois, 1.0, 4, 4, 2, True)
    )
    if ops_backend() == "carlink":
        with pytest.raises(NotImplementedError, match="roi_pool"):
            tv.ops.roi_pool(feats, rois, (2, 2), 1.0)


def test_official_weight_files_and_categories_match_torchvision(tv) -> None:
    det = tv.models.detection
    enums = {
        "fasterrcnn_mobilenet_v3_large_320_fpn": det.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights,
        "ssdlite320_mobilenet_v3_large": det.SSDLite320_MobileNet_V3_Large_Weights,
        "retinanet_resnet50_fpn": det.RetinaNet_ResNet50_FPN_Weights,
        "fasterrcnn_resnet50_fpn_v2": det.FasterRCNN_ResNet50_FPN_V2_Weights,
    }
    assert set(enums) == set(TORCHVISION_MODELS)
    for name, enum in enums.items():
        weights = enum.DEFAULT
        assert TORCHVISION_MODELS[name].weights.url == weights.url
        assert tuple(weights.meta["categories"]) == COCO_CATEGORIES


def test_coco_map_choices() -> None:
    table = coco_label_map()
    assert len(table) == 91
    assert table[COCO_CATEGORIES.index("person")] == WaymoClass.PEDESTRIAN
    assert table[COCO_CATEGORIES.index("bicycle")] == WaymoClass.CYCLIST
    for vehicle in ("car", "truck", "bus", "motorcycle"):
        assert table[COCO_CATEGORIES.index(vehicle)] == WaymoClass.VEHICLE
    assert table[COCO_CATEGORIES.index("stop sign")] == WaymoClass.SIGN
    assert table[COCO_CATEGORIES.index("dog")] == -1 and table[0] == -1
    assert set(COCO_TO_WAYMO) <= set(COCO_CATEGORIES)


def test_weights_round_trip_through_a_file(tmp_path: Path, image: np.ndarray) -> None:
    torch.manual_seed(0)
    untrained = get_model(SMALL, allow_untrained=True, device="cpu")
    assert untrained.pretrained is False and untrained.device == "cpu"
    path = tmp_path / "ssdlite_random.pth"
    torch.save(untrained.model.state_dict(), path)

    loaded = get_model(SMALL, weights=path, device="cpu")
    assert loaded.pretrained is True
    # random weights give few confident boxes: compare the raw outputs too
    tensor = untrained._to_tensor(image)
    with torch.inference_mode():
        a, b = untrained.model([tensor])[0], loaded.model([tensor])[0]
    assert a["boxes"].shape[0] > 0
    for key in ("boxes", "scores", "labels"):
        assert torch.equal(a[key], b[key]), key


def test_bad_weights_files_are_named(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read weights file .*garbage.pth"):
        get_model(SMALL, weights=garbage)
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="does not match the architecture"):
        get_model(SMALL, weights=other)
    pickled = tmp_path / "pickled.pth"
    torch.save({"x": object()}, pickled)  # weights_only=True refuses arbitrary pickles
    with pytest.raises(ValueError, match="cannot read weights file"):
        get_model(SMALL, weights=pickled)


@pytest.mark.parametrize("name", sorted(TORCHVISION_MODELS))
def test_each_model_constructs_and_runs(name: str, tv, image: np.ndarray) -> None:
    model = build_torchvision_model(name).eval()
    transform = model.transform
    if transform.min_size[0] > 320:  # keep the large models cheap: run them at low resolution
        transform.min_size, transform.max_size = (128,), 160
    with torch.inference_mode():
        out = model([torch.from_numpy(image).permute(2, 0, 1).float() / 255])[0]
    assert out["boxes"].shape[1] == 4 and out["boxes"].shape[0] == out["scores"].shape[0]
    if out["boxes"].numel():  # postprocess maps boxes back into the input image
        assert out["boxes"][:, 2].max() <= image.shape[1] + 1e-3
        assert out["boxes"][:, 3].max() <= image.shape[0] + 1e-3


def test_detect_batch_is_one_pass_with_the_same_answers(image: np.ndarray) -> None:
    torch.manual_seed(1)
    det = get_model("fasterrcnn_mobilenet_v3_large_320_fpn", allow_untrained=True, device="cpu")
    det.score_threshold = 0.0
    other = np.ascontiguousarray(image[::-1])
    calls = []
    handle = det.model.backbone.register_forward_hook(lambda *a: calls.append(1))
    batch = det.detect_batch([image, other])
    handle.remove()
    assert len(calls) == 1 and len(batch) == 2
    for single, batched in zip([det.detect(image), det.detect(other)], batch):
        assert len(single) == len(batched)
        for s, b in zip(single, batched):
            assert s.cls == b.cls and s.score == pytest.approx(b.score, abs=1e-4)
            assert np.allclose(s.box.to_xyxy(), b.box.to_xyxy(), atol=1e-2)
    assert all(d.cls in (WaymoClass.VEHICLE, WaymoClass.PEDESTRIAN, WaymoClass.CYCLIST, WaymoClass.SIGN)
               for dets in batch for d in dets)
