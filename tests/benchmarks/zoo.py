"""Benchmark of the zoo's Darknet family on real Waymo FRONT frames.

Run: ``python tests/benchmarks/zoo.py`` (data from CARLINK_TEST_DATA, else ../shared/data; the
models from $CARLINK_TEST_DATA/models unless CARLINK_MODELS_DIR says otherwise).

1. AP@0.5 per variant (OpenCV backend) on the evaluation sequences (the LAST 15 of the 30 sorted
   1 Hz sequences; every 4th frame): vehicle and pedestrian pooled over the frames, and the mean of
   per-frame AP (vehicle, pedestrian, cyclist where present), as the profiler's utility.
2. Score-threshold sweep for the car's default and the best cloud variant on the profiling
   sequences (the FIRST 15), which is how the default threshold was chosen.
3. Runtime p50/p99 per image on random input, OpenCV and torch, 1 and 2 threads (equal for both).
4. Agreement between the backends on real frames (partner of the same class, IoU >= 0.99, score
   within 1e-3), and torch batch 8 per image against batch 1 and OpenCV.
"""

from __future__ import annotations

import os
import sys
import time

import cv2
import numpy as np
import torch

from benchlib import data_root

from carlink.datasets.scene import read_frames
from carlink.detection import WaymoClass
from carlink.replay.evaluation import Label, frame_ap, match_frame, mean_of_frames, set_ap
from carlink.zoo.bench import bench_detector, cpu_name
from carlink.zoo.darknet import VARIANTS
from carlink.zoo.registry import DEFAULT_MODEL, get_model

EVAL_STEP = 4  # every 4th frame of each sequence: 5 of 20
SWEEP = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
FLOOR = min(SWEEP)


def load_frames(paths, step):
    out = []
    for path in paths:
        for i, frame in enumerate(read_frames(path)):
            if i % step:
                continue
            cam = frame.cameras[0]
            labels = [Label(l.box, l.type) for l in frame.labels.get(cam, [])]
            out.append((frame.image(cam).decode(), labels))
    return out


def accuracy(dets_per_frame, frames, threshold):
    matches, per_frame = [], []
    for dets, (_, labels) in zip(dets_per_frame, frames):
        kept = [d for d in dets if d.score > threshold]
        matches.append(match_frame(labels, kept))
        per_frame.append(frame_ap(labels, kept))
    pooled = set_ap(matches)
    return (pooled.per_class.get(WaymoClass.VEHICLE, 0.0), pooled.per_class.get(WaymoClass.PEDESTRIAN, 0.0),
            mean_of_frames(per_frame) or 0.0)


def iou(a, b):
    ax1, ay1, ax2, ay2 = a.to_xyxy()
    bx1, by1, bx2, by2 = b.to_xyxy()
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = a.length * a.width + b.length * b.width - inter
    return inter / union if union > 0 else 0.0


def agreement(cv_dets, pt_dets, threshold):
    """(detections, without a partner, worst partner IoU, worst score difference)."""
    n = unmatched = 0
    worst_iou, worst_ds = 1.0, 0.0
    for a_frame, b_frame in zip(cv_dets, pt_dets):
        for mine, other in ((a_frame, b_frame), (b_frame, a_frame)):
            for d in mine:
                n += 1
                pairs = [(iou(d.box, e.box), abs(d.score - e.score)) for e in other if e.cls == d.cls]
                good = [p for p in pairs if p[0] >= 0.99 and p[1] <= 1e-3]
                if not good:
                    unmatched += d.score > threshold + 1e-3
                    continue
                worst_iou = min(worst_iou, max(p[0] for p in good))
                worst_ds = max(worst_ds, min(p[1] for p in good))
    return n, unmatched, worst_iou, worst_ds


def set_threads(n):
    cv2.setNumThreads(n)
    torch.set_num_threads(n)


