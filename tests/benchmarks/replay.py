"""Benchmark of the virtual-clock replay (run: python tests/benchmarks/replay.py).

1. Speed: frames per second of the virtual-clock replay with profile-driven utilities (no model
   runs), 5 tasks (the shipped example profile's five cameras), synthetic 10 Hz frames over the
   real NUWiNS 5G uplink trace, one policy at a time, torch/OpenCV held to one thread.
2. Policies on the real data: the real scenes in ../shared/data (the 5-camera Waymo frame and the
   three 1 Hz FRONT sequences, 61 frames) with the default profile (carlink/profiles/default.json,
   measured with the real HOG detectors; per-frame utilities) over the real NUWiNS 5G mmWave
   uplink trace (series A). The scenes last about a minute and the trace 49 minutes, so the
   replay is repeated from every OFFSET_STEP_S seconds of the trace and the task-frames of all
   those runs are pooled. Per scale: each policy's mean utility, carlink/turbo, carlink/oracle.

3. The same policies where carlink's design matters more (several tasks at 10 Hz): synthetic
   5-camera 10 Hz frames with the shipped ILLUSTRATIVE example profile (not measurements) over
   the same real NUWiNS trace, replays every 240 s of the trace, pooled.

Sections 2 and 3 run with each source of bandwidth knowledge (ReplayConfig.estimates): "uploads"
(the default and realistic one: carlink and turbo each learn the link from their own uploads,
probes and pings through the car's UplinkEstimator) and "trace" (both read the link's true
capacity per past 100 ms bin).

Data from CARLINK_TEST_DATA (default ../shared/data next to the repository).
"""

from __future__ import annotations

import glob
import sys
import time
from pathlib import Path

import cv2

from carlink.datasets.trace_readers import load_trace
from carlink.profile import EXAMPLE_PROFILE
from carlink.replay import demo
from carlink.replay.frame_utility import ProfileUtilities
from carlink.replay.player import load_scenes
from carlink.replay.policies import POLICY_NAMES
from carlink.replay.profile_view import default_profile_path, load_replay_profile
from carlink.replay.results import PolicyRun, mean_utility
from carlink.replay.runner import ReplayConfig, run_virtual
from benchlib import data_root

OFFSET_STEP_S = 60.0
SCALES = (0.25, 0.5, 1.0)


def speed(trace) -> dict[str, float]:
    profile = load_replay_profile(EXAMPLE_PROFILE)
    frames = demo.synthetic_frames(600)
    out = {}
    for name in POLICY_NAMES:
        cfg = ReplayConfig(policies=(name,), scale=0.25, trace_offset_s=120.0)
        run_virtual(frames[:50], profile, trace, ProfileUtilities(), cfg)  # warm up
        t0 = time.perf_counter()
        run_virtual(frames, profile, trace, ProfileUtilities(), cfg)
        out[name] = len(frames) / (time.perf_counter() - t0)
    return out


def pooled_means(frames, profile, trace, scale: float, estimates: str,
                 step_s: float) -> tuple[dict[str, float | None], int]:
    """Replays started every ``step_s`` seconds of the trace, task-frames pooled: each policy's
    weighted mean utility, and how many replays were pooled."""
    weights = {t.name: t.weight for t in profile.tasks}
    pooled: dict[str, list] = {p: [] for p in POLICY_NAMES}
    offset, runs = 0.0, 0
    while offset + frames[-1].t + 2 < trace.duration_s:
        res = run_virtual(frames, profile, trace, ProfileUtilities(),
                          ReplayConfig(scale=scale, trace_offset_s=offset, estimates=estimates))
        for p in POLICY_NAMES:
            pooled[p].extend(res.runs[p].tasks)
        offset += step_s
        runs += 1
    return {p: mean_utility(PolicyRun(p, tasks=pooled[p]), weights) for p in POLICY_NAMES}, runs


def policies_on_real_data(root: Path, trace, scale: float,
                          estimates: str) -> tuple[dict[str, float | None], int, str]:
    scenes = [root / "waymo/v1_frames/pvps_data_one_frame.tfrecord",
              *sorted(Path(p) for p in glob.glob(str(root / "waymo/udacity_c1_front_1hz/*.tfrecord")))]
    profile = load_replay_profile(default_profile_path())
    means, runs = pooled_means(load_scenes(scenes), profile, trace, scale, estimates, OFFSET_STEP_S)
    return means, runs, profile.path


def policies_at_10hz(trace, scale: float, estimates: str) -> dict[str, float | None]:
    profile = load_replay_profile(EXAMPLE_PROFILE)
    return pooled_means(demo.synthetic_frames(300), profile, trace, scale, estimates, 240.0)[0]


def _row(scale: float, means: dict) -> tuple[str, float | None, float | None]:
    c, t, o = means["carlink"], means["turbo"], means["oracle"]
    ct = c / t if c is not None and t else None
    co = c / o if c is not None and o else None
    nan = float("nan")
    line = (f"{scale:>6g}" + "".join(f"{(means[p] if means[p] is not None else nan):>13.5f}" for p in POLICY_NAMES)
            + f"{(ct if ct is not None else nan):>15.3f}{(co if co is not None else nan):>16.3f}")
    return line, ct, co


def main() -> int:
    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    root = data_root()
    trace_file = root / "bandwidth/nuwins_5g_uplink/driving/5g/throughput.list"
    if not trace_file.is_file():
        print(f"real data not found under {root}: set CARLINK_TEST_DATA", file=sys.stderr)
        return 2
    trace = load_trace(trace_file, "nuwins")

    fps = speed(trace)
    print("virtual-clock replay speed, profile-driven utilities, 5 tasks, 600 synthetic frames, one policy per run")
    print(f"{'policy':<14}{'frames/s':>10}")
    for name, v in fps.items():
        print(f"{name:<14}{v:>10.0f}")
    print(f"{'all five':<14}{1.0 / sum(1.0 / v for v in fps.values()):>10.0f}   (frames/s of one run with every policy)")

    summary = []
    head = f"{'scale':>6}" + "".join(f"{p:>13}" for p in POLICY_NAMES) + f"{'carlink/turbo':>15}{'carlink/oracle':>16}"
    for estimates in ("uploads", "trace"):
        print()
        print(f"real scenes (61 frames) x real NUWiNS 5G uplink (series A), default profile, per-frame utilities, "
              f"estimates={estimates};")
        print(f"replays started every {OFFSET_STEP_S:.0f} s of the trace, task-frames pooled")
        print(head)
        for scale in SCALES:
            means, runs, path = policies_on_real_data(root, trace, scale, estimates)
            line, ct, co = _row(scale, means)
            print(line)
            summary.append(f"real/{estimates} x{scale:g}: carlink/turbo {ct if ct is not None else float('nan'):.3f} "
                           f"carlink/oracle {co if co is not None else float('nan'):.3f}")
        print(f"(profile {path}; {runs} replays per scale)")

        print()
        print("ILLUSTRATIVE: synthetic 5-camera 10 Hz frames (300), example profile (not measurements), "
              f"real NUWiNS trace, estimates={estimates}")
        print(head)
        for scale in (0.1, 0.25):
            line, ct, co = _row(scale, policies_at_10hz(trace, scale, estimates))
            print(line)
            summary.append(f"10Hz-illustrative/{estimates} x{scale:g}: carlink/turbo "
                           f"{ct if ct is not None else float('nan'):.3f}")
    print()
    slowest = min(fps.values())
    print(f"SUMMARY replay: {fps['carlink']:.0f} frames/s carlink, {slowest:.0f} frames/s slowest policy (5 tasks, profile-driven); "
          + "; ".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
