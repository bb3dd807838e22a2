"""How long `carlink profile run` takes on one real 5-camera Waymo frame with the default option set.

Default option set: cloud models hog-default and hog-daimler, on-car hog-default-fast, resize
native / x0.75 / x0.5, codecs JPEG 50/75/90/95 and PNG: 2 x 3 x 5 = 30 cloud options per camera.
All five cameras are measured (--empty-frames turbo, so the label-free SIDE_LEFT counts too).

Prints per camera: measurements, wall time, and the time inside the models (decode + detect for
cloud options, detect on-car) read back from the checkpoint; the ratio wall / model time is the
profiler's own overhead (encoding, AP matching, checkpoint writes). Ends with one summary line.

    python tests/benchmarks/profiler.py [--data DIR]
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

from carlink.replay.evaluation import EmptyFrameRule
from carlink.replay.profile_cli import DEFAULT_CLOUD_MODELS, DEFAULT_ONBOARD
from carlink.replay.profiling import (
    ON_CAR_ID,
    ProfileConfig,
    checkpoint_path,
    iter_measurements,
    parse_options,
    run_profile,
)
from benchlib import default_data_dir

DEFAULT_OPTIONS = "native,x0.75,x0.5,jpeg50,jpeg75,jpeg90,jpeg95,png"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_data = str(default_data_dir())
    ap.add_argument("--data", default=default_data, help="the shared/data folder (default: %(default)s)")
    args = ap.parse_args()
    frame_file = Path(args.data) / "waymo" / "v1_frames" / "pvps_data_one_frame.tfrecord"
    if not frame_file.is_file():
        print(f"no real frame at {frame_file}: set CARLINK_TEST_DATA or --data", file=sys.stderr)
        return 2
    transports = parse_options(DEFAULT_OPTIONS)
    config = ProfileConfig(scenes=(str(frame_file),), models=tuple(DEFAULT_CLOUD_MODELS.split(",")),
                           onboard=DEFAULT_ONBOARD, transports=transports,
                           empty_frames=EmptyFrameRule.TURBO)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        t0 = time.perf_counter()
        profile, result = run_profile(config, out, progress_bar=False, keep_checkpoint=True)
        wall = time.perf_counter() - t0
        ms = list(iter_measurements(checkpoint_path(out)))
    per_task: dict[str, list[float]] = defaultdict(list)
    per_model: dict[str, float] = defaultdict(float)
    for m in ms:
        per_task[m.task].append(m.runtime_ms)
        model = DEFAULT_ONBOARD if m.option == ON_CAR_ID else next(x for x in config.models if m.option.startswith(x + "-"))
        per_model[model] += m.runtime_ms / 1000
    model_s = sum(per_model.values())
    print(f"profiling one real 5-camera frame ({frame_file.name}), OpenCV {cv2.__version__}, "
          f"cv2 threads {cv2.getNumThreads()}, {os.cpu_count()} CPUs (shared)")
    print(f"option set: models {DEFAULT_CLOUD_MODELS} x {DEFAULT_OPTIONS}; on-car {DEFAULT_ONBOARD}\n")
    print(f"{'camera':<12} {'size':>10} {'runs':>5} {'model s':>8}")
    sizes = {t.name: "x".join(map(str, t.image_size)) for t in profile.tasks}
    for task, times in per_task.items():
        print(f"{task:<12} {sizes[task]:>10} {len(times):>5} {sum(times) / 1000:8.2f}")
    print(f"\n{'model':<22} {'s':>8}")
    for model, s in per_model.items():
        print(f"{model:<22} {s:8.2f}")
    print(f"\nwall {wall:.1f} s; inside models {model_s:.1f} s; wall / model time = {wall / model_s:.2f}"
          f" (the rest: encode, AP matching, checkpoint)")
    print(f"SUMMARY profile_one_5cam_frame wall_s={wall:.1f} model_s={model_s:.1f} "
          f"measurements={result.measured} overhead_ratio={wall / model_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