def main() -> int:
    root = data_root()
    os.environ.setdefault("CARLINK_MODELS_DIR", str(root / "models"))
    seqs = sorted((root / "waymo" / "udacity_c1_front_1hz").glob("*.tfrecord"))
    assert len(seqs) == 30, len(seqs)
    t0 = time.time()
    evaluation = load_frames(seqs[15:], EVAL_STEP)
    profiling = load_frames(seqs[:15], EVAL_STEP)
    print(f"CPU: {cpu_name()}; torch {torch.__version__}, OpenCV {cv2.__version__}")
    print(f"evaluation: {len(evaluation)} frames (every {EVAL_STEP}th of the last 15 sequences); "
          f"profiling: {len(profiling)} frames of the first 15")

    # 1. accuracy per variant on the evaluation frames (OpenCV backend, 2 threads)
    set_threads(2)
    raw_eval, raw_prof, acc = {}, {}, {}
    print("\nAP@0.5 on the evaluation sequences (score threshold 0.01, NMS 0.45; mean = mean of per-frame AP)")
    print(f"{'variant':34} {'vehicle':>8} {'pedestr.':>8} {'mean/frame':>10}")
    for name in VARIANTS:
        det = get_model(name, backend="opencv", score_threshold=FLOOR)
        raw_eval[name] = [det.detect(im) for im, _ in evaluation]
        acc[name] = accuracy(raw_eval[name], evaluation, 0.01)
        print(f"{name:34} {acc[name][0]:8.3f} {acc[name][1]:8.3f} {acc[name][2]:10.3f}", flush=True)
    best = max((n for n in VARIANTS if n != DEFAULT_MODEL), key=lambda n: acc[n][2])

    # 2. threshold sweep on the profiling frames
    print("\nscore threshold sweep on the profiling sequences (mean per-frame AP; dets/frame)")
    print(f"{'variant':34} " + " ".join(f"{t:>11g}" for t in SWEEP))
    for name in (DEFAULT_MODEL, best):
        det = get_model(name, backend="opencv", score_threshold=FLOOR)
        raw_prof[name] = [det.detect(im) for im, _ in profiling]
        cells = []
        for t in SWEEP:
            m = accuracy(raw_prof[name], profiling, t)[2]
            per = np.mean([sum(d.score > t for d in ds) for ds in raw_prof[name]])
            cells.append(f"{m:.3f};{per:5.1f}")
        print(f"{name:34} " + " ".join(f"{c:>11}" for c in cells), flush=True)

    # 3. runtime per image on random input, both backends, 1 and 2 threads
    print("\nruntime per image, ms (random input; p50/p99)")
    print(f"{'variant':34} {'opencv 1t':>13} {'torch 1t':>13} {'opencv 2t':>13} {'torch 2t':>13}")
    runtime = {}
    for name in VARIANTS:
        size = VARIANTS[name].input_size
        iters = 10 if size[0] * size[1] <= 416 * 416 else 5
        cells = []
        for threads in (1, 2):
            set_threads(threads)
            for backend in ("opencv", "torch"):
                det = get_model(name, backend=backend, device="cpu")
                p50, p99 = bench_detector(det, 1, iters, warmup=1)
                runtime[(name, backend, threads)] = p50
                cells.append(f"{p50:6.1f}/{p99:6.1f}")
        print(f"{name:34} " + " ".join(f"{c:>13}" for c in cells), flush=True)

    # 4. agreement between backends on real frames, and batching
    set_threads(1)
    print("\nbackends on real frames (8 evaluation frames; torch as one batch of 8, 1 thread)")
    print(f"{'variant':34} {'dets':>5} {'unpaired':>8} {'min IoU':>9} {'max |ds|':>9} "
          f"{'cv b1':>7} {'pt b1':>7} {'pt b8/img':>9}")
    frames8 = [im for im, _ in evaluation[::max(1, len(evaluation) // 8)]][:8]
    worst_unpaired, ratios_b1, b8_faster = 0, [], []
    for name in (DEFAULT_MODEL, "mobilenetv2-yolov3-nano-416x416", "yolo-fastest-1.1-xl-640x640", best):
        cv = get_model(name, backend="opencv")
        pt = get_model(name, backend="torch", device="cpu")
        cv_dets = [cv.detect(im) for im in frames8]
        pt_dets = pt.detect_batch(frames8)
        n, unpaired, wi, wd = agreement(cv_dets, pt_dets, cv.score_threshold)
        worst_unpaired = max(worst_unpaired, unpaired)
        iters = 5
        cv1 = bench_detector(cv, 1, iters, warmup=1)[0]
        pt1 = bench_detector(pt, 1, iters, warmup=1)[0]
        pt8 = bench_detector(pt, 8, 2, warmup=1)[0]
        ratios_b1.append(pt1 / cv1)
        b8_faster.append(pt8 < cv1)
        print(f"{name:34} {n:5d} {unpaired:8d} {wi:9.5f} {wd:9.1e} {cv1:7.1f} {pt1:7.1f} {pt8:9.1f}", flush=True)

    gain = acc[best][2] - acc[DEFAULT_MODEL][2]
    print(f"\nelapsed {time.time() - t0:.0f} s")
    print(f"SUMMARY on-car {DEFAULT_MODEL} mean AP {acc[DEFAULT_MODEL][2]:.3f}, best cloud {best} {acc[best][2]:.3f} "
          f"(+{gain:.3f}, target +0.10 {'met' if gain >= 0.10 else 'MISSED'}); backends unpaired {worst_unpaired}; "
          f"torch/opencv b1 {min(ratios_b1):.2f}-{max(ratios_b1):.2f}x (target <= 2); torch b8 faster per image "
          f"than opencv b1 on {sum(b8_faster)}/{len(b8_faster)}; "
          f"{DEFAULT_MODEL} opencv 1 thread {runtime[(DEFAULT_MODEL, 'opencv', 1)]:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
