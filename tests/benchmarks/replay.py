"""Benchmark of the replay on real data (run: python tests/benchmarks/replay.py [--offsets N]).

Everything runs through `carlink replay sweep`'s code (replay/sweep.py): no hand-built loops.

1. The headline sweep: the evaluation sequences (the LAST 15 of the 30 real 1 Hz FRONT sequences,
   sorted by name; the default profile was measured on the FIRST 15) composed into three
   five-camera cars played at 10 Hz (time compressed tenfold), one after the other in each
   replay; every real uplink trace in ../shared/data/bandwidth (mahimahi *.up, NUWiNS
   throughput.list, NYU Car_1.csv, the UCC 5G CSV); capacity scales 0.25, 0.5, 1; N trace offsets
   spread over each trace; all policies; the default profile plans (carlink/profiles/default.json),
   ``--estimates uploads``, and what really happens on each frame comes from ``--truth``
   carlink/profiles/evaluation.json (per-frame utilities and payloads of the evaluation
   sequences). The printed table is the sweep's.
2. The targets of issue 12, checked on that summary: carlink's gain over on-car >= 6 pp on NUWiNS
   at scale 1 and > 0 everywhere; carlink's gain >= turbo's on every trace and scale, and >= 1.1x
   turbo's on the LTE traces; carlink's deadline misses <= 1 % of task-frames.
3. Replay speed: frames per second of the virtual-clock replay of carlink's policy alone (5 tasks,
   the composed evaluation cars, per-frame truth, no model runs), one core (OpenCV, torch and
   BLAS held to one thread); also each other policy alone.

Data from CARLINK_TEST_DATA (default ../shared/data next to the repository).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core: before numpy is imported

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402

from carlink.profile import DEFAULT_PROFILE, EVALUATION_PROFILE  # noqa: E402
from carlink.replay.policies import POLICY_NAMES  # noqa: E402
from carlink.replay.sweep import Grid, ReplaySettings, RunSpec, SceneSet, TraceRef, replay_one  # noqa: E402
from carlink.replay.sweep_cli import run_sweep  # noqa: E402
from carlink.replay.sweep_stats import bootstrap_difference_pp, format_sweep_table  # noqa: E402
from benchlib import data_root  # noqa: E402

SCALES = (0.25, 0.5, 1.0)
RATE_HZ = 10.0
CAMERAS = 5
NUWINS = "throughput.list"
LTE = ("ATT-LTE-driving.up", "ATT-LTE-driving-2016.up", "TMobile-LTE-short.up", "Car_1.csv")


def evaluation_cars(root: Path) -> SceneSet:
    files = sorted((root / "waymo" / "udacity_c1_front_1hz").glob("*.tfrecord"))
    if len(files) < 30:
        sys.exit(f"expected the 30 real 1 Hz sequences under {root}, found {len(files)}")
    last = [str(f) for f in files[15:30]]
    cars = tuple(tuple(last[k:k + CAMERAS]) for k in range(0, 15, CAMERAS))
    return SceneSet("evaluation cars", compositions=cars, rate_hz=RATE_HZ)


def uplink_traces(root: Path) -> tuple[TraceRef, ...]:
    bw = root / "bandwidth"
    ups = sorted((bw / "mahimahi").glob("*.up"))
    return (*(TraceRef(str(p), "mahimahi") for p in ups),
            TraceRef(str(bw / "nuwins_5g_uplink" / "driving" / "5g" / "throughput.list"), "nuwins"),
            TraceRef(str(bw / "nyu_mets" / "Car_1.csv"), "mbps-csv"),
            TraceRef(str(bw / "uccmisl_5g" / "Download_Driving_B_2019.12.16_14.23.32.csv"), "gnettrack-csv"))


def utilities_source() -> tuple[str, str | None, str]:
    if EVALUATION_PROFILE.is_file():
        return "truth", str(EVALUATION_PROFILE), f"per-frame truth from {EVALUATION_PROFILE}"
    return "profile", None, (f"NO EVALUATION PROFILE at {EVALUATION_PROFILE}: utilities are the planning profile's "
                             "aggregates on these frames (not an evaluation)")


def speed(scenes: SceneSet, trace: TraceRef, utilities: str, truth: str | None, repeats: int) -> dict[str, float]:
    """Frames per second of one policy's replay (frames of the composed cars, ``repeats`` offsets)."""
    out = {}
    for name in POLICY_NAMES:
        settings = ReplaySettings((name,), str(DEFAULT_PROFILE), utilities, truth)
        specs = [RunSpec(scenes, trace, 1.0, 60.0 * k, settings) for k in range(repeats)]
        replay_one(specs[0])  # warm up: caches of frames, trace, profile and allocators
        frames = 0
        t0 = time.perf_counter()
        for s in specs:
            frames += int(replay_one(s).inputs["frames"])
        out[name] = frames / (time.perf_counter() - t0)
    return out


