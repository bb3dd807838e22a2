"""``carlink profile run ...`` (measure a profile) and ``carlink profile show FILE`` (its staircases).

``profile`` is a command group: measuring is ``carlink profile run SCENES...`` rather than
``carlink profile SCENES...``, because argparse cannot tell a scene file from a sub-command name.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from carlink.replay.evaluation import EmptyFrameRule
from carlink.replay.profiling.options import DEFAULT_OPTIONS
from carlink.replay.ray_cli import add_ray_arguments, ray_target

DEFAULT_ONBOARD = "yolo-fastest-1.1-320x320"


def default_cloud_models(onboard: str = DEFAULT_ONBOARD) -> tuple[str, ...]:
    """Every Darknet variant of the zoo but the on-car model (the cloud's staircase)."""
    from carlink.zoo.darknet import VARIANTS

    return tuple(name for name in VARIANTS if name != onboard)

_RUN_EPILOG = """\
Utility is AP@0.5 (replay/evaluation.py) of each model's detections on the decoded image
(resize -> encode with the car's encoder -> decode with the cloud's decoder -> detect; boxes
scaled back to the original pixels) against the frame's 2D camera labels, over the classes
(vehicle, pedestrian, cyclist) any of the models detects, or those --classes names (a class
with a handful of labels has a noisy AP that would weigh as much as the others): per frame, the
mean of the AP of the classes the frame has labels of; over a set of frames, per class the AP
of the pooled detections (as COCO pools images), then the mean over the classes with a label
there. The OpenCV HOG
detectors find pedestrians only, so for them it is pedestrian AP.
A task is one camera at one image size, served by the models given (a camera seen at several
sizes gives one task per size, CAMERA@WxH; --tasks CAMERA@WxH keeps one, named CAMERA). Frames
without a label of those classes have an undefined per-frame utility under --empty-frames
exclude (the default). --as-cameras writes the one measured task under several camera names
(measured once): a five-camera car composed from FRONT sequences finds a task per camera;
per-frame values are keyed by frame id, whatever the camera slot.

--options lists the transports every cloud model is measured with:
  resize: native | input (the model's input size) | x<scale> (e.g. x0.5) | <width>x<height>
  codec:  jpeg<quality> (1-100) | png (compression level 1, as the car sends it) | raw
Plain items are crossed (native,x0.5,jpeg75,png: 4 transports); RESIZE:CODEC items are single
pairs (input:jpeg50,input:png,native:jpeg90: 3 transports, TURBO's grid). Option ids are
MODEL-RESIZE-CODEC.

Runtimes (p50/p99 over frames) are measured here on the CPU (cloud: payload decode + detect;
on-car: detect), unless --runtime-table gives them for other hardware. The table is a CSV file:
  model,resize,runtime_ms_p50,runtime_ms_p99
  hog-default,native,812,901
  hog-default,*,230,260          ('*' matches any resize; the on-car model is looked up as native)
or what `carlink models bench` writes (its batch-1 rows are used, extra columns ignored):
  model,resize,runtime_ms_p50,runtime_ms_p99,batch,backend,device,hardware
The profile's provenance names the hardware the runtimes were measured on.

Each measurement is appended to OUTPUT.partial.jsonl as it is made. After an interruption,
rerun the same command with --resume: only what is missing is measured, and the result is the
same as an uninterrupted run (byte for byte with a runtime table). The checkpoint is removed
once OUTPUT is written.

example:
  carlink profile run scene.tfrecord --tasks FRONT,FRONT_LEFT --models hog-default \\
      --onboard hog-default-fast --options native,x0.5,jpeg75,jpeg90,png -o profile.json
  carlink profile run seq*.tfrecord --tasks FRONT --as-cameras FRONT,FRONT_LEFT,FRONT_RIGHT \\
      --models yolo-fastest-1.1-xl-640x640 --onboard yolo-fastest-1.1-320x320 \\
      --options input:jpeg50,input:jpeg90,input:png,native:jpeg90 -o profile.json
"""


def _command_error(message: str) -> Exception:
    from carlink.cli import CommandError

    return CommandError(message)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def register_profile(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``profile run`` and ``profile show`` to the ``carlink`` command line."""
    fmt = argparse.RawDescriptionHelpFormatter
    profile = sub.add_parser(
        "profile", help="measure a profile on real frames (run) or print its staircases (show)",
        description="Measure what each cloud option of each task is worth and costs (run), or show a "
                    "profile's service-level staircases (show).", formatter_class=fmt)
    profile.set_defaults(parser=profile)
    psub = profile.add_subparsers(dest="profile_command", metavar="SUBCOMMAND")

    run = psub.add_parser(
        "run", help="measure utility, payload and runtime of every option on scene files",
        description="Measure a profile: for every task (camera) and option (cloud model x resize x "
                    "codec), payload bytes (mean, p95), runtime (p50, p99) and utility (per frame, "
                    "per window, aggregate), plus the on-car model's utility and runtime.",
        epilog=_RUN_EPILOG, formatter_class=fmt)
    run.add_argument("scenes", nargs="+", metavar="SCENE",
                     help="scene files: Waymo v1 Frame or TF-Example TFRecords (format detected)")
    run.add_argument("--tasks", default="all",
                     help="cameras to profile, comma-separated (FRONT,FRONT_LEFT,...; FRONT@640x640 picks "
                          "one image size of a camera), or 'all': every camera with an image and a label "
                          "of the measured class (default: all)")
    run.add_argument("--models",
                     help="cloud models from the zoo, comma-separated (default: every Darknet variant "
                          "but the on-car model; see `carlink models list`)")
    run.add_argument("--onboard", default=DEFAULT_ONBOARD,
                     help="the on-car model of every task (default: %(default)s)")
    run.add_argument("--options", default=DEFAULT_OPTIONS,
                     help="transports: resize targets and codecs to cross, and/or RESIZE:CODEC pairs, "
                          "comma-separated (default: %(default)s)")
    run.add_argument("--backend", default="auto",
                     help="zoo backend the models run on, e.g. opencv or torch for the Darknet family "
                          "(default: %(default)s, the model's own default)")
    run.add_argument("--classes", metavar="LIST",
                     help="classes the utility averages over, comma-separated, among those the models "
                          "detect (vehicle, pedestrian, cyclist); default: all of them. Every detected "
                          "class is measured and checkpointed, so --resume may change this")
    run.add_argument("--as-cameras", metavar="LIST",
                     help="write the one measured task under each of these cameras (measured once), "
                          "e.g. FRONT,FRONT_LEFT,FRONT_RIGHT,SIDE_LEFT,SIDE_RIGHT")
    run.add_argument("-o", "--output", required=True, metavar="FILE", help="profile JSON to write")
    run.add_argument("--runtime-table", metavar="FILE",
                     help="CSV of runtimes to use instead of measuring them here (format below)")
    run.add_argument("--runtime-backend", metavar="NAME",
                     help="with a `carlink models bench` table holding several backends: use this one's rows")
    run.add_argument("--resume", action="store_true",
                     help="continue an interrupted run from FILE.partial.jsonl instead of starting over")
    run.add_argument("--deadline-ms", type=_positive_float, default=150.0,
                     help="deadline of every task, ms after capture (default: %(default)g)")
    run.add_argument("--weight", type=_non_negative_float, default=1.0,
                     help="weight of every task in the allocation (default: %(default)g)")
    run.add_argument("--window", type=_positive_int, default=5,
                     help="frames per window of the windowed utilities; windows never cross scenes "
                          "(default: %(default)d)")
    run.add_argument("--empty-frames", choices=[r.value for r in EmptyFrameRule], default="exclude",
                     help="how a frame without labels of the measured class counts: exclude (undefined, "
                          "skipped; default) or turbo (1.0 with no detections, 0.0 with some)")
    run.add_argument("--max-frames", type=_positive_int, metavar="N",
                     help="use only the first N frames of each scene file (quick runs)")
    run.add_argument("--description", default="", help="free text stored in the profile")
    run.add_argument("--stop-after", type=_positive_int, metavar="N",
                     help="stop (exit code 3) after N new measurements, keeping the checkpoint: "
                          "for testing --resume")
    run.add_argument("--keep-checkpoint", action="store_true",
                     help="keep FILE.partial.jsonl after writing FILE (a later --resume re-assembles "
                          "the profile without measuring again)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_ray_arguments(run, "the measurements (scene file x task x model units, each model loaded once per worker)")
    run.set_defaults(func=_run)

    show = psub.add_parser(
        "show", help="print each task's staircase: utility versus critical bandwidth",
        description="Print each task's service-level staircase (the upper envelope of its options): "
                    "from which critical bandwidth b_c = 8*S / (deadline - rtt - runtime) each utility "
                    "is reachable, at a given round trip and deadline.", formatter_class=fmt)
    show.add_argument("file", metavar="FILE", help="profile JSON (version 1 or 2)")
    show.add_argument("--rtt", type=_non_negative_float, default=30.0, metavar="MS",
                      help="round-trip time in ms (default: %(default)g)")
    show.add_argument("--deadline", type=_positive_float, metavar="MS",
                      help="deadline in ms for every task (default: each task's own)")
    show.add_argument("--payload", choices=["mean", "p95"], default="p95",
                      help="payload statistic b_c is computed from (default: %(default)s)")
    show.add_argument("--runtime", choices=["p50", "p99"], default="p99",
                      help="runtime statistic b_c is computed from (default: %(default)s)")
    show.add_argument("--plot", metavar="PNG", help="also draw the staircases to this PNG file")
    show.set_defaults(func=_show)


def _run(args: argparse.Namespace) -> int:
    from carlink.profile import ProfileError
    from carlink.replay.distributed import DistributedError
    from carlink.replay.profiling import (
        ProfileConfig,
        ProfilerError,
        ProfilingStopped,
        RuntimeTable,
        checkpoint_path,
        parse_cameras,
        parse_classes,
        parse_options,
        parse_tasks,
        run_profile,
    )
    from carlink.zoo.registry import UnknownModelError

    try:
        transports = parse_options(args.options)
        models = (default_cloud_models(args.onboard) if args.models is None else
                  tuple(dict.fromkeys(m.strip() for m in args.models.split(",") if m.strip())))
        if not models:
            raise ProfilerError("--models names no model")
        config = ProfileConfig(
            scenes=tuple(args.scenes), models=models, onboard=args.onboard, transports=transports,
            tasks=parse_tasks(args.tasks), deadline_ms=args.deadline_ms, weight=args.weight,
            window_frames=args.window, empty_frames=EmptyFrameRule(args.empty_frames),
            max_frames=args.max_frames, description=args.description,
            as_cameras=parse_cameras(args.as_cameras) if args.as_cameras is not None else None,
            backend=args.backend.strip().lower(),
            utility_classes=parse_classes(args.classes) if args.classes is not None else None)
        if args.runtime_backend and not args.runtime_table:
            raise ProfilerError("--runtime-backend needs --runtime-table")
        table = RuntimeTable.load(args.runtime_table, args.runtime_backend) if args.runtime_table else None
        profile, result = run_profile(config, args.output, resume=args.resume, table=table,
                                      runtime_backend=args.runtime_backend, stop_after=args.stop_after,
                                      progress_bar=not args.no_progress, keep_checkpoint=args.keep_checkpoint,
                                      ray=ray_target(args))
    except ProfilingStopped as exc:
        print(f"carlink profile: {exc}; resume with --resume "
              f"(checkpoint {checkpoint_path(Path(args.output))})")
        return 3
    except (ProfilerError, ProfileError, UnknownModelError, DistributedError, OSError, ValueError) as exc:
        raise _command_error(str(exc)) from None
    n_opts = sum(len(t.options) for t in profile.tasks)
    print(f"wrote {args.output}: {len(profile.tasks)} tasks, {n_opts} cloud options; "
          f"{result.measured} measurements made, {result.reused} reused from the checkpoint")
    skipped = profile.provenance.skipped_tasks
    if skipped:
        print(f"skipped (no label of the measured classes): {', '.join(skipped)}")
    return 0


def _fmt_bps(bps: float) -> str:
    return f"{bps / 1e6:.3f}"


def _show(args: argparse.Namespace) -> int:
    from carlink.allocator.utility import staircase
    from carlink.profile import ProfileError, load_profile

    try:
        profile = load_profile(args.file)
        tasks = profile.to_tasks(payload=args.payload, runtime=args.runtime, deadline_ms=args.deadline)
    except (ProfileError, ValueError) as exc:
        raise _command_error(str(exc)) from None
    print(f"{args.file}: {profile.metric}; {profile.description}")
    if profile.provenance is not None:
        print(f"  built by: {profile.provenance.command}")
    print(f"  staircases at RTT {args.rtt:g} ms, payload {args.payload}, runtime {args.runtime}"
          + (f", deadline {args.deadline:g} ms" if args.deadline else ", each task's deadline"))
    curves = []
    for task, tp in zip(tasks, profile.tasks):
        steps = staircase(task, args.rtt)
        curves.append((task.name, steps))
        feasible = sum(1 for o in task.options if not o.on_car) - sum(
            1 for o in task.options
            if not o.on_car and task.deadline_ms - args.rtt - o.runtime_ms <= 0)
        n_frames = len(tp.frames) if tp.frames is not None else None
        print(f"\ntask {task.name} (camera {task.camera}, deadline {task.deadline_ms:g} ms, weight "
              f"{task.weight:g}, {len(task.options) - 1} cloud options, {feasible} can meet the deadline"
              + (f", {n_frames} frames" if n_frames is not None else "") + ")")
        print(f"  {'b_c Mbit/s':>10}  {'utility':>7}  {'payload B':>9}  {'runtime ms':>10}  option")
        for s in steps:
            opt = task.option(s.option)
            print(f"  {_fmt_bps(s.bandwidth_bps):>10}  {s.utility:7.4f}  {opt.payload_bytes:9.0f}  "
                  f"{opt.runtime_ms:10.1f}  {s.option}{' (on-car ' + opt.model + ')' if s.on_car else ''}")
    if args.plot:
        from carlink.replay.profile_plot import plot_staircases

        title = f"{Path(args.file).name}: {profile.metric}, RTT {args.rtt:g} ms" + (
            f", deadline {args.deadline:g} ms" if args.deadline else "")
        plot_staircases(curves, args.plot, title=title)
        print(f"\nwrote {args.plot}")
    return 0


__all__ = ["register_profile", "default_cloud_models", "DEFAULT_ONBOARD"]
