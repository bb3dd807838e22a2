"""The Darknet family on PyTorch: a module built from the .cfg, loaded from the same .weights.

CUDA when torch sees a GPU, one forward pass per batch (the cloud server batches batchable
models). No torchvision: its CUDA wheel fails to import on a CPU-only torch, and nothing here
needs it (decoding and NMS are shared with the OpenCV backend, in numpy).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from carlink.zoo.base import ModelSpec
from carlink.zoo.darknet import DarknetDetector, NetworkFiles
from carlink.zoo.darknet_cfg import (
    ConvLayer,
    ConvParams,
    DarknetCfg,
    DarknetWeights,
    DropoutLayer,
    MaxpoolLayer,
    RouteLayer,
    ShortcutLayer,
    UpsampleLayer,
    YoloLayer,
)

# Batch-norm variance epsilon, folded into the convolution: Darknet's and OpenCV's importer's
# value. Some running variances here are tiny, so eps matters: torch's usual 1e-5 moves raw
# outputs by up to 0.09 against OpenCV, 1e-6 by about 4e-5.
BN_EPS = 1e-6


def _activation(name: str) -> nn.Module:
    if name == "leaky":
        return nn.LeakyReLU(0.1)
    if name == "relu":
        return nn.ReLU()
    if name == "logistic":
        return nn.Sigmoid()
    return nn.Identity()


def _conv(layer: ConvLayer, in_channels: int, params: ConvParams | None) -> nn.Sequential:
    conv = nn.Conv2d(in_channels, layer.filters, layer.size, layer.stride, layer.padding,
                     groups=layer.groups, bias=True)
    if params is not None:
        kernel = torch.from_numpy(params.kernel.copy())
        bias = torch.from_numpy(params.bias.copy())
        if params.bn_scale is not None:
            # Inference-time batch norm is affine per channel: fold it into kernel and bias.
            scale = torch.from_numpy(params.bn_scale) / torch.sqrt(torch.from_numpy(params.bn_var) + BN_EPS)
            kernel = kernel * scale[:, None, None, None]
            bias = bias - torch.from_numpy(params.bn_mean) * scale
        with torch.no_grad():
            conv.weight.copy_(kernel)
            conv.bias.copy_(bias)
    return nn.Sequential(conv, _activation(layer.activation))


class DarknetModule(nn.Module):
    """The network of a .cfg. forward(x) returns the raw inputs of its [yolo] layers."""

    def __init__(self, cfg: DarknetCfg, weights: DarknetWeights | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.kinds: list[str] = []
        self.convs = nn.ModuleDict()
        in_channels = cfg.channels
        for index, layer in enumerate(cfg.layers):
            self.kinds.append(type(layer).__name__)
            if isinstance(layer, ConvLayer):
                params = weights.convs[index] if weights is not None else None
                self.convs[str(index)] = _conv(layer, in_channels, params)
            in_channels = cfg.out_channels[index]
        # Keep only the outputs a later [route] or [shortcut] reads; the rest are freed at once.
        needed: set[int] = set()
        for layer in cfg.layers:
            if isinstance(layer, RouteLayer):
                needed.update(layer.layers)
            elif isinstance(layer, ShortcutLayer):
                needed.add(layer.source)
        self.needed = needed

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        saved: dict[int, torch.Tensor] = {}
        heads: list[torch.Tensor] = []
        for index, layer in enumerate(self.cfg.layers):
            if isinstance(layer, ConvLayer):
                x = self.convs[str(index)](x)
            elif isinstance(layer, RouteLayer):
                parts = [saved[i] if i != index - 1 or i in saved else x for i in layer.layers]
                if layer.groups > 1:
                    parts = [p.chunk(layer.groups, dim=1)[layer.group_id] for p in parts]
                x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
            elif isinstance(layer, ShortcutLayer):
                x = x + saved[layer.source]
                if layer.activation != "linear":
                    x = _activation(layer.activation)(x)
            elif isinstance(layer, UpsampleLayer):
                x = F.interpolate(x, scale_factor=layer.stride, mode="nearest")
            elif isinstance(layer, MaxpoolLayer):
                x = _maxpool(x, layer)
            elif isinstance(layer, YoloLayer):
                heads.append(x)
            elif isinstance(layer, DropoutLayer):
                pass  # the identity at inference
            if index in self.needed:
                saved[index] = x
        return heads


def _maxpool(x: torch.Tensor, layer: MaxpoolLayer) -> torch.Tensor:
    """Darknet's max pool: `padding` cells of -inf, padding // 2 before and the rest after."""
    before = layer.padding // 2
    after = layer.padding - before
    if layer.padding:
        x = F.pad(x, (before, after, before, after), value=float("-inf"))
    return F.max_pool2d(x, layer.size, layer.stride)


class TorchDarknetDetector(DarknetDetector):
    backend = "torch"

    def __init__(self, spec: ModelSpec, files: NetworkFiles, *, device: str, score_threshold: float,
                 nms_iou: float) -> None:
        super().__init__(spec, files, score_threshold=score_threshold, nms_iou=nms_iou)
        self.device = device
        self.module = DarknetModule(files.cfg, files.weights).eval().to(device)
        if device == "cpu":
            # NHWC runs the depthwise convolutions of these networks markedly faster on CPUs.
            self.module = self.module.to(memory_format=torch.channels_last)

    def forward_heads(self, blob: np.ndarray) -> list[np.ndarray]:
        x = torch.from_numpy(blob).to(self.device, non_blocking=True)
        if self.device == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            heads = self.module(x)
        return [h.float().contiguous().cpu().numpy() for h in heads]
