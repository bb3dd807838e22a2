"""``carlink replay sweep``: a grid of replays (scene sets x traces x scales x offsets, every policy
in each) -> one summary: sweep.json, a printed table and report.html with gain against scale."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_EPILOG = """\
Each replay of the grid runs every policy on the same frames and the same stretch of trace, on
the virtual clock (deterministic). Replays of one trace and scale (scene sets x offsets) are
pooled: per policy the mean utility, the gain over on-car in percentage points with a 95 %
bootstrap interval over replays, the share of the oracle's gain, cloud hit rate, deadline misses
and bytes sent. The same inputs give the same sweep.json byte for byte.

Scene sets: all scene files (or all --compose cars) play one after the other in each replay, as in
`carlink replay`; --each makes every scene file or car a replay of its own.

Offsets: --offsets 0,60,120 (seconds, the same on every trace), or --offsets-per-trace N (N
offsets spread evenly over each trace, default 8).

example (the headline table: evaluation sequences composed into cars at 10 Hz):
  carlink replay sweep --compose f16,...,f20 --compose f21,...,f25 --compose f26,...,f30 --rate-hz 10 \\
      --truth carlink/profiles/evaluation.json --trace throughput.list --trace Car_1.csv --scales 0.25,0.5,1
"""


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def build_sweep_parser(prog: str = "carlink replay sweep") -> argparse.ArgumentParser:
    from carlink.cli_types import non_negative_float, positive_int
    from carlink.replay.cli import add_scene_options
    from carlink.replay.policies import POLICY_NAMES
    from carlink.replay.ray_cli import add_ray_arguments

    p = argparse.ArgumentParser(
        prog=prog, description="Run a grid of virtual-clock replays and summarise every policy per trace and "
                               "capacity scale.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenes", nargs="*", metavar="SCENE", help="scene files (or use --compose)")
    add_scene_options(p)
    p.add_argument("--each", action="store_true", help="every scene file or car is a replay of its own")
    p.add_argument("--trace", action="append", default=[], metavar="FILE", help="uplink trace (repeat for several)")
    p.add_argument("--trace-format", action="append", default=[], metavar="FORMAT",
                   help="format of the traces: one for all, or one per --trace in order (default auto)")
    p.add_argument("--scales", type=_floats, default=(1.0,), metavar="LIST",
                   help="capacity multipliers (default 1)")
    p.add_argument("--offsets", type=_floats, default=(), metavar="LIST", help="trace offsets in seconds")
    p.add_argument("--offsets-per-trace", type=int, default=None, metavar="N",
                   help="N offsets spread evenly over each trace (default 8 unless --offsets)")
    p.add_argument("--policies", type=_names, default=POLICY_NAMES, metavar="LIST",
                   help=f"comma-separated subset of {','.join(POLICY_NAMES)} (default all; on-car is needed)")
    p.add_argument("--profile", metavar="FILE", help="the profile the car plans with (default carlink/profiles/default.json)")
    p.add_argument("--truth", metavar="PROFILE", help="per-frame utilities and payloads of what really happens")
    p.add_argument("--utilities", choices=("profile", "measured"), default="profile",
                   help="without --truth: the planning profile's per-frame values (else aggregates), or run the models")
    p.add_argument("--estimates", choices=("uploads", "trace"), default="uploads",
                   help="what carlink and turbo know of the link (default uploads: the car's estimator)")
    p.add_argument("--rtt", type=non_negative_float, metavar="MS", help="round trip (default: the trace's, else 40 ms)")
    p.add_argument("--queue-bytes", type=positive_int, metavar="N", help="drop-tail queue limit (default unlimited)")
    p.add_argument("--seed", type=int, default=0, help="seed of the runtime draws (default 0)")
    p.add_argument("--max-frames", type=positive_int, metavar="N", help="at most N frames per replay")
    p.add_argument("-o", "--output", default="sweep-out", metavar="DIR", help="output folder (default sweep-out)")
    p.add_argument("--no-report", action="store_true", help="write sweep.json only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_ray_arguments(p, "the grid's replays (one unit each)")
    p.set_defaults(func=run_sweep_command, parser=p)
    return p


def _error(message: str) -> Exception:
    from carlink.cli import CommandError

    return CommandError(message)


def grid_from_args(args: argparse.Namespace):
    """The sweep's Grid from the command line (SweepError for an empty or unknown part)."""
    from carlink.profile import DEFAULT_PROFILE
    from carlink.replay.sweep import Grid, ReplaySettings, SceneSet, SweepError, TraceRef

    if args.compose and args.scenes:
        raise SweepError("give scene files or --compose, not both")
    if args.compose:
        cars = [tuple(c) for c in args.compose]
        sets = ([SceneSet(f"car {k + 1}", compositions=(c,), rate_hz=args.rate_hz) for k, c in enumerate(cars)]
                if args.each else [SceneSet(f"{len(cars)} car{'s' if len(cars) > 1 else ''}", compositions=tuple(cars),
                                            rate_hz=args.rate_hz)])
    elif args.scenes:
        sets = ([SceneSet(Path(s).name, scenes=(s,), rate_hz=args.rate_hz) for s in args.scenes] if args.each
                else [SceneSet(f"{len(args.scenes)} scene files", scenes=tuple(args.scenes), rate_hz=args.rate_hz)])
    else:
        sets = []
    formats = args.trace_format or ["auto"]
    if len(formats) == 1:
        formats = formats * len(args.trace)
    if args.trace and len(formats) != len(args.trace):
        raise SweepError(f"{len(args.trace_format)} --trace-format for {len(args.trace)} --trace: give one for all "
                         "or one per trace")
    traces = [TraceRef(t, f) for t, f in zip(args.trace, formats)]
    per_trace = args.offsets_per_trace if args.offsets_per_trace is not None else (0 if args.offsets else 8)
    settings = ReplaySettings(
        policies=tuple(args.policies), profile=str(args.profile or DEFAULT_PROFILE),
        utilities="truth" if args.truth else args.utilities, truth=args.truth, estimates=args.estimates,
        rtt_ms=args.rtt, queue_bytes=args.queue_bytes, seed=args.seed, max_frames=args.max_frames,
    )
    return Grid(scene_sets=tuple(sets), traces=tuple(traces), scales=tuple(args.scales), settings=settings,
                offsets_s=tuple(args.offsets), offsets_per_trace=per_trace)


