"""How long `carlink profile run` takes with the default profile's grid, per frame and projected.

The grid of carlink/profiles/default.json: on-car yolo-fastest-1.1-320x320, in the cloud the
other 14 Darknet variants (3 networks x 5 input sizes) with TURBO's transports input:jpeg50,
input:jpeg90, input:png and native:jpeg90 (56 options; 53 model runs per frame, because where a
model's input is the 640x640 frame, input and native send the same bytes and share one run), on
the OpenCV backend. Measured on the first N frames of the first real 1 Hz FRONT sequence.

Prints per model: runs and the time inside it (decode + detect for cloud options, detect on-car)
read back from the checkpoint; the ratio wall / model time is the profiler's own overhead
(encoding, AP matching, checkpoint writes, model loading). Ends with one summary line, with the
projection to the default profile's 300 frames.

    python tests/benchmarks/profiler.py [--data DIR] [--frames N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cv2

from carlink.replay.profile_cli import DEFAULT_ONBOARD, default_cloud_models
from carlink.replay.profiling import (
    DEFAULT_OPTIONS,
    ON_CAR_ID,
    ProfileConfig,
    checkpoint_path,
    iter_measurements,
    parse_options,
    run_profile,
)
from benchlib import default_data_dir

DEFAULT_PROFILE_FRAMES = 300  # the first 15 of the 30 sequences, 20 frames each


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(default_data_dir()), help="the shared/data folder (default: %(default)s)")
    ap.add_argument("--frames", type=int, default=5, help="frames to profile (default: %(default)s)")
    args = ap.parse_args()
    seq_dir = Path(args.data) / "waymo" / "udacity_c1_front_1hz"
    scenes = sorted(seq_dir.glob("*.tfrecord"), key=lambda p: p.name)
    if not scenes or not (Path(args.data) / "models").is_dir():
        print(f"no real sequences or models under {args.data}: set CARLINK_TEST_DATA or --data", file=sys.stderr)
        return 2
    os.environ.setdefault("CARLINK_MODELS_DIR", str(Path(args.data) / "models"))
    models = default_cloud_models()
    config = ProfileConfig(scenes=(str(scenes[0]),), models=models, onboard=DEFAULT_ONBOARD,
                           transports=parse_options(DEFAULT_OPTIONS), tasks=("FRONT",), max_frames=args.frames,
                           backend="opencv")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        t0 = time.perf_counter()
        profile, result = run_profile(config, out, progress_bar=False, keep_checkpoint=True)
        wall = time.perf_counter() - t0
        ms = list(iter_measurements(checkpoint_path(out)))
    # options that share a run (same frame, model and payload) carry the same time: count it once
    options: dict[str, int] = defaultdict(int)
    runs: dict[str, dict[tuple[str, float], float]] = defaultdict(dict)
    for m in ms:
        model = DEFAULT_ONBOARD if m.option == ON_CAR_ID else next(x for x in models if m.option.startswith(x + "-"))
        options[model] += 1
        runs[model][(m.frame, m.runtime_ms)] = m.runtime_ms
    model_s = sum(sum(r.values()) for r in runs.values()) / 1000
    print(f"profiling {args.frames} real 640x640 FRONT frames ({scenes[0].name}), OpenCV {cv2.__version__}, "
          f"cv2 threads {cv2.getNumThreads()}, {os.cpu_count()} CPUs (shared)")
    print(f"grid: on-car {DEFAULT_ONBOARD}; cloud {len(models)} Darknet variants x {DEFAULT_OPTIONS} = "
          f"{len(profile.tasks[0].options)} options\n")
    print(f"{'model':<34} {'options':>7} {'runs':>5} {'model s':>8}")
    for model, r in runs.items():
        print(f"{model:<34} {options[model] // args.frames:>7} {len(r):>5} {sum(r.values()) / 1000:8.2f}")
    per_frame = wall / args.frames
    projected_min = per_frame * DEFAULT_PROFILE_FRAMES / 60
    print(f"\nwall {wall:.1f} s ({per_frame:.2f} s per frame); inside models {model_s:.1f} s; "
          f"wall / model time = {wall / model_s:.2f} (the rest: encode, AP matching, checkpoint, model loading)")
    print(f"projected for the default profile's {DEFAULT_PROFILE_FRAMES} frames: {projected_min:.1f} min")
    print(f"SUMMARY profile_default_grid frames={args.frames} wall_s={wall:.1f} s_per_frame={per_frame:.2f} "
          f"measurements={result.measured} overhead_ratio={wall / model_s:.2f} "
          f"projected_{DEFAULT_PROFILE_FRAMES}_frames_min={projected_min:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