def _paired(summary, trace: str, scale: float, a: str, b: str) -> tuple[float | None, float | None, float | None]:
    """a's gain minus b's (pp) with its 95 % paired bootstrap interval over the group's replays."""
    runs = [r for r in summary.runs if r.spec.trace.label == trace and r.spec.scale == scale]
    return bootstrap_difference_pp([r.policies[a] for r in runs], [r.policies[b] for r in runs])


def targets(summary) -> list[tuple[str, bool, str]]:
    """Each target of issue 12: (what, met, the numbers)."""
    rows = {(g.trace, g.scale): g.rows for g in summary.groups}
    out = []
    g = rows.get((NUWINS, 1.0))
    if g:
        v = g["carlink"].gain_pp
        out.append(("carlink gain >= 6 pp on NUWiNS x1", v is not None and v >= 6.0, f"{v:+.2f} pp"))
    gains = {k: r["carlink"].gain_pp for k, r in rows.items()}
    worst = min(gains.items(), key=lambda kv: kv[1] if kv[1] is not None else -1e9)
    out.append(("carlink gain > 0 on every trace and scale", all(v is not None and v > 0.005 for v in gains.values()),
                f"min {worst[1]:+.3f} pp ({worst[0][0]} x{worst[0][1]:g})"))
    # carlink - turbo per group, with the paired interval: "behind" where the point is below 0,
    # "significantly" where the whole interval is.
    diffs = {k: _paired(summary, k[0], k[1], "carlink", "turbo") for k in rows}
    behind = [(k, d) for k, d in diffs.items() if d[0] is not None and d[0] < 0]
    sig = [k for k, d in behind if d[2] is not None and d[2] < 0]
    out.append(("carlink gain >= turbo's on every trace and scale", not behind,
                f"{len(diffs) - len(behind)}/{len(diffs)}" + (
                    "; behind on " + ", ".join(f"{k[0]} x{k[1]:g} ({d[0]:+.2f} pp [{d[1]:+.2f}, {d[2]:+.2f}])"
                                              for k, d in behind) if behind else "")
                + f"; significantly behind on {len(sig)}"))
    lte = [(k, r["carlink"].gain_pp, r["turbo"].gain_pp) for k, r in rows.items() if k[0] in LTE]
    ratios = [(k, c / t if t is not None and t > 0.005 else float("nan")) for k, c, t in lte]
    low = [(k, r) for k, r in ratios if not r >= 1.1]
    out.append(("carlink gain >= 1.1x turbo's on the LTE traces", not low,
                f"{len(ratios) - len(low)}/{len(ratios)}" + (
                    "; below on " + ", ".join(f"{k[0]} x{k[1]:g} ({r:.2f})" for k, r in low) if low else "")
                + " (nan: turbo gains nothing there)"))
    misses = max((r["carlink"].deadline_miss_rate or 0.0) for r in rows.values())
    out.append(("carlink deadline misses <= 1 % of task-frames", misses <= 0.01, f"max {100 * misses:.2f} %"))
    return out


