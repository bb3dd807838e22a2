"""carlink.torchvision_compat: the pure-PyTorch nms and roi_align against references written
from their definitions, and torchvision's detection models running on top of them."""

from __future__ import annotations

import math

import pytest
import torch

from carlink import torchvision_compat as compat


pytestmark = pytest.mark.usefixtures("two_torch_threads")


# ------------------------------------------------------------------------------ references


def reference_nms(boxes: torch.Tensor, scores: torch.Tensor, thr: float) -> list[int]:
    """Textbook greedy NMS, O(n^2) in Python."""
    b = boxes.tolist()
    order = sorted(range(len(b)), key=lambda i: (-float(scores[i]), i))
    keep: list[int] = []
    for i in order:
        ok = True
        for j in keep:
            x1, y1 = max(b[i][0], b[j][0]), max(b[i][1], b[j][1])
            x2, y2 = min(b[i][2], b[j][2]), min(b[i][3], b[j][3])
            inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
            ai = (b[i][2] - b[i][0]) * (b[i][3] - b[i][1])
            aj = (b[j][2] - b[j][0]) * (b[j][3] - b[j][1])
            union = ai + aj - inter
            if union > 0 and inter / union > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


def _bilinear(img: list[list[float]], y: float, x: float) -> float:
    """Value at (y, x) as RoIAlign defines it: zero outside [-1, size], clamped inside."""
    h, w = len(img), len(img[0])
    if not (-1.0 <= y <= h and -1.0 <= x <= w):
        return 0.0
    y, x = min(max(y, 0.0), h - 1), min(max(x, 0.0), w - 1)
    y0, x0 = int(math.floor(y)), int(math.floor(x))
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    ly, lx = y - y0, x - x0
    return (
        (1 - ly) * (1 - lx) * img[y0][x0] + (1 - ly) * lx * img[y0][x1]
        + ly * (1 - lx) * img[y1][x0] + ly * lx * img[y1][x1]
    )


def reference_roi_align(inp, rois, scale, ph, pw, sampling_ratio, aligned):
    """Mask R-CNN's RoIAlign written out from the definition: each output bin is the mean of a
    regular grid of bilinear samples inside it."""
    n_rois, c = rois.shape[0], inp.shape[1]
    out = torch.zeros(n_rois, c, ph, pw, dtype=torch.float64)
    data = inp.double().tolist()
    for k, (bi, x1, y1, x2, y2) in enumerate(rois.double().tolist()):
        off = 0.5 if aligned else 0.0
        sx, sy = x1 * scale - off, y1 * scale - off
        rw, rh = x2 * scale - off - sx, y2 * scale - off - sy
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph, rw / pw
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / ph)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / pw)
        if gh <= 0 or gw <= 0:
            continue
        for ch in range(c):
            img = data[int(bi)][ch]
            for i in range(ph):
                for j in range(pw):
                    total = 0.0
                    for iy in range(gh):
                        y = sy + i * bh + (iy + 0.5) * bh / gh
                        for ix in range(gw):
                            x = sx + j * bw + (ix + 0.5) * bw / gw
                            total += _bilinear(img, y, x)
                    out[k, ch, i, j] = total / (gh * gw)
    return out


def _random_boxes(n: int, gen: torch.Generator, size: float = 100.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen) * size
    wh = torch.rand(n, 2, generator=gen) * size / 3
    return torch.cat([xy, xy + wh], 1)


# ------------------------------------------------------------------------------ nms


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_matches_reference(seed: int, thr: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    n = 5 + 40 * seed
    boxes = _random_boxes(n, gen)
    scores = torch.rand(n, generator=gen)
    got = compat.nms(boxes, scores, thr)
    assert got.dtype == torch.long
    assert got.tolist() == reference_nms(boxes, scores, thr)


def test_nms_edge_cases() -> None:
    empty = compat.nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert empty.shape == (0,) and empty.dtype == torch.long
    # identical boxes: the higher score survives, ties go to the lower index
    boxes = torch.tensor([[0.0, 0, 10, 10]] * 3)
    assert compat.nms(boxes, torch.tensor([0.1, 0.9, 0.9]), 0.5).tolist() == [1]
    # zero-area boxes have IoU 0/0: never suppressed, as in the C++ kernel
    flat = torch.tensor([[0.0, 0, 0, 10], [0.0, 0, 0, 10]])
    assert sorted(compat.nms(flat, torch.tensor([0.5, 0.4]), 0.5).tolist()) == [0, 1]
    with pytest.raises(ValueError, match="N x 4"):
        compat.nms(torch.zeros(3, 5), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="one score per box"):
        compat.nms(torch.zeros(3, 4), torch.zeros(2), 0.5)


# ------------------------------------------------------------------------------ roi_align


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 3])
def test_roi_align_matches_reference(aligned: bool, sampling_ratio: int) -> None:
    gen = torch.Generator().manual_seed(7 + sampling_ratio + 10 * aligned)
    inp = torch.rand(2, 3, 13, 17, generator=gen, dtype=torch.float64)
    k = 9
    boxes = _random_boxes(k, gen, size=30.0) - 4.0  # some boxes reach outside the map
    boxes[0] = torch.tensor([3.0, 3.0, 3.2, 3.1])  # smaller than a pixel: 1x1 rule / tiny grid
    boxes[1] = torch.tensor([-10.0, -10.0, -3.0, -2.5])  # entirely outside: zeros
    batch = torch.randint(0, 2, (k, 1), generator=gen).double()
    rois = torch.cat([batch, boxes.double()], 1)
    for scale, ph, pw in [(0.5, 3, 4), (1.0, 2, 2), (0.25, 7, 7)]:
        got = compat.roi_align(inp, rois, scale, ph, pw, sampling_ratio, aligned)
        want = reference_roi_align(inp, rois, scale, ph, pw, sampling_ratio, aligned)
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_roi_align_float32_and_bad_input() -> None:
    gen = torch.Generator().manual_seed(3)
    inp = torch.rand(1, 4, 20, 20, generator=gen)
    rois = torch.cat([torch.zeros(5, 1), _random_boxes(5, gen, size=20.0)], 1)
    got = compat.roi_align(inp, rois, 1.0, 5, 5, 2, True)
    want = reference_roi_align(inp, rois, 1.0, 5, 5, 2, True)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    assert compat.roi_align(inp, torch.zeros(0, 5), 1.0, 7, 7, 2, False).shape == (0, 4, 7, 7)
    with pytest.raises(ValueError, match="K x 5"):
        compat.roi_align(inp, torch.zeros(3, 4), 1.0, 7, 7, 2, False)
    with pytest.raises(ValueError, match="dtypes differ"):
        compat.roi_align(inp, torch.zeros(3, 5, dtype=torch.float64), 1.0, 7, 7, 2, False)
