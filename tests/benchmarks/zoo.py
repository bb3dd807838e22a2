"""Benchmark of the model zoo on the real Waymo FRONT image (1920x1280).

Run: ``python tests/benchmarks/zoo.py`` (data from CARLINK_TEST_DATA, else ../shared/data).
Per model: median detect time and pedestrians matched at IoU 0.5 (HOG: pretrained; torchvision:
random weights where the official ones are not in the hub cache, so only the time means
anything). Then carlink's CPU fallback roi_align/nms at the sizes a Faster R-CNN box head uses.
One torch thread, so that figures are comparable on a shared machine.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Callable

import torch

from carlink.datasets.frames import CameraName
from carlink.datasets.scene import read_frames
from carlink.detection import Box2D, WaymoClass
from carlink.torchvision_compat import nms, ops_backend, roi_align
from carlink.zoo.registry import get_model, list_specs
from benchlib import data_root


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up: lazy initialisation, allocator
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def iou(a: Box2D, b: Box2D) -> float:
    ax1, ay1, ax2, ay2 = a.to_xyxy()
    bx1, by1, bx2, by2 = b.to_xyxy()
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    return inter / (a.length * a.width + b.length * b.width - inter)


def main() -> int:
    torch.set_num_threads(1)
    frame = next(iter(read_frames(data_root() / "waymo/v1_frames/pvps_data_one_frame.tfrecord")))
    image = frame.image(CameraName.FRONT).decode()
    peds = [l.box for l in frame.labels[CameraName.FRONT] if l.type == WaymoClass.PEDESTRIAN]

    print(f"real FRONT image {image.shape[1]}x{image.shape[0]}, {len(peds)} labelled pedestrians")
    print(f"{'model':40} {'weights':10} {'ms':>9} {'dets':>5} {'peds@.5':>8}")
    figures = {}
    for spec in list_specs():
        if spec.family == "torchvision" and spec.name not in (
            "fasterrcnn_mobilenet_v3_large_320_fpn", "ssdlite320_mobilenet_v3_large"
        ):
            continue  # the ResNet-50 models take tens of seconds per image on one CPU thread
        det = get_model(spec.name, allow_untrained=True, device="cpu")
        runs = 1 if spec.name.endswith("accurate") else 3
        ms = median_ms(lambda: det.detect(image), runs)
        dets = det.detect(image)
        found = sum(1 for p in peds if any(iou(p, d.box) >= 0.5 for d in dets))
        weights = "real" if det.pretrained else "random"
        print(f"{spec.name:40} {weights:10} {ms:9.1f} {len(dets):5d} {found:8d}")
        figures[spec.name] = ms

    gen = torch.Generator().manual_seed(0)
    feats = torch.rand(1, 256, 50, 76, generator=gen)
    xy = torch.rand(1000, 2, generator=gen) * 60
    rois = torch.cat([torch.zeros(1000, 1), xy, xy + 4 + torch.rand(1000, 2, generator=gen) * 80], 1)
    ra_ms = median_ms(lambda: roi_align(feats, rois, 0.25, 7, 7, 2, False), 3)
    boxes, scores = rois[:, 1:] * 4, torch.rand(1000, generator=gen)
    nms_ms = median_ms(lambda: nms(boxes, scores, 0.7), 5)
    print(f"\nops backend: {ops_backend()}")
    print(f"roi_align 1000 RoIs x 256 ch -> 7x7, sampling 2: {ra_ms:.1f} ms")
    print(f"nms 1000 boxes, IoU 0.7: {nms_ms:.1f} ms")
    print(
        f"SUMMARY hog-default {figures['hog-default']:.0f} ms, hog-daimler {figures['hog-daimler']:.0f} ms, "
        f"hog-default-accurate {figures['hog-default-accurate']:.0f} ms, noop {figures['noop']:.2f} ms, "
        f"ssdlite {figures['ssdlite320_mobilenet_v3_large']:.0f} ms, roi_align {ra_ms:.0f} ms, nms {nms_ms:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
