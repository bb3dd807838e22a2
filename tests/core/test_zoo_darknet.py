"""The Darknet family on the real detectors of ../shared/data/models and real Waymo frames."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from carlink.detection import Box2D, WaymoClass
from carlink.zoo.darknet import NETWORKS, VARIANTS, load_network_files
from carlink.zoo.darknet_cfg import ConvLayer, RouteLayer, YoloLayer, parse_cfg, read_weights
from carlink.zoo.darknet_post import make_blob
from carlink.zoo.errors import BackendError, ModelFileError, ModelFilesMissingError, ModelsDirError, ZooError
from carlink.zoo.models_dir import MODELS_DIR_ENV, resolve_models_dir
from carlink.zoo.registry import DEFAULT_MODEL, get_model, get_spec, list_specs

NETWORK_NAMES = ("yolo-fastest-1.1", "yolo-fastest-1.1-xl", "mobilenetv2-yolov3-nano")
AGREEMENT_VARIANTS = ("yolo-fastest-1.1-320x320", "mobilenetv2-yolov3-nano-416x416", "yolo-fastest-1.1-xl-960x640")


def _iou(a: Box2D, b: Box2D) -> float:
    ax1, ay1, ax2, ay2 = a.to_xyxy()
    bx1, by1, bx2, by2 = b.to_xyxy()
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = a.length * a.width + b.length * b.width - inter
    return inter / union if union > 0 else 0.0


@pytest.fixture(scope="module")
def frames(tf_example_files, waymo_frame_file):
    """A few real FRONT images: 640x640 1 Hz frames from two sequences and the 1920x1280 pvps one."""
    from carlink.datasets.frames import CameraName
    from carlink.datasets.scene import read_frames

    images = []
    for path in tf_example_files[:2]:
        for i, frame in enumerate(read_frames(path)):
            if i in (0, 10):
                images.append(frame.image(frame.cameras[0]).decode())
    frame = next(iter(read_frames(waymo_frame_file)))
    labels = frame.labels[CameraName.FRONT]
    images.append(frame.image(CameraName.FRONT).decode())
    return images, labels


def test_fifteen_variants_with_exact_names() -> None:
    names = {s.name for s in list_specs() if s.family == "darknet"}
    expected = {f"{n}-{w}x{h}" for n in NETWORK_NAMES
                for w, h in ((320, 320), (416, 416), (512, 512), (640, 640), (960, 640))}
    assert names == expected
    spec = get_spec("yolo-fastest-1.1-xl-960x640")
    assert spec.input_size == (960, 640) and spec.batchable
    assert spec.classes == (WaymoClass.VEHICLE, WaymoClass.PEDESTRIAN, WaymoClass.CYCLIST)
    assert DEFAULT_MODEL == "yolo-fastest-1.1-320x320" and get_spec(DEFAULT_MODEL).family == "darknet"


@pytest.mark.parametrize("network", NETWORK_NAMES)
def test_real_cfgs_and_weights_agree(models_dir: Path, network: str) -> None:
    net = NETWORKS[network]
    cfg = parse_cfg(models_dir / network / net.cfg_file)
    weights_path = models_dir / network / net.weights_file
    # The cfg alone fixes the file size: 20-byte header (version 0.2.5) + 4 bytes per parameter.
    assert weights_path.stat().st_size == 20 + 4 * cfg.parameter_count
    weights = read_weights(weights_path, cfg)
    assert weights.version == (0, 2, 5)
    assert len(cfg.yolo_indices) == 2
    convs = [i for i, l in enumerate(cfg.layers) if isinstance(l, ConvLayer)]
    assert sorted(weights.convs) == convs
    assert any(l.groups > 1 for l in cfg.layers if isinstance(l, ConvLayer))  # depthwise convolutions
    assert any(len(l.layers) == 4 for l in cfg.layers if isinstance(l, RouteLayer))  # the SPP concat
    head = cfg.layers[cfg.yolo_indices[0]]
    assert isinstance(head, YoloLayer) and head.classes == 80 and len(head.anchors) == 3
    for i in convs:  # every parameter read and shaped as the cfg says
        layer = cfg.layers[i]
        assert weights.convs[i].kernel.shape[0] == layer.filters
        assert (weights.convs[i].bn_scale is not None) == layer.batch_normalize


def test_decoder_reproduces_opencv_region_layer(models_dir: Path, frames) -> None:
    """Our decoder on the raw head outputs == OpenCV's own [yolo] (Region) output, where OpenCV
    keeps a score (it zeroes every class score <= 0.2, which is why we stop before it)."""
    images, _ = frames
    det = get_model("mobilenetv2-yolov3-nano-416x416", backend="opencv", models_dir=models_dir)
    blob = make_blob([images[0]], det.spec.input_size)
    det.net.setInput(blob)
    results = det.net.forward(list(det.net.getUnconnectedOutLayersNames()) + det.output_names)
    regions, heads = results[:2], results[2:]
    checked = 0
    for region, head, layer in zip(regions, heads, det.post.heads):
        anchors, rows, cols = len(layer.anchors), head.shape[2], head.shape[3]
        raw = head[0].reshape(anchors, 85, rows, cols)
        # OpenCV's rows are (y * cols + x) * anchors + a
        y, x, a = np.meshgrid(np.arange(rows), np.arange(cols), np.arange(anchors), indexing="ij")
        a, y, x = a.ravel(), y.ravel(), x.ravel()
        sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
        obj = sig(raw[a, 4, y, x])
        cx = (x + (sig(raw[a, 0, y, x]) - 0.5) * layer.scale_x_y + 0.5) / cols
        w = np.exp(raw[a, 2, y, x]) * np.array(layer.anchors)[a, 0] / det.spec.input_size[0]
        np.testing.assert_allclose(region[:, 0], cx, atol=1e-6)
        np.testing.assert_allclose(region[:, 2], w, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(region[:, 4], obj, atol=1e-6)
        scores = obj[:, None] * sig(np.moveaxis(raw[:, 5:], 1, -1)[a, y, x])
        kept = region[:, 5:] > 0
        assert np.all(scores[kept] > 0.2) and not np.any((scores > 0.2 + 1e-6) & ~kept)
        np.testing.assert_allclose(region[:, 5:][kept], scores[kept], atol=1e-6)
        checked += int(kept.sum())
    assert checked > 0
    # ... and the candidates the detector builds on are those same boxes and scores
    boxes, cand = det.post.candidates(heads, 0)
    assert len(boxes) and cand.max() == pytest.approx(max(r[:, 5:].max() for r in regions), abs=1e-6)


@pytest.mark.parametrize("name", AGREEMENT_VARIANTS)
def test_opencv_and_torch_backends_agree_on_real_frames(models_dir: Path, frames, name: str) -> None:
    """Every detection of one backend has a partner of the same class in the other with IoU >= 0.99
    and score within 1e-3 (measured: IoU >= 0.99998, scores within 1.1e-6). The torch side runs
    as one batch, so batching changes nothing either."""
    images, _ = frames
    cv = get_model(name, backend="opencv", models_dir=models_dir)
    pt = get_model(name, backend="torch", device="cpu", models_dir=models_dir)
    assert type(cv).__name__ == "OpenCvDarknetDetector" and type(pt).__name__ == "TorchDarknetDetector"
    threshold = cv.score_threshold
    batch = pt.detect_batch(images)
    total = 0
    for image, from_torch in zip(images, batch):
        from_cv = cv.detect(image)
        assert from_cv, f"{name}: nothing detected on a real frame"
        for mine, other in ((from_cv, from_torch), (from_torch, from_cv)):
            for d in mine:
                partner = any(e.cls == d.cls and _iou(d.box, e.box) >= 0.99 and abs(e.score - d.score) <= 1e-3
                              for e in other)
                # a score within the tolerance of the threshold may fall on either side of it
                assert partner or d.score <= threshold + 1e-3, (name, d)
                total += 1
    assert total > 50


def test_detections_on_the_real_front_image(models_dir: Path, frames) -> None:
    images, labels = frames
    image = images[-1]
    assert image.shape == (1280, 1920, 3)
    det = get_model("yolo-fastest-1.1-xl-960x640", backend="opencv", models_dir=models_dir)
    dets = det.detect(image)
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
    assert {d.cls for d in dets} <= {WaymoClass.VEHICLE, WaymoClass.PEDESTRIAN, WaymoClass.CYCLIST}
    assert min(d.score for d in dets) > det.score_threshold
    for d in dets:  # boxes in the given image's pixels, clipped to it
        x1, y1, x2, y2 = d.box.to_xyxy()
        assert 0 <= x1 <= x2 <= 1920 and 0 <= y1 <= y2 <= 1280
    for cls in (WaymoClass.VEHICLE, WaymoClass.PEDESTRIAN):
        truth = [l.box for l in labels if l.type == cls]
        found = [t for t in truth if any(d.cls == cls and _iou(t, d.box) >= 0.5 for d in dets)]
        assert truth and found, f"no labelled {cls.label} found at IoU 0.5"
    # a higher threshold keeps exactly the subset above it
    strict = get_model("yolo-fastest-1.1-xl-960x640", backend="opencv", models_dir=models_dir,
                       score_threshold=0.3).detect(image)
    assert strict and all(d.score > 0.3 for d in strict) and len(strict) < len(dets)


def test_backend_selection_and_errors(models_dir: Path) -> None:
    auto = get_model("yolo-fastest-1.1-320x320", device="cpu", models_dir=models_dir)
    assert auto.backend == "opencv" and auto.device == "cpu"
    with pytest.raises(BackendError, match="backend 'opencv' runs on the CPU only"):
        get_model("yolo-fastest-1.1-320x320", backend="opencv", device="cuda", models_dir=models_dir)
    with pytest.raises(BackendError, match="unknown backend 'tensorrt'"):
        get_model("yolo-fastest-1.1-320x320", backend="tensorrt", models_dir=models_dir)
    with pytest.raises(BackendError, match=r"hog-default \(hog\) has no backend 'torch'"):
        get_model("hog-default", backend="torch")
    assert get_model("hog-default", backend="opencv").name == "hog-default"
    with pytest.raises(TypeError, match="takes no option 'score_threshold'"):
        get_model("hog-default", score_threshold=0.5)
    with pytest.raises(ValueError, match="score_threshold 1.5"):
        get_model("yolo-fastest-1.1-320x320", models_dir=models_dir, device="cpu", score_threshold=1.5)
    det = get_model("yolo-fastest-1.1-320x320", device="cpu", models_dir=models_dir)
    with pytest.raises(ValueError, match="yolo-fastest-1.1-320x320.*HxWx3"):
        det.detect(np.zeros((10, 10), np.uint8))
    assert det.detect_batch([]) == []


def test_opencv_backend_never_imports_torch(models_dir: Path) -> None:
    code = ("import sys, numpy as np; from carlink.zoo.registry import get_model; "
            "d = get_model('yolo-fastest-1.1-320x320', backend='opencv'); d.detect(np.zeros((64, 96, 3), np.uint8)); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, MODELS_DIR_ENV: str(models_dir)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_models_dir_resolution(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_models_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_models_dir() == tmp_path / "env"
    monkeypatch.delenv(MODELS_DIR_ENV)
    assert resolve_models_dir() == tmp_path / "cache" / "carlink" / "models"
    # never downloaded implicitly: an empty models dir is an error that says how to get the files
    with pytest.raises(ModelFilesMissingError) as info:
        get_model("yolo-fastest-1.1-xl-640x640", device="cpu")
    msg = str(info.value)
    assert "yolo-fastest-1.1-xl.weights" in msg and "carlink models fetch yolo-fastest-1.1-xl" in msg
    assert str(tmp_path / "cache" / "carlink" / "models") in msg
    assert not (tmp_path / "cache").exists()


def _copy_network(models_dir: Path, dest: Path, network: str) -> Path:
    shutil.copytree(models_dir / network, dest / network)
    for f in (dest / network).iterdir():
        f.chmod(0o644)
    return dest / network


def test_truncated_and_oversized_weights_name_file_and_layer(models_dir: Path, tmp_path: Path) -> None:
    folder = _copy_network(models_dir, tmp_path, "yolo-fastest-1.1")
    weights = folder / "yolo-fastest-1.1.weights"
    full = weights.read_bytes()
    weights.write_bytes(full[: len(full) // 2])
    with pytest.raises(ModelFileError) as info:
        get_model("yolo-fastest-1.1-416x416", models_dir=tmp_path, device="cpu")
    err = info.value
    assert err.path == weights and isinstance(err, ZooError) and isinstance(err, ValueError)
    assert err.layer is not None and 0 < err.layer < 131
    assert f"layer {err.layer}" in str(err) and "expected 1384268" in str(err) and "truncated" in str(err)
    weights.write_bytes(full + b"\0" * 8)
    with pytest.raises(ModelFileError, match="8 bytes left after the last parameterised layer 129"):
        get_model("yolo-fastest-1.1-416x416", models_dir=tmp_path, device="cpu")
    # the weights of another network: same format, wrong size for this cfg
    shutil.copy(models_dir / "yolo-fastest-1.1-xl" / "yolo-fastest-1.1-xl.weights", weights)
    with pytest.raises(ModelFileError, match="expected 1384268"):
        get_model("yolo-fastest-1.1-416x416", models_dir=tmp_path, device="cpu", backend="torch")


def test_bad_cfg_names_layer_and_expectation(models_dir: Path, tmp_path: Path) -> None:
    folder = _copy_network(models_dir, tmp_path, "mobilenetv2-yolov3-nano")
    cfg = folder / "MobileNetV2-YOLOv3-Nano-coco.cfg"
    text = cfg.read_text()
    cfg.write_text(text.replace("[upsample]", "[reorg3d]", 1))
    with pytest.raises(ModelFileError) as info:
        get_model("mobilenetv2-yolov3-nano-320x320", models_dir=tmp_path, device="cpu")
    assert info.value.layer == 71 and "unknown layer type [reorg3d]" in str(info.value)
    assert str(cfg) in str(info.value) and "[upsample]" in str(info.value)  # what was expected
    cfg.write_text(text.replace("activation=relu", "activation=gelu", 1))
    with pytest.raises(ModelFileError, match=r"layer 0 \[convolutional\] at line \d+: activation=gelu: expected one of"):
        get_model("mobilenetv2-yolov3-nano-320x320", models_dir=tmp_path, device="cpu")
    cfg.write_text(text.replace("layers=-1,47", "layers=-1,400", 1))
    with pytest.raises(ModelFileError, match="route layers refers to layer 400"):
        get_model("mobilenetv2-yolov3-nano-320x320", models_dir=tmp_path, device="cpu")
    (folder / "coco.names").write_text("person\ncar\n")
    cfg.write_text(text)
    with pytest.raises(ModelFileError, match="2 class names: expected 80"):
        get_model("mobilenetv2-yolov3-nano-320x320", models_dir=tmp_path, device="cpu")


def test_unusable_models_dir(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(ModelsDirError, match="not a directory"):
        get_model("yolo-fastest-1.1-320x320", models_dir=not_a_dir, device="cpu")
    with pytest.raises(ModelFilesMissingError):
        load_network_files(VARIANTS["yolo-fastest-1.1-320x320"].network, models_dir=tmp_path)
    if os.geteuid() != 0:  # root reads anything: the permission check cannot be shown as root
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o000)
        try:
            with pytest.raises(ModelsDirError, match="not readable"):
                get_model("yolo-fastest-1.1-320x320", models_dir=locked, device="cpu")
        finally:
            locked.chmod(0o755)


def test_weights_argument_takes_a_folder_or_the_weights_file(models_dir: Path, tmp_path: Path) -> None:
    folder = models_dir / "yolo-fastest-1.1"
    by_dir = get_model("yolo-fastest-1.1-320x320", weights=folder, models_dir=tmp_path, device="cpu")
    by_file = get_model("yolo-fastest-1.1-320x320", weights=folder / "yolo-fastest-1.1.weights",
                        models_dir=tmp_path, device="cpu")
    image = np.full((200, 300, 3), 127, np.uint8)
    assert by_dir.detect(image) == by_file.detect(image)
