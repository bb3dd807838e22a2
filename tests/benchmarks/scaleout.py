"""Scale-out on Ray: profile and sweep wall time with 1 and 2 workers against the serial path,
the overhead Ray adds per unit of work, and a projection to the full Waymo v1 perception set.

On this machine (2 CPUs, shared with other work: the figures are noisy, the load average is
printed with them):

1. **profile**: real 1 Hz FRONT sequences (the first --scenes, the first --frames of each), on-car
   yolo-fastest-1.1-320x320 and three cloud Darknet variants with input:jpeg75,native:jpeg90,
   measured serially (OpenCV's default threads, as `carlink profile run` does, and one thread),
   then with 1 and 2 Ray workers on a Ray started once beforehand (its start-up is reported on its
   own: a `--workers N` run pays it once). The profiles must agree in everything but runtimes.
   The same units are also timed inside the workers (CPU seconds per worker, and the share of a
   core each got): on a machine other work keeps busy, wall time hides how evenly work splits.
2. **sweep**: `carlink replay sweep`'s grid (--cars cars of five real sequences at 10 Hz, each a
   replay x two LTE traces x two scales x eight offsets, every policy; per-frame utilities from a
   SYNTHETIC test profile: the replays' cost is real, their utilities are not), serially and on 1
   and 2 workers; the summaries must be identical.
3. **overhead**: no-op units through 2 workers, runs of 10 and 10 + --noop units: scheduling +
   serialisation per unit, and the workers' start-up; and the profile's (1-worker wall - 1-thread
   serial wall) / units.
4. **projection**: the default profile's grid (14 cloud Darknet variants x 4 transports + on-car) on
   1 and 1 + --grid-frames frames, timed inside 2 workers, gives the CPU cost per (frame, option); from it the time to
   profile 1,150 segments x 199 frames x 5 cameras on K nodes. A projection: Waymo's 1920x1280
   images cost more to encode and decode than these 640x640 frames, and no GPU runtime table exists
   here to project a GPU cluster from.

    python tests/benchmarks/scaleout.py [--data DIR] [--scenes 6] [--frames 8] [--cars 6] [--grid-frames 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the replay test kit

from benchlib import default_data_dir  # noqa: E402

ONBOARD = "yolo-fastest-1.1-320x320"
CLOUD = ("yolo-fastest-1.1-416x416", "mobilenetv2-yolov3-nano-416x416", "yolo-fastest-1.1-xl-320x320")
OPTIONS = "input:jpeg75,native:jpeg90"
TRACES = ("mahimahi/TMobile-LTE-short.up", "mahimahi/ATT-LTE-driving.up")
WAYMO_SEGMENTS, WAYMO_FRAMES, WAYMO_CAMERAS = 1150, 199, 5
OFFSETS = 8  # per trace, spread over it
NODES = (1, 10, 50, 200)
CPUS_PER_NODE = 16


class Noop:
    def run(self, unit: int) -> int:
        return unit


class TimedProfileWorker:
    """The profile's worker, also reporting the unit's wall and CPU time in its process."""

    def __init__(self, config) -> None:
        from carlink.replay.profiling.on_ray import ProfileWorker

        self.worker = ProfileWorker(config)

    def run(self, unit):
        t, c = time.perf_counter(), time.process_time()
        self.worker.run(unit)
        return os.getpid(), time.perf_counter() - t, time.process_time() - c


def cpu_split(config, workers: int) -> dict:
    """The profile's units on ``workers`` workers: wall, and per worker the CPU seconds it used and
    the wall seconds it was busy (their ratio is the share of a core it got)."""
    from functools import partial

    from carlink.replay.distributed import RayTarget, run_units
    from carlink.replay.profiling import load_frames, select_tasks
    from carlink.replay.profiling.on_ray import plan_units

    frames = load_frames(config.scenes, config.max_frames)
    tasks, _ = select_tasks(config.tasks, frames, config.classes(), config.empty_frames)
    units, _ = plan_units(config, frames, tasks, {}, workers)
    out, wall = _timed(lambda: run_units(units, partial(TimedProfileWorker, config), RayTarget(workers=workers),
                                         progress_bar=False))
    cpu: dict[int, float] = {}
    busy: dict[int, float] = {}
    for pid, w, c in out:
        cpu[pid] = cpu.get(pid, 0.0) + c
        busy[pid] = busy.get(pid, 0.0) + w
    return {"wall": wall, "cpu": sorted(cpu.values()), "busy": sum(busy.values())}


def _without_timing(doc):
    if isinstance(doc, dict):
        return {k: _without_timing(v) for k, v in doc.items() if not k.startswith("runtime_ms") and k != "runtime"}
    if isinstance(doc, list):
        return [_without_timing(v) for v in doc]
    return doc


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def profile_config(scenes, frames):
    from carlink.replay.profiling import ProfileConfig, parse_options

    return ProfileConfig(scenes=tuple(map(str, scenes)), models=CLOUD, onboard=ONBOARD,
                         transports=parse_options(OPTIONS), tasks=("FRONT",), max_frames=frames, backend="opencv")


def profile_runs(config, runs, tmp: Path) -> dict:
    """``runs``: (name, OpenCV threads or None, RayTarget or None) each."""
    import cv2

    from carlink.replay.profiling import run_profile

    default_threads = cv2.getNumThreads()
    rows, docs = {}, {}
    for name, threads, target in runs:
        if threads is not None:
            cv2.setNumThreads(threads)
        folder = tmp / name.replace(" ", "_")
        folder.mkdir(exist_ok=True)
        out = folder / "profile.json"
        cwd = os.getcwd()
        os.chdir(folder)  # a relative -o: the command line stored in every profile is the same
        try:
            (profile, result), wall = _timed(lambda: run_profile(config, "profile.json", progress_bar=False,
                                                                 ray=target))
        finally:
            os.chdir(cwd)
        cv2.setNumThreads(default_threads)
        rows[name] = (wall, result.measured)
        docs[name] = _without_timing(json.loads(out.read_text()))
    return {"rows": rows, "docs": docs}


def _units(config, workers: int) -> int:
    from carlink.replay.profiling import load_frames, select_tasks
    from carlink.replay.profiling.on_ray import plan_units

    frames = load_frames(config.scenes, config.max_frames)
    tasks, _ = select_tasks(config.tasks, frames, config.classes(), config.empty_frames)
    return len(plan_units(config, frames, tasks, {}, workers)[0])


def sweep_runs(sequences, cars: int, data: Path, tmp: Path) -> dict:
    """Cars of five sequences at 10 Hz, each car a replay per trace x scale x offset."""
    from carlink.replay.distributed import RayTarget
    from carlink.replay.policies import POLICY_NAMES
    from carlink.replay.sweep import Grid, ReplaySettings, SceneSet, TraceRef, clear_caches
    from carlink.replay.sweep_cli import run_sweep
    from replay_testkit import frame_ids, per_frame_profile

    groups = [tuple(map(str, sequences[5 * k:5 * k + 5])) for k in range(cars)]
    truth = str(per_frame_profile(tmp / "truth.json", frame_ids([f for g in groups for f in g])))
    grid = Grid(scene_sets=tuple(SceneSet(f"car {k + 1}", compositions=(g,), rate_hz=10.0) for k, g in enumerate(groups)),
                traces=tuple(TraceRef(str(data / "bandwidth" / t)) for t in TRACES), scales=(0.5, 1.0),
                settings=ReplaySettings(POLICY_NAMES, truth, utilities="truth", truth=truth),
                offsets_per_trace=OFFSETS)
    rows, texts = {}, {}
    for name, target in (("serial", None), ("ray 1 worker", RayTarget(workers=1)),
                         ("ray 2 workers", RayTarget(workers=2))):
        clear_caches()  # every run loads its own scenes and traces, as a fresh process would
        summary, wall = _timed(lambda: run_sweep(grid, ray=target))
        rows[name] = (wall, len(grid.specs()))
        texts[name] = summary.to_json()
    return {"rows": rows, "same": len(set(texts.values())) == 1}


def noop_overhead(n: int) -> tuple[float, float]:
    """(ms per no-op unit, s to start 2 workers): from runs of 10 and 10 + n units (each run starts
    its own workers), so the workers' start-up and the per-unit cost separate."""
    from carlink.replay.distributed import RayTarget, run_units

    _, few = _timed(lambda: run_units(list(range(10)), Noop, RayTarget(workers=2), progress_bar=False))
    _, many = _timed(lambda: run_units(list(range(10 + n)), Noop, RayTarget(workers=2), progress_bar=False))
    per_unit = max(0.0, many - few) / n
    return per_unit * 1000, few - 10 * per_unit


