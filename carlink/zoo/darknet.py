"""The Darknet family: three COCO-trained YOLO networks at several input sizes, two backends.

Variant names are ``<network>-<W>x<H>`` (width x height), e.g. ``yolo-fastest-1.1-320x320`` (the
car's default) or ``yolo-fastest-1.1-xl-960x640``. Backends: "opencv" (cv2.dnn, CPU, never
imports torch; the car's) and "torch" (a module built from the .cfg, CUDA when torch sees a GPU,
one forward pass per batch; the cloud's). "auto" picks torch when the device resolves to CUDA,
else opencv. Both share carlink.zoo.darknet_post, so they differ only in the network arithmetic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from carlink.detection import Detection
from carlink.zoo.base import Detector, ModelSpec, check_bgr_image
from carlink.zoo.darknet_cfg import DarknetCfg, DarknetWeights, YoloLayer, parse_cfg, read_weights
from carlink.zoo.darknet_post import (
    DARKNET_WAYMO_CLASSES,
    DEFAULT_NMS_IOU,
    DEFAULT_SCORE_THRESHOLD,
    PostProcessor,
    make_blob,
    read_class_names,
)
from carlink.zoo.errors import BackendError, ModelFileError, ModelFilesMissingError
from carlink.zoo.models_dir import check_models_dir, network_dir, resolve_models_dir

BACKENDS = ("auto", "opencv", "torch")


@dataclass(frozen=True)
class DarknetNetwork:
    """One network: its files in the models directory and where its authors publish them."""

    name: str  # also its folder in the models directory
    cfg_file: str
    weights_file: str
    repository: str  # GitHub owner/name
    commit: str
    folder: str  # the cfg's and weights' folder in the repository
    sha256: dict[str, str]  # file name -> full sha256 of the official file
    coco_map50: float  # COCO 2017 val mAP@0.5 at 320x320, as published by the authors
    description: str
    names_file: str = "coco.names"
    license_file: str = "LICENSE"

    @property
    def files(self) -> tuple[str, ...]:
        return (self.cfg_file, self.weights_file, self.names_file, self.license_file)

    def source_path(self, file: str) -> str:
        """The file's path in the authors' repository (coco.names and LICENSE are shared ones)."""
        if file == self.names_file:
            return "data/coco.names"
        if file == self.license_file:
            return "LICENSE"
        return f"{self.folder}/{file}"

    def source_url(self, file: str) -> str:
        return f"https://raw.githubusercontent.com/{self.repository}/{self.commit}/{self.source_path(file)}"


_LICENSE_SHA = "2021f0b8d6426fbf9a2f0126f1e8a7d3b1d7027c871b9979fa2543b9557000c4"
_NAMES_SHA = "634a1132eb33f8091d60f2c346ababe8b905ae08387037aed883953b7329af84"

NETWORKS: dict[str, DarknetNetwork] = {
    n.name: n
    for n in (
        DarknetNetwork(
            "yolo-fastest-1.1", "yolo-fastest-1.1.cfg", "yolo-fastest-1.1.weights",
            "dog-qiuqiu/Yolo-Fastest", "96a2900d163196c396e73f3fdab04ca4dd9a2f70", "ModelZoo/yolo-fastest-1.1_coco",
            {"yolo-fastest-1.1.cfg": "f6df5775c1e862998cf69046eba9265be3ae84dfe8b2caab7529823f0795bf70",
             "yolo-fastest-1.1.weights": "1c445c42bbd6df63edea2cc69f99667b5650d663ca11e34b116240740cd42890",
             "coco.names": _NAMES_SHA, "LICENSE": _LICENSE_SHA},
            24.40, "Yolo-Fastest 1.1 (0.35 M parameters, 0.25 BFLOPs at 320x320)",
        ),
        DarknetNetwork(
            "yolo-fastest-1.1-xl", "yolo-fastest-1.1-xl.cfg", "yolo-fastest-1.1-xl.weights",
            "dog-qiuqiu/Yolo-Fastest", "96a2900d163196c396e73f3fdab04ca4dd9a2f70", "ModelZoo/yolo-fastest-1.1_coco",
            {"yolo-fastest-1.1-xl.cfg": "c458427acc4fbeabceff4528ef7b65b066c0308ce599460f8ba299eba63abad3",
             "yolo-fastest-1.1-xl.weights": "fac5fb41786c1f38f04972a658443b189f48720d7d117f9a044100e98a35b0c5",
             "coco.names": _NAMES_SHA, "LICENSE": _LICENSE_SHA},
            34.33, "Yolo-Fastest 1.1 XL (0.92 M parameters, 0.73 BFLOPs at 320x320)",
        ),
        DarknetNetwork(
            "mobilenetv2-yolov3-nano", "MobileNetV2-YOLOv3-Nano-coco.cfg", "MobileNetV2-YOLOv3-Nano-coco.weights",
            "dog-qiuqiu/MobileNet-Yolo", "86c05bfc4e508d54a459a469faecc35a113454c1", "MobileNetV2-YOLOv3-Nano/COCO",
            {"MobileNetV2-YOLOv3-Nano-coco.cfg": "f9c93b9167275c94975984c8b1d8adbff990f2e3a983adc79d02e748d6ed763b",
             "MobileNetV2-YOLOv3-Nano-coco.weights": "60a6c2a86735fd39ff54d61f9a16f3ac3fe24a8b2e0d7740585bf2b54a5db81a",
             "coco.names": _NAMES_SHA, "LICENSE": _LICENSE_SHA},
            30.13, "MobileNetV2-YOLOv3-Nano (0.89 M parameters, 0.5 BFLOPs at 320x320)",
        ),
    )
}

# (width, height); 960x640 is the 3:2 shape of Waymo's FRONT camera.
INPUT_SIZES: tuple[tuple[int, int], ...] = ((320, 320), (416, 416), (512, 512), (640, 640), (960, 640))


@dataclass(frozen=True)
class DarknetVariant:
    name: str
    network: DarknetNetwork
    input_size: tuple[int, int]


def variant_name(network: str, size: tuple[int, int]) -> str:
    return f"{network}-{size[0]}x{size[1]}"


VARIANTS: dict[str, DarknetVariant] = {
    variant_name(net.name, size): DarknetVariant(variant_name(net.name, size), net, size)
    for net in NETWORKS.values()
    for size in INPUT_SIZES
}


def darknet_spec(variant: DarknetVariant) -> ModelSpec:
    w, h = variant.input_size
    return ModelSpec(
        name=variant.name,
        family="darknet",
        input_size=variant.input_size,
        classes=DARKNET_WAYMO_CLASSES,
        description=f"{variant.network.description} at {w}x{h}; COCO mAP@0.5 {variant.network.coco_map50:.1f} "
                    "at 320x320 (authors)",
        batchable=True,
        tags=("coco", "pretrained", "darknet"),
    )


@dataclass(frozen=True)
class NetworkFiles:
    """The checked contents of one network's folder."""

    folder: Path
    cfg: DarknetCfg
    weights: DarknetWeights
    class_names: tuple[str, ...]

    @property
    def weights_path(self) -> Path:
        return self.weights.path


