"""Onboard commands: ``carlink allocate`` (what the car would choose under given conditions).

The allocator folder does no I/O, so the command that reads a profile and prints a decision
lives here, next to the daemon that makes the same decision every frame.
"""

from __future__ import annotations

import argparse
import json

from carlink.cli import CommandError
from carlink.cli_types import fraction, non_negative_float, positive_float


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from carlink.allocator.solve import DEFAULT_CVXPY_MAX_TASKS, DEFAULT_MIP_SOLVER, SOLVERS

    p = sub.add_parser(
        "allocate",
        help="show the allocation the car would choose for a bandwidth and RTT",
        description=(
            "Solve one frame's allocation: per task, the cloud option (model, resize, codec) or "
            "the on-car model that maximises the weighted expected utility within the planned "
            "bandwidth. Without --profile the example profile shipped with carlink is used "
            "(illustrative numbers, not measurements)."
        ),
    )
    p.add_argument("--profile", metavar="FILE", help="profile JSON (default: the shipped example profile)")
    p.add_argument("--bandwidth", metavar="MBPS", type=non_negative_float, required=True,
                   help="uplink bandwidth estimate in Mbit/s")
    p.add_argument("--rtt", metavar="MS", type=non_negative_float, required=True, help="round-trip time in ms")
    p.add_argument("--deadline", metavar="MS", type=positive_float,
                   help="use this deadline (ms after capture) for every task instead of the profile's")
    p.add_argument("--solver", choices=SOLVERS, default="auto",
                   help=f"auto (default: CVXPY up to {DEFAULT_CVXPY_MAX_TASKS} tasks, the exact fast "
                        "path beyond), cvxpy, mckp (exact fast path) or pulp (TURBO's PuLP/CBC path)")
    p.add_argument("--mip-solver", default=DEFAULT_MIP_SOLVER,
                   help=f"CVXPY MIP solver for --solver cvxpy/auto (default {DEFAULT_MIP_SOLVER})")
    p.add_argument("--headroom", metavar="FRACTION", type=fraction, default=1.0,
                   help="plan with this fraction of the bandwidth (0-1, default 1.0)")
    p.add_argument("--payload-stat", choices=("p95", "mean"), default="p95",
                   help="payload statistic of the profile to plan with (default p95)")
    p.add_argument("--runtime-stat", choices=("p99", "p50"), default="p99",
                   help="cloud runtime statistic of the profile to plan with (default p99)")
    p.add_argument("--json", action="store_true", help="print the allocation as JSON")
    p.set_defaults(func=_allocate, parser=p)
    _register_onboard(sub)


def _register_onboard(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from carlink.onboard.daemon_cli import register_run

    g = sub.add_parser("onboard", help="the onboard daemon (run it, check its config)",
                       description="The car half of carlink, normally run as a systemd service.")
    g.set_defaults(parser=g)
    register_run(g.add_subparsers(metavar="COMMAND"))


def _allocate(args: argparse.Namespace) -> int:
    from carlink.allocator import Allocator, AllocatorConfig, Headroom
    from carlink.profile import ProfileError, load_profile

    try:
        profile = load_profile(args.profile)
        tasks = profile.to_tasks(payload=args.payload_stat, runtime=args.runtime_stat)
    except ProfileError as exc:
        raise CommandError(str(exc)) from None
    try:
        config = AllocatorConfig(solver=args.solver, mip_solver=args.mip_solver,
                                 headroom=Headroom(fraction=args.headroom))
        allocator = Allocator(tasks, config)
        allocator.prepare()  # compile the CVXPY model first, so the time shown is one frame's
        allocation = allocator.allocate(
            args.bandwidth * 1e6, args.rtt, deadline_ms=args.deadline
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        print(json.dumps(allocation.to_dict(), indent=2))
        return 0
    _print_table(allocation, tasks)
    return 0


def _print_table(allocation, tasks) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.table import Table

    by_name = {t.name: t for t in tasks}
    table = Table(title=f"allocation at {allocation.bandwidth_bps / 1e6:.3f} Mbit/s planned, "
                        f"RTT {allocation.rtt_ms:g} ms")
    for col in ("task", "choice", "model", "resize", "codec", "Mbit/s", "utility", "weight"):
        table.add_column(col, justify="right" if col in ("Mbit/s", "utility", "weight") else "left")
    for ta in allocation.tasks:
        opt = by_name[ta.task].option(ta.option)
        resize = f"{opt.resize[0]}x{opt.resize[1]}" if opt.resize else "-"
        codec = "-" if ta.on_car else (f"jpeg q{opt.jpeg_quality}" if opt.codec == "jpeg" else opt.codec)
        table.add_row(ta.task, "on-car" if ta.on_car else ta.option, opt.model or "-", resize if not ta.on_car else "-",
                      codec, f"{ta.bandwidth_bps / 1e6:.3f}", f"{ta.utility:.3f}", f"{ta.weight:g}")
    console = Console(width=None if Console().is_terminal else 140)
    console.print(table)
    gap = "unknown" if allocation.optimality_gap is None else f"{allocation.optimality_gap:g}"
    console.print(
        f"expected utility {allocation.expected_utility:.4f} | used {allocation.used_bps / 1e6:.3f} Mbit/s, "
        f"unused {allocation.unused_bps / 1e6:.3f} Mbit/s | solver {allocation.solver} in "
        f"{allocation.solve_time_ms:.2f} ms | optimality gap {gap}"
    )