def diagnostics_table(summary) -> str:
    """Per group, what limits carlink: its gain, turbo's, the diagnostics' and the oracle's (pp)."""
    head = (f"{'trace':<24}{'scale':>6}{'carlink':>9}{'turbo':>8}{'carlink-turbo [95% CI]':>26}"
            f"{'c-link':>8}{'c-utility':>10}{'oracle':>8}")
    lines = [head, "-" * len(head)]
    for g in summary.groups:
        r = g.rows
        d = _paired(summary, g.trace, g.scale, "carlink", "turbo")
        ci = f"{d[0]:+.2f} [{d[1]:+.2f}, {d[2]:+.2f}]" if d[0] is not None else "-"
        lines.append(f"{g.trace[:24]:<24}{g.scale:>6g}{r['carlink'].gain_pp:>+9.2f}{r['turbo'].gain_pp:>+8.2f}{ci:>26}"
                     f"{r['carlink-link'].gain_pp:>+8.2f}{r['carlink-utility'].gain_pp:>+10.2f}{r['oracle'].gain_pp:>+8.2f}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--offsets", type=int, default=8, help="trace offsets per trace (default 8)")
    ap.add_argument("--speed-repeats", type=int, default=10, help="replays of the cars per policy for the speed")
    ap.add_argument("-o", "--output", default=None, help="also write the sweep's JSON and report here")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    root = data_root()
    scenes = evaluation_cars(root)
    traces = uplink_traces(root)
    missing = [t.path for t in traces if not Path(t.path).is_file()]
    if missing:
        print(f"real traces not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    mode, truth, note = utilities_source()

    grid = Grid(scene_sets=(scenes,), traces=traces, scales=SCALES, offsets_per_trace=args.offsets,
                settings=ReplaySettings(POLICY_NAMES, str(DEFAULT_PROFILE), utilities=mode, truth=truth,
                                        estimates="uploads"))
    t0 = time.perf_counter()
    summary = run_sweep(grid)
    took = time.perf_counter() - t0
    print(f"carlink replay sweep: {summary.inputs['scenes']}")
    print(f"{len(summary.runs)} replays ({args.offsets} offsets per trace x {len(SCALES)} scales x {len(traces)} traces), "
          f"{took:.0f} s; the car plans with {DEFAULT_PROFILE.name}; {note}; bandwidth estimates: uploads")
    print(format_sweep_table(summary))
    for w in summary.warnings:
        print(f"warning: {w}")
    if args.output:
        from carlink.replay.sweep_report import write_sweep_report

        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        (out / "sweep.json").write_text(summary.to_json(), encoding="utf-8")
        write_sweep_report(summary, out)

    print()
    print("gain over on-car (pp): carlink, turbo, carlink - turbo (paired 95 % bootstrap over replays), "
          "the diagnostics and the oracle")
    print(diagnostics_table(summary))
    print()
    checks = targets(summary)
    print("targets (issue 12)")
    for what, ok, numbers in checks:
        print(f"  {'MET ' if ok else 'MISS'}  {what:<52} {numbers}")

    print()
    fps = speed(scenes, traces[-3], mode, truth, args.speed_repeats)  # NUWiNS
    print(f"virtual-clock replay speed, one policy per run, {CAMERAS} tasks, composed evaluation cars at 10 Hz, "
          "per-frame truth, one core")
    print(f"{'policy':<16}{'frames/s':>10}")
    for name, v in fps.items():
        print(f"{name:<16}{v:>10.0f}")
    print(f"{'all':<16}{1.0 / sum(1.0 / v for v in fps.values()):>10.0f}   (frames/s of one run with every policy)")
    speed_ok = fps["carlink"] >= 500.0

    met = sum(ok for _, ok, _ in checks) + speed_ok
    nu = summary.row(NUWINS, 1.0, "carlink").gain_pp
    nu_t = summary.row(NUWINS, 1.0, "turbo").gain_pp
    print()
    print(f"SUMMARY replay: {fps['carlink']:.0f} frames/s carlink (5 tasks, one core); NUWiNS x1 carlink "
          f"{nu:+.2f} pp vs turbo {nu_t:+.2f} pp; " + "; ".join(f"{what}: {numbers}" for what, _, numbers in checks)
          + f"; targets met {met}/{len(checks) + 1}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