def grid_cost(scene: Path, frames: int) -> dict:
    """CPU seconds per (frame, option) of the default profile's grid, timed inside 2 workers, from runs
    on 1 and 1 + ``frames`` frames (model loading and the first frame's set-up cancel out). CPU time,
    not wall: other work on this machine stretches wall time, not the work a node must do."""
    from carlink.replay.profile_cli import default_cloud_models
    from carlink.replay.profiling import DEFAULT_OPTIONS, ProfileConfig, parse_options

    cpu = []
    for n in (1, 1 + frames):
        config = ProfileConfig(scenes=(str(scene),), models=default_cloud_models(ONBOARD), onboard=ONBOARD,
                               transports=parse_options(DEFAULT_OPTIONS), tasks=("FRONT",), max_frames=n,
                               backend="opencv")
        cpu.append(sum(cpu_split(config, 2)["cpu"]))
    options = len(config.options())
    return {"options": options, "frames": frames, "cpu": cpu,
            "cpu_s_per_frame_option": (cpu[1] - cpu[0]) / frames / (options + 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(default_data_dir()), help="the shared/data folder (default: %(default)s)")
    ap.add_argument("--scenes", type=int, default=6, help="1 Hz sequences to profile (default: %(default)s)")
    ap.add_argument("--frames", type=int, default=8, help="frames of each sequence to profile (default: %(default)s)")
    ap.add_argument("--grid-frames", type=int, default=2,
                    help="frames measured with the default grid for the projection (default: %(default)s)")
    ap.add_argument("--cars", type=int, default=6, help="cars of 5 sequences each in the sweep (default: %(default)s)")
    ap.add_argument("--noop", type=int, default=400, help="no-op units for the overhead (default: %(default)s)")
    args = ap.parse_args()
    data = Path(args.data)
    sequences = sorted((data / "waymo" / "udacity_c1_front_1hz").glob("*.tfrecord"))
    scenes = sequences[:args.scenes]
    if len(sequences) < 5 * args.cars or not (data / "models").is_dir():
        print(f"no real sequences or models under {data}: set CARLINK_TEST_DATA or --data", file=sys.stderr)
        return 2
    os.environ.setdefault("CARLINK_MODELS_DIR", str(data / "models"))
    import cv2
    import ray

    from carlink.replay.distributed import RayTarget

    load_before = os.getloadavg()[0]
    config = profile_config(scenes, args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        # as a user's `carlink profile run --workers 2` runs: Ray started for the run
        cold = profile_runs(config, [("ray 2 workers", None, RayTarget(workers=2))], Path(tmp))
        _, ray_start = _timed(lambda: ray.init(address="local", num_cpus=2, include_dashboard=False,
                                               log_to_driver=False, logging_level="ERROR"))
        try:
            # on a Ray started once: wall without the start-up
            prof = profile_runs(config, [("serial", cv2.getNumThreads(), None), ("serial 1 thread", 1, None),
                                         ("ray 1 worker", None, RayTarget(workers=1)),
                                         ("ray 2 workers", None, RayTarget(workers=2))], Path(tmp))
            split = {n: cpu_split(config, n) for n in (1, 2)}
            sweep = sweep_runs(sequences, args.cars, data, Path(tmp))
            noop_ms, worker_start = noop_overhead(args.noop)
            grid = grid_cost(scenes[0], args.grid_frames)
        finally:
            ray.shutdown()
    load_after = os.getloadavg()[0]

    print(f"{os.cpu_count()} CPUs, shared: load average {load_before:.1f} before, {load_after:.1f} after "
          f"(other work competes for the cores: wall times are noisy)")
    print(f"Ray start-up (local, 2 CPUs): {ray_start:.1f} s, paid once by a --workers run\n")
    docs = [*prof["docs"].values(), *cold["docs"].values()]
    prof_same = all(d == docs[0] for d in docs)
    m = prof["rows"]["serial"][1]
    print(f"profile: {len(scenes)} sequences x {args.frames} frames, on-car {ONBOARD} + {len(CLOUD)} cloud "
          f"models x {OPTIONS} = {m} measurements; units: {_units(config, 1)} (1 worker), "
          f"{_units(config, 2)} (2 workers); serial OpenCV threads: {cv2.getNumThreads()}")
    print(f"{'run':<34} {'wall s':>8} {'x serial':>9} {'x 1-thread serial':>18}")
    ws, ws1 = prof["rows"]["serial"][0], prof["rows"]["serial 1 thread"][0]
    rows = {**prof["rows"], "ray 2 workers, Ray started for it": cold["rows"]["ray 2 workers"]}
    for name, (wall, _) in rows.items():
        print(f"{name:<34} {wall:8.1f} {ws / wall:9.2f} {ws1 / wall:18.2f}")
    print(f"profiles identical apart from runtimes: {prof_same}")
    one, two = split[1], split[2]
    cpu_speedup = sum(one["cpu"]) / max(two["cpu"])
    print(f"CPU split (the same units, timed inside the workers): 1 worker {sum(one['cpu']):.1f} CPU-s; 2 workers "
          f"{' + '.join(f'{c:.1f}' for c in two['cpu'])} CPU-s -> {cpu_speedup:.2f}x if each worker had a core of "
          f"its own; share of a core each worker got while busy: {sum(one['cpu']) / one['busy']:.2f} (1 worker), "
          f"{sum(two['cpu']) / two['busy']:.2f} (2 workers)\n")

    n = sweep["rows"]["serial"][1]
    print(f"sweep: {n} replays ({args.cars} cars of 5 real sequences at 10 Hz x {len(TRACES)} traces x 2 scales x "
          f"{OFFSETS} offsets, every policy; per-frame utilities of a SYNTHETIC test profile), on the Ray started once")
    print(f"{'run':<18} {'wall s':>8} {'x serial':>9}")
    ss = sweep["rows"]["serial"][0]
    for name, (wall, _) in sweep["rows"].items():
        print(f"{name:<18} {wall:8.1f} {ss / wall:9.2f}")
    print(f"summaries identical: {sweep['same']}\n")

    per_unit_profile = (prof["rows"]["ray 1 worker"][0] - ws1) / _units(config, 1) * 1000
    print(f"overhead: {noop_ms:.2f} ms per unit through 2 workers (no-op units: scheduling + serialisation; "
          f"{args.noop} units); starting 2 workers (processes, imports): {worker_start:.1f} s; profile on 1 worker "
          f"vs 1-thread serial: {per_unit_profile:+.0f} ms per unit (with worker start-up, model loading, "
          f"scene reading, results back)\n")

    c = grid["cpu_s_per_frame_option"]
    images = WAYMO_SEGMENTS * WAYMO_FRAMES * WAYMO_CAMERAS
    per_image = c * (grid["options"] + 1)
    cpu_h = images * per_image / 3600
    eff = min(1.0, cpu_speedup / 2)
    print(f"projection (a projection, not a measurement): default grid = {grid['options']} cloud options + on-car; "
          f"1 and {1 + grid['frames']} frames on 2 workers used {grid['cpu'][0]:.1f} and {grid['cpu'][1]:.1f} CPU-s -> {c * 1000:.0f} CPU-ms per (frame, option), "
          f"{per_image:.1f} CPU-s per image")
    print(f"Waymo v1 perception: {WAYMO_SEGMENTS} segments x {WAYMO_FRAMES} frames x {WAYMO_CAMERAS} cameras = "
          f"{images:,} images -> {cpu_h:,.0f} CPU-hours; on nodes of {CPUS_PER_NODE} CPUs, one worker per CPU, "
          f"at the 2-worker CPU-split efficiency {eff:.2f}:")
    print(f"{'nodes':>6} {'CPUs':>6} {'wall hours':>11} {'wall days':>10}")
    projected = []
    for k in NODES:
        hours = cpu_h / (k * CPUS_PER_NODE * eff)
        projected.append(hours)
        print(f"{k:>6} {k * CPUS_PER_NODE:>6} {hours:11.1f} {hours / 24:10.2f}")
    speedup = ws / prof["rows"]["ray 2 workers"][0]
    print(f"SUMMARY scaleout profile_serial_s={ws:.1f} profile_1w_s={prof['rows']['ray 1 worker'][0]:.1f} "
          f"profile_2w_s={prof['rows']['ray 2 workers'][0]:.1f} profile_speedup_2w={speedup:.2f} "
          f"profile_speedup_2w_vs_1thread={ws1 / prof['rows']['ray 2 workers'][0]:.2f} "
          f"sweep_serial_s={ss:.1f} sweep_2w_s={sweep['rows']['ray 2 workers'][0]:.1f} "
          f"sweep_speedup_2w={ss / sweep['rows']['ray 2 workers'][0]:.2f} noop_unit_ms={noop_ms:.2f} "
          f"profile_cpu_bound_speedup_2w={cpu_speedup:.2f} core_share_2w={sum(two['cpu']) / two['busy']:.2f} "
          f"profile_2w_cold_s={cold['rows']['ray 2 workers'][0]:.1f} ray_start_s={ray_start:.1f} identical={prof_same and sweep['same']} "
          f"cpu_ms_per_frame_option={c * 1000:.0f} waymo_cpu_hours={cpu_h:.0f} "
          f"waymo_hours_{NODES[-1]}x{CPUS_PER_NODE}cpu={projected[-1]:.1f} load={load_before:.1f}/{load_after:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
