"""``carlink replay [SCENE...]``: what would the car have gained from the cloud on this drive?

``carlink replay sweep ...`` (replay/sweep_cli.py) runs a grid of such replays. Also registers
``carlink profile ...`` (replay/profile_cli.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from carlink.cli_types import non_negative_float, positive_float, positive_int
from carlink.replay.policies import POLICY_NAMES

_EPILOG = f"""\
With no SCENE, runs the built-in demonstration: SYNTHETIC frames and a SYNTHETIC trace generated
by code (offline, a few seconds), clearly labelled as such in every output.

Five-camera cars from real single-camera sequences: --compose A,B,C,D,E plays the files in
lockstep as the cameras FRONT, FRONT_LEFT, FRONT_RIGHT, SIDE_LEFT, SIDE_RIGHT of one car (fewer
files: fewer cameras; different lengths play to the shortest); repeat --compose for several cars,
played one after the other. --rate-hz 10 plays the 1 Hz sequences at 10 Hz (time compressed
tenfold). The output says "composed from real sequences" and names the rate.

Ground truth: the car plans with --profile; what really happens on each frame comes from running
the models (--utilities measured) or from a per-frame measurement of the same sequences
(--truth PROFILE, e.g. carlink/profiles/evaluation.json). Never evaluate on the frames the
planning profile was measured on (a warning says so when they overlap).

Policies (--policies, comma-separated; default all): {', '.join(POLICY_NAMES)}.
  carlink       the onboard daemon's own policy (carlink.onboard.policy): per-frame solve,
                bandwidth and runtime treated as uncertain, highest expected utility
  turbo         TURBO: latest estimate as is, aggregate curves, re-solved every 500 ms

Bandwidth knowledge (--estimates): uploads (default, what a car can know): carlink and turbo
each learn the link from their own uploads, probes and pings through the car's estimator;
carlink plans over its samples, turbo uses the latest one as is. trace: both read the link's true
capacity per past 100 ms bin (what a simulator can hand TURBO; no car can know it).
  on-car        never uses the cloud
  single-cloud  full frame, one quality, largest model, every frame; used when in time
  oracle        knows the true capacity and per-frame utilities; sends only what arrives in time
                behind its own queue (never more than the link carries); greedy per frame
  carlink-link  diagnostic: carlink's decision code with the link's true future capacity
  carlink-utility  diagnostic: carlink's decision code with each frame's true utilities

Clocks: virtual (default) runs every policy on an emulated link with runtimes charged from the
profile, deterministically (same inputs, same summary.json byte for byte); wall runs the real
onboard pipeline (the carlink policy) in real time through a loopback link-emulating proxy to a
cloud server started in-process, or to --cloud HOST:PORT.

Outputs in -o DIR: summary.json (per policy), results.json (per frame and task), report.html
with capacity.png, options.png and utility.png.

examples:
  carlink replay
  carlink replay scene.tfrecord --trace throughput.list --trace-format nuwins --scale 0.2
  carlink replay --compose a,b,c,d,e --rate-hz 10 --truth evaluation.json --trace throughput.list
  carlink replay scene.tfrecord --trace ATT-LTE-driving.up --rtt 60 --clock wall -o out/
  carlink replay sweep --help      (a grid of replays: scenes x traces x scales x offsets)