def network_paths(network: DarknetNetwork, models_dir: str | os.PathLike[str] | None = None,
                  weights: str | os.PathLike[str] | None = None) -> tuple[Path, Path, Path]:
    """(cfg, weights, names) paths: from `weights` (the network's folder, or its .weights file with
    the .cfg and coco.names beside it) where given, else from the models directory."""
    if weights is not None:
        given = Path(weights).expanduser()
        if given.is_dir():
            folder, weights_path = given, given / network.weights_file
        else:
            folder, weights_path = given.parent, given
    else:
        root = resolve_models_dir(models_dir)
        check_models_dir(root)
        folder = network_dir(root, network.name)
        weights_path = folder / network.weights_file
    return folder / network.cfg_file, weights_path, folder / network.names_file


def load_network_files(network: DarknetNetwork, *, model: str | None = None,
                       models_dir: str | os.PathLike[str] | None = None,
                       weights: str | os.PathLike[str] | None = None) -> NetworkFiles:
    """Find, read and cross-check a network's cfg, weights and class names (no backend built)."""
    cfg_path, weights_path, names_path = network_paths(network, models_dir, weights)
    missing = [p for p in (cfg_path, weights_path, names_path) if not p.is_file()]
    if missing:
        root = cfg_path.parent.parent if weights is None else cfg_path.parent
        raise ModelFilesMissingError(model or network.name, missing, root, network.name)
    cfg = parse_cfg(cfg_path)
    heads = [cfg.layers[i] for i in cfg.yolo_indices]
    classes = {h.classes for h in heads if isinstance(h, YoloLayer)}
    if len(classes) != 1:
        raise ModelFileError(cfg_path, f"[yolo] layers disagree on classes ({sorted(classes)}): expected one count")
    names = read_class_names(names_path, classes.pop())
    return NetworkFiles(cfg_path.parent, cfg, read_weights(weights_path, cfg), names)


