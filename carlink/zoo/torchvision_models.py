"""torchvision's COCO detection models behind the zoo's Detector interface.

Models are built with weights=None and weights_backbone=None, so torchvision never downloads
anything, and the state dict is then loaded from a local file with ``weights_only=True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from carlink.detection import Box2D, Detection, WaymoClass
from carlink.zoo.base import Detector, ModelSpec, check_bgr_image
from carlink.zoo.coco import COCO_CATEGORIES, COCO_WAYMO_CLASSES, coco_label_map
from carlink.zoo.devices import resolve_device
from carlink.zoo.weights import WeightsNotFoundError, WeightsSource, locate_weights

DEFAULT_SCORE_THRESHOLD = 0.05  # torchvision's own box_score_thresh for the R-CNNs


@dataclass(frozen=True)
class TorchvisionModelInfo:
    """One torchvision detection model: builder, official weights, and how it sizes its input."""

    name: str  # also the builder's name in torchvision.models.detection
    weights: WeightsSource
    input_size: tuple[int, int] | None
    description: str


_BASE_URL = "https://download.pytorch.org/models/"

TORCHVISION_MODELS: dict[str, TorchvisionModelInfo] = {
    m.name: m
    for m in (
        TorchvisionModelInfo(
            "fasterrcnn_mobilenet_v3_large_320_fpn",
            WeightsSource(_BASE_URL + "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth"),
            None,
            "Faster R-CNN, MobileNetV3-Large FPN backbone, low resolution (shorter side 320, "
            "longer <= 640); COCO box AP 22.8",
        ),
        TorchvisionModelInfo(
            "ssdlite320_mobilenet_v3_large",
            WeightsSource(_BASE_URL + "ssdlite320_mobilenet_v3_large_coco-a79551df.pth"),
            (320, 320),
            "SSDlite, MobileNetV3-Large backbone, fixed 320x320 input; COCO box AP 21.3",
        ),
        TorchvisionModelInfo(
            "retinanet_resnet50_fpn",
            WeightsSource(_BASE_URL + "retinanet_resnet50_fpn_coco-eeacb38b.pth"),
            None,
            "RetinaNet, ResNet-50 FPN (shorter side 800, longer <= 1333); COCO box AP 36.4",
        ),
        TorchvisionModelInfo(
            "fasterrcnn_resnet50_fpn_v2",
            WeightsSource(_BASE_URL + "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth"),
            None,
            "Faster R-CNN v2, ResNet-50 FPN (shorter side 800, longer <= 1333); COCO box AP 46.7",
        ),
    )
}


def torchvision_spec(info: TorchvisionModelInfo) -> ModelSpec:
    return ModelSpec(
        name=info.name,
        family="torchvision",
        input_size=info.input_size,
        classes=COCO_WAYMO_CLASSES,
        description=info.description,
        batchable=True,
        tags=("coco",),
    )


def build_torchvision_model(name: str) -> Any:
    """The bare torchvision model, randomly initialised, with no download of any kind."""
    from carlink.torchvision_compat import import_torchvision

    tv = import_torchvision()
    builder = getattr(tv.models.detection, name)
    return builder(weights=None, weights_backbone=None, num_classes=len(COCO_CATEGORIES))


def read_state_dict(path: Path, name: str) -> dict[str, Any]:
    """Read a state-dict .pth safely (weights_only=True), naming the file if it is unusable."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip, non-tensor payload ...
        raise ValueError(f"model {name}: cannot read weights file {path}: {exc}") from exc
    if not isinstance(state, dict):
        raise ValueError(f"model {name}: weights file {path} holds a {type(state).__name__}, not a state dict")
    return state


def load_state_dict_into(model: Any, state: dict[str, Any], path: Path, name: str) -> None:
    """Load `state` strictly, saying which keys were wrong if it does not fit the architecture."""
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"model {name}: weights file {path} does not match the architecture: "
            f"missing {_first(result.missing_keys)}, unexpected {_first(result.unexpected_keys)}"
        )


def _first(keys: Sequence[str], n: int = 5) -> str:
    if not keys:
        return "none"
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


class TorchvisionDetector(Detector):
    """A torchvision detection model in eval mode on one device."""

    def __init__(
        self,
        spec: ModelSpec,
        model: Any,
        *,
        device: str,
        pretrained: bool,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    ) -> None:
        import torch

        self.spec = spec
        self.device = device
        self.pretrained = pretrained
        self.score_threshold = score_threshold
        self.model = model.eval().to(device)
        self._label_to_waymo = torch.tensor(coco_label_map(), dtype=torch.long)

    def _to_tensor(self, image: np.ndarray) -> Any:
        import torch

        check_bgr_image(image, self.spec.name)
        rgb = np.ascontiguousarray(image[:, :, ::-1])  # cv2 decodes BGR; torchvision wants RGB
        t = torch.from_numpy(rgb).to(self.device, non_blocking=True)
        return t.permute(2, 0, 1).float().div_(255.0)

    def detect(self, image: np.ndarray) -> list[Detection]:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        import torch

        if len(images) == 0:
            return []
        tensors = [self._to_tensor(im) for im in images]
        with torch.inference_mode():
            outputs = self.model(tensors)  # one forward pass; boxes come back in input pixels
        return [self._convert(o) for o in outputs]

    def _convert(self, output: dict[str, Any]) -> list[Detection]:
        labels = output["labels"].cpu()
        scores = output["scores"].float().cpu()
        boxes = output["boxes"].float().cpu()
        valid = (labels >= 0) & (labels < len(self._label_to_waymo))
        waymo = torch_where_valid(self._label_to_waymo, labels, valid)
        keep = (waymo >= 0) & (scores >= self.score_threshold)
        dets = [
            Detection(Box2D.from_xyxy(*map(float, b)), float(s), WaymoClass(int(c)))
            for b, s, c in zip(boxes[keep].tolist(), scores[keep].tolist(), waymo[keep].tolist())
        ]
        dets.sort(key=lambda d: d.score, reverse=True)
        return dets


def torch_where_valid(table: Any, labels: Any, valid: Any) -> Any:
    """table[labels] with -1 wherever a label is outside the table."""
    import torch

    safe = torch.where(valid, labels, torch.zeros_like(labels))
    return torch.where(valid, table[safe], torch.full_like(labels, -1))


def load_torchvision_detector(
    info: TorchvisionModelInfo,
    *,
    weights: str | Path | None = None,
    allow_untrained: bool = False,
    device: str = "auto",
    cache_dir: str | Path | None = None,
) -> TorchvisionDetector:
    """Build the model, load its weights (file or hub cache) or, if allowed, keep random ones."""
    dev = resolve_device(device)
    try:
        path: Path | None = locate_weights(info.name, info.weights, weights, cache_dir)
    except WeightsNotFoundError:
        if weights is not None or not allow_untrained:
            raise
        path = None
    state = read_state_dict(path, info.name) if path is not None else None  # fail before building
    model = build_torchvision_model(info.name)
    if state is not None:
        load_state_dict_into(model, state, path, info.name)
    return TorchvisionDetector(torchvision_spec(info), model, device=dev, pretrained=path is not None)
