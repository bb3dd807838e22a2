"""Make torchvision importable, and its detection models runnable, on a CPU-only torch.

PyPI's torchvision wheels are CUDA builds. On a CPU-only torch their compiled extension
(``torchvision/_C.so``) does not load, torchvision then never defines the ``torchvision::*``
operators, and ``import torchvision`` fails with "operator torchvision::nms does not exist"
(its ``_meta_registrations`` registers fake kernels for ops that were never defined).

`import_torchvision()` is the one way carlink imports torchvision. Where the compiled ops load,
it touches nothing. Only where they are missing does it define the ``torchvision`` operator
library itself, with the schemas of torchvision 0.28's C++ ops, and pure-PyTorch kernels for the
two ops that the detection models call:

- ``nms``: greedy non-maximum suppression exactly as torchvision's CPU kernel (areas without
  the +1, suppress when IoU > threshold, indices in decreasing score order);
- ``roi_align``: torchvision's CPU kernel semantics (Caffe2's RoIAlign): ``aligned`` shifts
  boxes by half a pixel, unaligned boxes are at least 1x1, ``sampling_ratio > 0`` samples that
  many points per bin side, ``<= 0`` samples ceil(bin size) points, samples outside
  [-1, size] contribute zero, bilinear interpolation with clamping at the border.

The other ops (roi_pool, ps_roi_align, ps_roi_pool, deform_conv2d, the quantised ones, the
backward ops, box_iou_rotated) get their schema, so that torchvision imports, and a kernel that
raises NotImplementedError naming the op. Kernels are registered for CPU and CUDA tensors alike
(they are plain tensor code) and for inference only: there is no Autograd kernel, so training
through them is not supported.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from carlink.extras import missing_extra

__all__ = ["import_torchvision", "install_fallback_ops", "nms", "ops_backend", "roi_align"]

# Schemas of torchvision 0.28's operators (as its _C extension defines them).
_SCHEMAS: dict[str, str] = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "roi_align": (
        "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
        "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor"
    ),
    "_roi_align_backward": (
        "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, "
        "SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width, "
        "int sampling_ratio, bool aligned) -> Tensor"
    ),
    "qroi_align": (
        "qroi_align(Tensor input, Tensor rois, float input_scale, int input_zero_point, "
        "float rois_scale, int rois_zero_point, float spatial_scale, SymInt pooled_height, "
        "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor"
    ),
    "roi_pool": (
        "roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
        "SymInt pooled_width) -> (Tensor, Tensor)"
    ),
    "_roi_pool_backward": (
        "_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, "
        "SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, "
        "SymInt height, SymInt width) -> Tensor"
    ),
    "ps_roi_align": (
        "ps_roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
        "SymInt pooled_width, int sampling_ratio) -> (Tensor, Tensor)"
    ),
    "_ps_roi_align_backward": (
        "_ps_roi_align_backward(Tensor grad, Tensor rois, Tensor channel_mapping, "
        "float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio, "
        "SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor"
    ),
    "ps_roi_pool": (
        "ps_roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
        "SymInt pooled_width) -> (Tensor, Tensor)"
    ),
    "_ps_roi_pool_backward": (
        "_ps_roi_pool_backward(Tensor grad, Tensor rois, Tensor channel_mapping, "
        "float spatial_scale, SymInt pooled_height, SymInt pooled_width, SymInt batch_size, "
        "SymInt channels, SymInt height, SymInt width) -> Tensor"
    ),
    "deform_conv2d": (
        "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, "
        "SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, "
        "SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) -> Tensor"
    ),
    "_deform_conv2d_backward": (
        "_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, "
        "Tensor mask, Tensor bias, SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, "
        "SymInt dilation_h, SymInt dilation_w, SymInt groups, SymInt offset_groups, "
        "bool use_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor)"
    ),
    "box_iou_rotated": "box_iou_rotated(Tensor boxes1, Tensor boxes2) -> Tensor",
    "_cuda_version": "_cuda_version() -> int",
}

_lock = threading.Lock()
_library: torch.library.Library | None = None  # kept alive: dropping it unregisters the ops
_backend: str | None = None


# --------------------------------------------------------------------------------------------
# Pure-PyTorch kernels


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes kept by greedy NMS, in decreasing score order (int64).

    Boxes are (x1, y1, x2, y2). Same arithmetic as torchvision's CPU kernel; ties in score are
    broken by index (stable sort).
    """
    if boxes.dim() != 2 or boxes.size(1) != 4:
        raise ValueError(f"nms: boxes must be an N x 4 tensor, got shape {tuple(boxes.shape)}")
    if scores.dim() != 1 or scores.size(0) != boxes.size(0):
        raise ValueError(
            f"nms: scores must be 1-D with one score per box, got shape {tuple(scores.shape)} "
            f"for {boxes.size(0)} boxes"
        )
    n = boxes.size(0)
    if n == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order]
    x1, y1, x2, y2 = b.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    over = torch.empty((n, n), dtype=torch.bool)
    # Row blocks bound the memory of the pairwise IoU to block x n.
    block = max(1, min(n, (1 << 22) // n))
    for start in range(0, n, block):
        end = min(n, start + block)
        xx1 = torch.maximum(x1[start:end, None], x1[None, :])
        yy1 = torch.maximum(y1[start:end, None], y1[None, :])
        xx2 = torch.minimum(x2[start:end, None], x2[None, :])
        yy2 = torch.minimum(y2[start:end, None], y2[None, :])
        inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
        iou = inter / (areas[start:end, None] + areas[None, :] - inter)
        over[start:end] = (iou > iou_threshold).cpu()
    over_np = over.numpy()
    suppressed = np.zeros(n, dtype=bool)
    keep = []
    for i in range(n):  # greedy pass over precomputed overlaps: O(n) vector ops
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= over_np[i]
    kept = torch.as_tensor(keep, dtype=torch.long, device=order.device)
    return order[kept]


def roi_align(
    input: torch.Tensor,
    rois: torch.Tensor,
    spatial_scale: float,
    pooled_height: int,
    pooled_width: int,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    """RoIAlign with torchvision's CPU-kernel semantics. rois: K x 5 (batch index, x1, y1, x2, y2).

    The kernel's bilinear sampling clamps coordinates to [0, size - 1] and zeroes samples outside
    [-1, size]; that is grid_sample with border padding and align_corners=True times a validity
    mask, which runs as one fused op instead of many gathers.
    """
    if input.dim() != 4:
        raise ValueError(f"roi_align: input must be N x C x H x W, got shape {tuple(input.shape)}")
    if rois.dim() != 2 or rois.size(1) != 5:
        raise ValueError(f"roi_align: rois must have shape K x 5, got {tuple(rois.shape)}")
    if input.dtype != rois.dtype:
        raise ValueError(f"roi_align: input ({input.dtype}) and rois ({rois.dtype}) dtypes differ")
    n_rois, channels = rois.size(0), input.size(1)
    height, width = input.size(2), input.size(3)
    ph, pw = int(pooled_height), int(pooled_width)
    out_dtype = input.dtype
    compute = torch.float32 if out_dtype in (torch.float16, torch.bfloat16) else out_dtype
    output = torch.zeros((n_rois, channels, ph, pw), dtype=compute, device=input.device)
    if output.numel() == 0 or height == 0 or width == 0:
        return output.to(out_dtype)

    feats = input.to(compute)
    r = rois.to(compute)
    offset = 0.5 if aligned else 0.0
    start_w = r[:, 1] * spatial_scale - offset
    start_h = r[:, 2] * spatial_scale - offset
    roi_w = r[:, 3] * spatial_scale - offset - start_w
    roi_h = r[:, 4] * spatial_scale - offset - start_h
    if not aligned:  # malformed boxes become 1 x 1
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    bin_h = roi_h / ph
    bin_w = roi_w / pw
    if sampling_ratio > 0:
        grid_h = torch.full((n_rois,), sampling_ratio, dtype=torch.long, device=input.device)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(roi_h / ph).long()
        grid_w = torch.ceil(roi_w / pw).long()
    batch = r[:, 0].long()

    # RoIs sharing image and sampling grid go through grid_sample together (with
    # sampling_ratio > 0: one group per image), in chunks that bound the sampled tensor.
    groups = torch.stack([batch, grid_h, grid_w], 1)
    for b, gh, gw in torch.unique(groups, dim=0).tolist():
        if gh <= 0 or gw <= 0:
            continue  # empty sampling grid: the kernel outputs zeros
        sel = ((batch == b) & (grid_h == gh) & (grid_w == gw)).nonzero().flatten()
        per_roi = channels * ph * gh * pw * gw
        chunk = max(1, (1 << 24) // per_roi)
        for i in range(0, sel.numel(), chunk):
            idx = sel[i : i + chunk]
            ys = _sample_positions(start_h[idx], bin_h[idx], ph, gh)  # k, ph*gh
            xs = _sample_positions(start_w[idx], bin_w[idx], pw, gw)  # k, pw*gw
            output[idx] = _sample_bins(feats[b : b + 1], ys, xs, ph, gh, pw, gw)
    return output.to(out_dtype)


def _sample_positions(start: torch.Tensor, bin_size: torch.Tensor, bins: int, grid: int) -> torch.Tensor:
    """Sample coordinates per RoI along one axis: bin p, sample i at start + (p + (i+.5)/grid) * bin."""
    p = torch.arange(bins, device=start.device, dtype=start.dtype)
    i = torch.arange(grid, device=start.device, dtype=start.dtype)
    pos = start[:, None, None] + p[None, :, None] * bin_size[:, None, None]
    pos = pos + (i[None, None, :] + 0.5) * bin_size[:, None, None] / grid
    return pos.reshape(start.size(0), bins * grid)


def _normalise(coord: torch.Tensor, size: int) -> torch.Tensor:
    # align_corners=True maps -1 to pixel 0 and +1 to pixel size-1
    if size == 1:
        return torch.zeros_like(coord)
    return coord * (2.0 / (size - 1)) - 1.0


def _sample_bins(
    feat: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, ph: int, gh: int, pw: int, gw: int
) -> torch.Tensor:
    """Average of the bilinear samples of each bin, for k RoIs of one image: k x C x ph x pw."""
    k = ys.size(0)
    height, width = feat.size(2), feat.size(3)
    # NaN and out-of-range samples contribute zero (the kernel's "empty" case)
    y_valid = (ys >= -1.0) & (ys <= height)
    x_valid = (xs >= -1.0) & (xs <= width)
    ys = torch.where(y_valid, ys, torch.zeros_like(ys))
    xs = torch.where(x_valid, xs, torch.zeros_like(xs))
    gy = _normalise(ys, height)[:, :, None].expand(k, ph * gh, pw * gw)
    gx = _normalise(xs, width)[:, None, :].expand(k, ph * gh, pw * gw)
    grid = torch.stack([gx, gy], dim=-1).reshape(1, k * ph * gh, pw * gw, 2)
    sampled = torch.nn.functional.grid_sample(
        feat, grid, mode="bilinear", padding_mode="border", align_corners=True
    )  # 1, C, k*ph*gh, pw*gw
    mask = (y_valid[:, :, None] & x_valid[:, None, :]).to(sampled.dtype)  # k, ph*gh, pw*gw
    sampled = sampled.reshape(-1, k, ph * gh, pw * gw) * mask[None]
    sampled = sampled.reshape(-1, k, ph, gh, pw, gw).sum(dim=(3, 5)) / float(gh * gw)
    return sampled.permute(1, 0, 2, 3)


def _not_implemented(op: str):
    def kernel(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f"torchvision::{op} has no carlink fallback kernel: torchvision's compiled ops did "
            "not load on this torch, and carlink implements only nms and roi_align (what its "
            "detection models need). Install a torchvision build matching this torch for the rest."
        )

    return kernel


def _cuda_version() -> int:
    return -1  # what torchvision's own CPU-only build reports


# --------------------------------------------------------------------------------------------
# Detection and registration


def _op_defined(name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def _try_load_native() -> bool:
    """Load torchvision's compiled ops without importing torchvision; True if they are there."""
    if _op_defined("nms"):
        return True
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise missing_extra("torchvision's detection models", "torchvision", "torchvision")
    for folder in spec.submodule_search_locations:
        for lib in sorted(Path(folder).glob("_C*")):
            if lib.suffix not in (".so", ".pyd", ".dylib"):
                continue
            try:
                torch.ops.load_library(str(lib))
            except (OSError, RuntimeError):
                continue  # e.g. a CUDA build on a CPU-only torch: its symbols do not resolve
            if _op_defined("nms"):
                return True
    return False


def install_fallback_ops() -> str:
    """Define the torchvision ops where the compiled ones are missing.

    Returns the backend in use: "native" (torchvision's compiled ops, left untouched) or
    "carlink" (this module's kernels). Safe to call many times and from many threads.
    """
    global _library, _backend
    with _lock:
        if _backend is not None:
            return _backend
        if _try_load_native():
            _backend = "native"
            return _backend
        lib = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS.values():
            lib.define(schema)
        kernels: dict[str, Any] = {name: _not_implemented(name) for name in _SCHEMAS}
        kernels.update(nms=nms, roi_align=roi_align)
        for name, fn in kernels.items():
            if name == "_cuda_version":
                lib.impl(name, _cuda_version, "CompositeExplicitAutograd")
                continue
            for key in ("CPU", "CUDA"):
                lib.impl(name, fn, key)
        _library = lib
        _backend = "carlink"
        return _backend


def ops_backend() -> str:
    """ "native" or "carlink": which kernels serve torchvision's ops (installs them if needed)."""
    return install_fallback_ops()


def _drop_partial_torchvision() -> None:
    # An earlier `import torchvision` that failed leaves its submodules behind; a retry would
    # then reuse half-initialised modules.
    if "torchvision" not in sys.modules:
        for name in [m for m in sys.modules if m.startswith("torchvision.")]:
            del sys.modules[name]


def import_torchvision() -> ModuleType:
    """Import torchvision, with carlink's kernels first where its compiled ops are missing."""
    backend = install_fallback_ops()
    _drop_partial_torchvision()
    import torchvision

    if backend == "carlink":
        # torchvision asks `extension._has_ops()` before using an op and would refuse (or, for
        # roi_align, take its own Python path); the ops exist now, so say so.
        def _has_ops() -> bool:
            return True

        # `torchvision.ops.roi_align` is also the name of a function, hence sys.modules.
        for module in ("torchvision.extension", "torchvision.ops.roi_align"):
            sys.modules[module]._has_ops = _has_ops
    return torchvision