def sweep_inputs(grid, specs) -> dict:
    """What summary.json says about the grid (plain values)."""
    from carlink.replay.sweep import cached_profile, load_scene_set

    st = grid.settings
    first = load_scene_set(grid.scene_sets[0], st.max_frames)
    profile = cached_profile(st.profile)
    return {
        "scenes": first.description,
        "scene_sets": {s.label: ([list(c) for c in s.compositions] if s.compositions else list(s.scenes))
                       for s in grid.scene_sets},
        "rate_hz": grid.scene_sets[0].rate_hz,
        "traces": {t.label: {"path": t.path, "format": t.format} for t in grid.traces},
        "scales": list(grid.scales),
        "offsets_s": {t.label: sorted({s.offset_s for s in specs if s.trace == t}) for t in grid.traces},
        "policies": list(st.policies),
        "profile": st.profile, "profile_description": profile.description,
        "utilities": st.utilities, "truth": st.truth, "estimates": st.estimates,
        "rtt_ms": st.rtt_ms, "queue_bytes": st.queue_bytes, "seed": st.seed,
        "replays": len(specs), "clock": "virtual",
    }


def run_sweep(grid, progress: bool = False, ray=None):
    """Expand, run (serially, or on Ray with a RayTarget) and summarise a grid: the SweepSummary."""
    from carlink.replay.sweep import run_grid
    from carlink.replay.sweep_stats import summarize_sweep

    specs = grid.specs()
    if ray is not None:
        from carlink.replay.sweep_on_ray import ray_map

        return summarize_sweep(grid, run_grid(specs, map_fn=ray_map(ray, progress)), sweep_inputs(grid, specs))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(specs), unit="replay", desc="sweep", file=sys.stderr, leave=False)
    try:
        results = run_grid(specs, progress=bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()
    return summarize_sweep(grid, results, sweep_inputs(grid, specs))


def run_sweep_command(args: argparse.Namespace) -> int:
    from carlink.datasets.errors import DatasetError
    from carlink.profile import ProfileError
    from carlink.replay.distributed import DistributedError
    from carlink.replay.frame_utility import TruthError
    from carlink.replay.ray_cli import ray_target
    from carlink.replay.player import PlayerError
    from carlink.replay.sweep import SweepError
    from carlink.replay.sweep_stats import format_sweep_table

    try:
        ray = ray_target(args)
        grid = grid_from_args(args)
        summary = run_sweep(grid, progress=not args.no_progress, ray=ray)
    except TruthError as exc:
        raise _error(f"--truth: {exc}") from None
    except (SweepError, ProfileError, PlayerError, DistributedError) as exc:
        raise _error(str(exc)) from None
    except (DatasetError, OSError) as exc:
        raise _error(f"sweep: {exc}") from None
    out = Path(args.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "sweep.json"
        path.write_text(summary.to_json(), encoding="utf-8")
        report = None
        if not args.no_report:
            from carlink.replay.sweep_report import write_sweep_report

            report = write_sweep_report(summary, out)
    except OSError as exc:
        raise _error(f"-o {out}: cannot write: {exc.strerror or exc}") from None
    for w in summary.warnings:
        print(f"carlink replay sweep: warning: {w}", file=sys.stderr)
    print(f"scenes: {summary.inputs['scenes']}")
    print(f"utilities: {summary.inputs['utilities']}" + (f" ({summary.inputs['truth']})" if summary.inputs["truth"] else "")
          + f"; the car plans with {summary.inputs['profile']}; bandwidth estimates: {summary.inputs['estimates']}")
    print(format_sweep_table(summary))
    print(f"summary: {path}")
    if report is not None:
        print(f"report: {report}")
    return 0