"""


def _policies(text: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in names if p not in POLICY_NAMES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown policy {', '.join(bad) or '(none)'}; choose from {', '.join(POLICY_NAMES)}")
    return names


def _composition(text: str) -> tuple[str, ...]:
    files = tuple(f.strip() for f in text.split(","))
    if not files or any(not f for f in files):
        raise argparse.ArgumentTypeError(f"expected comma-separated scene files, got {text!r}")
    return files


class _ReplayParser(argparse.ArgumentParser):
    """``carlink replay``, whose first word may be ``sweep``: the sweep's own parser reads the rest
    (the replay's scene files are positional, so a sub-parser cannot sit beside them)."""

    sweep: argparse.ArgumentParser

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if args and args[0] == "sweep":
            return self.sweep.parse_known_args(args[1:], namespace)
        return super().parse_known_args(args, namespace)


def add_scene_options(p: argparse.ArgumentParser) -> None:
    """--compose and --rate-hz (shared with the sweep)."""
    p.add_argument("--compose", type=_composition, action="append", metavar="A,B,...",
                   help="play these sequence files in lockstep as the cameras FRONT, FRONT_LEFT, FRONT_RIGHT, "
                        "SIDE_LEFT, SIDE_RIGHT of one car (repeat for several cars, played one after the other)")
    p.add_argument("--rate-hz", type=positive_float, metavar="R",
                   help="play frame k of each scene or composition at k / R s (e.g. 10: the 1 Hz sequences "
                        "time compressed tenfold); default: their own time stamps")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    # Imported before any parser is added: if one fails, carlink/cli.py reports the whole group.
    from carlink.datasets.trace_readers import TRACE_FORMATS
    from carlink.replay.profile_cli import register_profile
    from carlink.replay.sweep_cli import build_sweep_parser

    p = sub.add_parser(
        "replay", help="replay scenes over a cellular trace and compare policies",
        description="Replay recorded scenes over a real (or synthetic) uplink trace and compare what "
                    "carlink, TURBO, on-car only, single-cloud and an oracle would have achieved.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scenes", nargs="*", metavar="SCENE", help="Waymo v1 Frame or TF-Example TFRecord files")
    add_scene_options(p)
    p.add_argument("--trace", metavar="FILE", help="uplink trace (default: a synthetic one)")
    p.add_argument("--trace-format", default="auto", choices=("auto", *TRACE_FORMATS),
                   help="trace file format (default: detect)")
    p.add_argument("--trace-offset", type=non_negative_float, default=0.0, metavar="S",
                   help="start this many seconds into the trace (default 0)")
    p.add_argument("--rtt", type=non_negative_float, metavar="MS",
                   help="round trip in ms (default: the trace's RTT series if it has one, else 40)")
    p.add_argument("--scale", type=positive_float, default=1.0, metavar="X",
                   help="multiply the trace's capacity by X (default 1)")
    p.add_argument("--queue-bytes", type=positive_int, metavar="N",
                   help="drop-tail queue limit of the emulated uplink (default: unlimited, as mahimahi)")
    p.add_argument("--profile", metavar="FILE",
                   help="profile JSON (default: carlink/profiles/default.json for scenes, the illustrative "
                        "example profile for the synthetic demonstration)")
    p.add_argument("--policies", type=_policies, default=POLICY_NAMES, metavar="LIST",
                   help=f"comma-separated subset of {','.join(POLICY_NAMES)} (default: all)")
    p.add_argument("--utilities", choices=("auto", "measured", "profile"), default="auto",
                   help="virtual clock: 'measured' runs the models on the frames (real AP), 'profile' "
                        "takes per-frame utilities from the profile (fast); auto: measured when every "
                        "model of the profile can be loaded here, else profile. Measured with the oracle "
                        "runs every option's model on every frame (slow on a CPU)")
    p.add_argument("--truth", metavar="PROFILE",
                   help="per-frame utilities and payloads of what really happens, from this measurement "
                        "profile (matched by frame id and option; it must hold every replayed frame); the car "
                        "still plans with --profile")
    p.add_argument("--estimates", choices=("uploads", "trace"), default="uploads",
                   help="virtual clock: what carlink and turbo know of the link: 'uploads' (default) the "
                        "car's estimator fed with their own uploads, probes and pings; 'trace' the true "
                        "capacity of past 100 ms bins")
    p.add_argument("--clock", choices=("virtual", "wall"), default="virtual",
                   help="virtual: deterministic, all policies; wall: real pipeline in real time")
    p.add_argument("--cloud", metavar="HOST:PORT",
                   help="wall clock: use this cloud server instead of starting one in-process")
    p.add_argument("-o", "--output", default="replay-out", metavar="DIR", help="output folder (default replay-out)")
    p.add_argument("--max-frames", type=positive_int, metavar="N", help="replay at most N frames")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic frames and trace (default 0)")
    p.add_argument("--no-report", action="store_true", help="write the JSON only (no HTML/PNG)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_command, parser=p)
    p.__class__ = _ReplayParser
    p.sweep = build_sweep_parser(prog=f"{p.prog} sweep")
    register_profile(sub)


def _error(message: str) -> Exception:
    from carlink.cli import CommandError

    return CommandError(message)


def _pick_utilities(mode: str, profile, truth=None):
    from carlink.replay.frame_utility import MeasuredUtilities, ProfileUtilities, TruthUtilities

    if truth is not None:
        return TruthUtilities(truth), None
    if mode == "profile":
        return ProfileUtilities(profile), None
    if mode == "auto" or mode == "measured":
        from carlink.zoo.registry import get_model

        try:
            for name in dict.fromkeys([*profile.on_car_models(), *profile.cloud_models()]):
                get_model(name, device="cpu")
        except Exception as exc:  # weights missing, unknown model
            if mode == "measured":
                raise _error(f"--utilities measured: cannot load a model of profile {profile.path}: {exc}") from None
            return ProfileUtilities(profile), f"models of the profile cannot run here ({exc}); utilities come from the profile"
    return MeasuredUtilities(), None


def load_frames(args: argparse.Namespace):
    """The replay's playlist: --compose groups, scene files, or (neither) the synthetic demo."""
    from carlink.datasets.errors import DatasetError
    from carlink.replay import demo
    from carlink.replay.compose import compose_playlist
    from carlink.replay.player import PlayerError, Playlist, load_playlist

    if args.compose and args.scenes:
        raise _error("give scene files or --compose, not both")
    try:
        if args.compose:
            return compose_playlist(args.compose, args.rate_hz, args.max_frames)
        if args.scenes:
            return load_playlist(args.scenes, args.max_frames, rate_hz=args.rate_hz)
    except (PlayerError, DatasetError, OSError, ValueError) as exc:
        raise _error(f"scenes: {exc}") from None
    if args.rate_hz:
        raise _error("--rate-hz needs scene files or --compose (the demonstration plays at 10 Hz)")
    return Playlist(demo.synthetic_frames(args.max_frames or demo.DEMO_FRAMES, args.seed), demo.SYNTHETIC_LABEL)


def run_command(args: argparse.Namespace) -> int:
    from carlink.datasets.errors import TraceError
    from carlink.datasets.trace_readers import load_trace
    from carlink.replay import demo
    from carlink.profile import EXAMPLE_PROFILE, ProfileError
    from carlink.replay.profile_view import load_replay_profile
    from carlink.replay.runner import ReplayConfig

    synthetic = not args.scenes and not args.compose
    try:
        # The demonstration plans with the shipped illustrative example (five cameras, options
        # that fit a few Mbit/s) unless told otherwise; real scenes default to the measured one.
        profile = load_replay_profile(args.profile or (EXAMPLE_PROFILE if synthetic else None))
    except ProfileError as exc:
        raise _error(str(exc)) from None
    truth = None
    if args.truth:
        if args.utilities not in ("auto", "profile") or args.clock == "wall":
            raise _error("--truth takes the utilities from a measurement profile: it goes with neither "
                         "--utilities measured nor --clock wall")
        try:
            truth = load_replay_profile(args.truth)
        except ProfileError as exc:
            raise _error(f"--truth: {exc}") from None
    playlist = load_frames(args)
    frames = playlist.frames
    synthetic_trace = args.trace is None
    try:
        trace = (demo.synthetic_trace(max(60.0, frames[-1].t + 5), args.seed) if synthetic_trace
                 else load_trace(args.trace, args.trace_format))
    except (TraceError, OSError, ValueError) as exc:
        raise _error(f"--trace {args.trace}: {exc}") from None
    inputs = {
        "synthetic": synthetic or synthetic_trace,
        "scenes": playlist.description,
        "scene_files": ([list(c) for c in args.compose] if args.compose else
                        demo.SYNTHETIC_LABEL if synthetic else [str(s) for s in args.scenes]),
        "rate_hz": playlist.rate_hz,
        "trace_file": demo.SYNTHETIC_LABEL if synthetic_trace else str(args.trace),
        "warnings": list(playlist.warnings),
    }
    if truth is not None:
        inputs["truth"] = truth.path
    if synthetic or synthetic_trace:
        print(f"carlink replay: SYNTHETIC {'frames and trace' if synthetic and synthetic_trace else 'frames' if synthetic else 'trace'}"
              " generated by code; not real data", file=sys.stderr)
    try:
        cfg = ReplayConfig(policies=args.policies, rtt_ms=args.rtt, scale=args.scale,
                           queue_bytes=args.queue_bytes, trace_offset_s=args.trace_offset,
                           estimates=args.estimates)
    except ValueError as exc:
        raise _error(str(exc)) from None

    if args.clock == "wall":
        from carlink.replay.wall import WallError, run_wall

        try:
            result = run_wall(frames, profile, trace, cfg, inputs=inputs, cloud=args.cloud,
                              progress=not args.no_progress)
        except WallError as exc:
            raise _error(str(exc)) from None
    else:
        if args.cloud:
            raise _error("--cloud needs --clock wall (the virtual clock emulates the cloud from the profile)")
        result = _run_virtual(frames, profile, trace, cfg, inputs, args, truth)
    for w in result.inputs.get("warnings", ()):
        print(f"carlink replay: warning: {w}", file=sys.stderr)
    return _write(result, args)


def _run_virtual(frames, profile, trace, cfg, inputs, args, truth=None):
    from carlink.replay.frame_utility import TruthError
    from carlink.replay.runner import run_virtual

    # Synthetic frames have no pedestrians for the detectors to find: the demonstration takes its
    # utilities from the profile unless measured ones are asked for explicitly.
    mode = "profile" if (inputs.get("scenes") == demo_label() and args.utilities == "auto") else args.utilities
    utilities, note = _pick_utilities(mode, profile, truth)
    if note:
        print(f"carlink replay: {note}", file=sys.stderr)
    total = len(frames) * len(cfg.policies)
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="frame", desc="replay", file=sys.stderr, leave=False)
    try:
        return run_virtual(frames, profile, trace, utilities, cfg, inputs, progress=bar.update if bar else None)
    except TruthError as exc:
        raise _error(f"--truth: {exc}") from None
    except ValueError as exc:
        raise _error(str(exc)) from None
    finally:
        if bar is not None:
            bar.close()


def demo_label() -> str:
    from carlink.replay.demo import SYNTHETIC_LABEL

    return SYNTHETIC_LABEL


def _write(result, args) -> int:
    from carlink.replay.results import format_table

    out = Path(args.output)
    try:
        paths = result.write(out)
        if not args.no_report:
            from carlink.replay.report import write_report

            paths["report"] = write_report(result, out)
    except OSError as exc:
        raise _error(f"-o {out}: cannot write: {exc.strerror or exc}") from None
    if result.inputs.get("synthetic"):
        print("SYNTHETIC DEMONSTRATION (generated frames/trace; illustrative numbers, not measurements)")
    print(f"scenes: {result.inputs.get('scenes')}")
    if result.inputs.get("truth"):
        print(f"utilities: per-frame truth from {result.inputs['truth']} (the car plans with {result.inputs.get('profile')})")
    print(format_table(result))
    if result.inputs.get("estimates"):
        print(f"bandwidth estimates: {result.inputs['estimates']}")
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0
