"""The Darknet family on OpenCV's DNN module: CPU only, no torch. The car's backend."""

from __future__ import annotations

import cv2
import numpy as np

from carlink.zoo.base import ModelSpec
from carlink.zoo.darknet import DarknetDetector, NetworkFiles
from carlink.zoo.errors import ModelFileError


def head_output_names(net: "cv2.dnn.Net", yolo_indices: tuple[int, ...]) -> list[str]:
    """OpenCV's names for the outputs feeding each [yolo] layer.

    The Darknet importer names layers "<type>_<cfg index>" (conv_120, bn_120, leaky_120): the
    last one carrying index i - 1 is what layer i reads.
    """
    names = list(net.getLayerNames())
    out = []
    for i in yolo_indices:
        ours = [n for n in names if n.rsplit("_", 1)[-1] == str(i - 1)]
        if not ours:
            raise RuntimeError(f"OpenCV's network has no layer numbered {i - 1} (the input of [yolo] layer {i})")
        out.append(ours[-1])
    return out


class OpenCvDarknetDetector(DarknetDetector):
    backend = "opencv"

    def __init__(self, spec: ModelSpec, files: NetworkFiles, *, score_threshold: float, nms_iou: float) -> None:
        super().__init__(spec, files, score_threshold=score_threshold, nms_iou=nms_iou)
        self.device = "cpu"
        try:
            self.net = cv2.dnn.readNetFromDarknet(str(files.cfg.path), str(files.weights_path))
        except cv2.error as exc:  # the files passed our checks; OpenCV may still refuse something
            raise ModelFileError(files.cfg.path, f"OpenCV cannot build this network: {exc.err or exc}") from None
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        # Stop at the convolutions: OpenCV's Region layer would zero every score <= 0.2.
        self.output_names = head_output_names(self.net, files.cfg.yolo_indices)

    def forward_heads(self, blob: np.ndarray) -> list[np.ndarray]:
        self.net.setInput(blob)
        return [np.asarray(o, dtype=np.float32) for o in self.net.forward(self.output_names)]