def check_input_size(name: str, size: tuple[int, int]) -> None:
    w, h = size
    if w <= 0 or h <= 0 or w % 32 or h % 32:
        raise ValueError(f"model {name}: input size {w}x{h}: expected width and height multiples of 32")


class DarknetDetector(Detector):
    """Shared by both backends: pre-processing, batching and post-processing; subclasses run the net."""

    pretrained = True
    backend = ""

    def __init__(self, spec: ModelSpec, files: NetworkFiles, *, score_threshold: float, nms_iou: float) -> None:
        assert spec.input_size is not None
        check_input_size(spec.name, spec.input_size)
        self.spec = spec
        self.files = files
        heads = tuple(files.cfg.layers[i] for i in files.cfg.yolo_indices)
        self.post = PostProcessor(heads, files.class_names, spec.input_size,  # type: ignore[arg-type]
                                  score_threshold=score_threshold, nms_iou=nms_iou)

    @property
    def score_threshold(self) -> float:
        return self.post.score_threshold

    @property
    def nms_iou(self) -> float:
        return self.post.nms_iou

    def forward_heads(self, blob: np.ndarray) -> list[np.ndarray]:
        """Raw [yolo] inputs, one N x A*(5+C) x rows x cols float32 array per head."""
        raise NotImplementedError

    def detect(self, image: np.ndarray) -> list[Detection]:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        if len(images) == 0:
            return []
        for im in images:
            check_bgr_image(im, self.spec.name)
        outputs = self.forward_heads(make_blob(images, self.spec.input_size))  # type: ignore[arg-type]
        return [self.post.detections(outputs, i, (im.shape[1], im.shape[0])) for i, im in enumerate(images)]


def choose_backend(backend: str, device: str) -> tuple[str, str]:
    """(backend, device) to build: "auto" is torch on CUDA, else OpenCV on the CPU."""
    b = (backend or "auto").strip().lower()
    if b not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    dev = (device or "auto").strip().lower()
    if b == "opencv":
        if dev not in ("auto", "cpu"):
            raise BackendError(f"backend 'opencv' runs on the CPU only; device {device!r} is not possible "
                               "(use backend 'torch' for a GPU)")
        return "opencv", "cpu"
    if b == "auto" and dev == "cpu":
        return "opencv", "cpu"  # no torch import needed to know this
    from carlink.zoo.devices import resolve_device

    resolved = resolve_device(dev)
    if b == "auto":
        return ("torch", resolved) if resolved.startswith("cuda") else ("opencv", "cpu")
    return "torch", resolved


def load_darknet_detector(
    variant: DarknetVariant,
    *,
    backend: str = "auto",
    device: str = "auto",
    models_dir: str | os.PathLike[str] | None = None,
    weights: str | os.PathLike[str] | None = None,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    nms_iou: float = DEFAULT_NMS_IOU,
) -> DarknetDetector:
    """Build one variant on one backend. Never downloads: the files must be in the models dir."""
    chosen, dev = choose_backend(backend, device)
    files = load_network_files(variant.network, model=variant.name, models_dir=models_dir, weights=weights)
    spec = darknet_spec(variant)
    if chosen == "opencv":
        from carlink.zoo.darknet_opencv import OpenCvDarknetDetector

        return OpenCvDarknetDetector(spec, files, score_threshold=score_threshold, nms_iou=nms_iou)
    from carlink.zoo.darknet_torch import TorchDarknetDetector

    return TorchDarknetDetector(spec, files, device=dev, score_threshold=score_threshold, nms_iou=nms_iou)
