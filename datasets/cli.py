"""``carlink scene ...`` and ``carlink trace ...``: look inside scene and trace files."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from rich.console import Console
from rich.table import Table

from carlink.cli import CommandError
from carlink.cli_types import positive_float, positive_int
from carlink.datasets.errors import DatasetError
from carlink.datasets.scene import SCENE_FORMATS, SceneSummary, summarize_scene
from carlink.datasets.synthetic import write_synthetic_scene
from carlink.datasets.tfrecord import DEFAULT_MAX_RECORD_BYTES
from carlink.datasets.trace_readers import TRACE_FORMATS, load_trace


def _console() -> Console:
    # Piped output (CI logs, files) gets wide tables instead of truncated 80-column ones.
    console = Console()
    return console if console.is_terminal else Console(width=200)


_FORMATTER = argparse.RawDescriptionHelpFormatter


def _group(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", name: str, help: str,
           description: str) -> "argparse._SubParsersAction[argparse.ArgumentParser]":
    """A command group (``carlink NAME SUBCOMMAND``) that prints its help when given alone."""
    group = sub.add_parser(name, help=help, description=description, formatter_class=_FORMATTER)
    group.set_defaults(parser=group)
    return group.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    scene_sub = _group(sub, "scene", "inspect Waymo scene files (v1 Frame or TF-Example TFRecords)",
                       "Inspect Waymo scene files.")
    info = scene_sub.add_parser(
        "info", formatter_class=_FORMATTER,
        help="frames, time span, cameras, image sizes, label counts, corrupt records",
        description=(
            "Summarise scene files: frames, time span, cameras with image sizes, camera label counts\n"
            "per camera and per type, corrupt records. No image is decoded.\n\n"
            "Reads Waymo Open Dataset v1 Frame TFRecords and TF-Object-Detection-API Example\n"
            "TFRecords (detected from the first record). With no FILE, runs on a built-in SYNTHETIC\n"
            "example scene generated in code (not real data)."),
    )
    info.add_argument("files", nargs="*", metavar="FILE", help="TFRecord files (none: built-in synthetic example)")
    info.add_argument("--format", choices=SCENE_FORMATS, default="auto", help="file format (default: auto)")
    info.add_argument("--skip-corrupt", action="store_true",
                      help="skip corrupt records and report them instead of stopping at the first one")
    info.add_argument("--no-verify-crc", dest="verify_crc", action="store_false",
                      help="do not check the CRC32C of lengths and records (faster, unsafe)")
    info.add_argument("--max-record-mib", type=positive_float, default=DEFAULT_MAX_RECORD_BYTES / 2**20,
                      help="refuse records longer than this many MiB (default: %(default)g)")
    info.add_argument("--json", action="store_true", help="print JSON instead of tables")
    info.set_defaults(func=_scene_info)

    trace_sub = _group(sub, "trace", "inspect cellular bandwidth/RTT traces",
                       "Inspect cellular bandwidth and RTT traces.")
    tinfo = trace_sub.add_parser(
        "info", formatter_class=_FORMATTER,
        help="duration, mean and p5/p50/p95 of 1 s throughput, share of time at zero",
        description=(
            "Summarise trace files: duration, mean capacity, p5/p50/p95/max of throughput in\n"
            "windows (default 1 s), share of windows at zero, RTT percentiles where present.\n\n"
            f"Formats: {', '.join(TRACE_FORMATS)} (auto-detected from the content by default).\n"
            "A CSV inside a zip archive is named ARCHIVE.zip::MEMBER."),
    )
    tinfo.add_argument("files", nargs="+", metavar="FILE", help="trace files")
    tinfo.add_argument("--format", choices=("auto", *TRACE_FORMATS), default="auto",
                       help="trace format (default: auto)")
    tinfo.add_argument("--window-ms", type=positive_int, default=1000, help="throughput window in ms (default: 1000)")
    tinfo.add_argument("--json", action="store_true", help="print JSON instead of a table")
    tinfo.set_defaults(func=_trace_info)


@contextlib.contextmanager
def _reading(name: str, hint: str = "") -> Iterator[None]:
    """A file that cannot be read, or holds bad data, as a CommandError naming it."""
    try:
        yield
    except OSError as exc:
        raise CommandError(f"{name}: cannot read: {exc.strerror or exc}") from None
    except DatasetError as exc:
        raise CommandError(f"{exc}{hint}") from None


# -- scene info -----------------------------------------------------------------------------

def _scene_info(args: argparse.Namespace) -> int:
    max_bytes = max(1, int(args.max_record_mib * 2**20))
    options = dict(format=args.format, skip_corrupt=args.skip_corrupt, verify_crc=args.verify_crc,
                   max_record_bytes=max_bytes)
    summaries: list[SceneSummary] = []
    if not args.files:
        with tempfile.TemporaryDirectory(prefix="carlink-example-") as tmp:
            path = write_synthetic_scene(Path(tmp) / "synthetic_example.tfrecord")
            summary = summarize_scene(path, **options)
            summary.path = "<built-in synthetic example>"
            summary.synthetic = True
            summaries.append(summary)
    hint = "" if args.skip_corrupt else " (use --skip-corrupt to read past corrupt records)"
    for name in args.files:
        with _reading(name, hint):
            summaries.append(summarize_scene(name, **options))
    if args.json:
        json.dump([s.to_json() for s in summaries], sys.stdout, indent=1)
        print()
    else:
        console = _console()
        for s in summaries:
            _print_scene(console, s)
    return 0


def _fmt_time(s: SceneSummary) -> str:
    if s.span_s is None:
        return "-"
    if s.time_basis == "timestamp_micros":
        return f"{s.span_s:.3f} s (timestamps {s.first_time_s:.6f} .. {s.last_time_s:.6f})"
    return f"{s.span_s:.1f} s ({s.time_basis})"


def _print_scene(console: Console, s: SceneSummary) -> None:
    title = s.path + ("  [SYNTHETIC: generated in code, not real data]" if s.synthetic else "")
    console.print(f"[bold]{title}[/bold]", soft_wrap=True)
    console.print(f"  format: {s.format}   frames: {s.frames}")
    console.print(f"  context: {', '.join(s.contexts) or '-'}", soft_wrap=True)
    console.print(f"  time span: {_fmt_time(s)}")
    types = sorted(s.labels_by_type)
    table = Table(show_edge=False, pad_edge=False)
    for col in ("camera", "images", "image size(s)", "labels", *types):
        table.add_column(col, justify="left" if col in ("camera", "image size(s)") else "right")
    for name, cam in s.cameras.items():
        sizes = ", ".join(f"{w}x{h}" for (w, h) in sorted(cam.sizes)) or "-"
        table.add_row(name, str(cam.images), sizes, str(cam.labels), *(str(cam.labels_by_type.get(t, 0)) for t in types))
    table.add_row("[bold]total[/bold]", str(sum(c.images for c in s.cameras.values())), "", str(s.labels),
                  *(str(s.labels_by_type[t]) for t in types))
    console.print(table)
    if s.corrupt:
        console.print(f"  [red]corrupt records skipped: {len(s.corrupt)}[/red]"
                      + (f" ({s.bytes_skipped} bytes not read)" if s.bytes_skipped else ""))
        for c in s.corrupt:
            console.print(f"    record {c.index} at byte {c.offset}: {c.reason}")
    else:
        console.print("  corrupt records: 0")
    console.print()


# -- trace info -----------------------------------------------------------------------------

def _trace_info(args: argparse.Namespace) -> int:
    rows = []
    for name in args.files:
        with _reading(name):
            trace = load_trace(name, args.format)
        rows.append((name, trace, trace.stats(args.window_ms)))
    if args.json:
        json.dump([{"path": n, "name": t.name, "source": t.source, "period_ms": t.period_ms,
                    "has_capacity": len(t) > 0, **s.to_json()} for n, t, s in rows], sys.stdout, indent=1)
        print()
        return 0
    w = args.window_ms / 1000
    table = Table(show_edge=False, pad_edge=False,
                  caption=f"throughput in Mbit/s over {w:g} s windows; zero = share of windows with no capacity")
    for col in ("trace", "format", "duration s", "mean", "p5", "p50", "p95", "max", "zero", "RTT p50/p95 ms"):
        table.add_column(col, justify="left" if col in ("trace", "format") else "right")
    for name, t, s in rows:
        rtt = f"{s.rtt_p50_ms:.1f}/{s.rtt_p95_ms:.1f}" if s.rtt_p50_ms is not None else "-"
        fmt = t.source.split(":", 1)[0]
        if len(t):
            nums = [f"{v / 1e6:.2f}" for v in (s.mean_bps, s.p5_bps, s.p50_bps, s.p95_bps, s.max_bps)]
            zero = f"{100 * s.zero_share:.1f} %"
        else:  # an RTT-only trace (ping.list) has no capacity figures
            nums, zero = ["-"] * 5, "-"
        table.add_row(t.name, fmt, f"{s.duration_s:.1f}", *nums, zero, rtt)
    _console().print(table)
    return 0
