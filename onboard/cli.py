"""Onboard commands: ``carlink allocate`` (what the car would choose under given conditions).

The allocator folder does no I/O, so the command that reads a profile and prints a decision
lives here, next to the daemon that makes the same decision every frame. By default it runs the
daemon's own policy (:class:`carlink.onboard.planning.Planner`, i.e. ``CarlinkPolicy``) on the
tasks the daemon would load, with the daemon's statistics and settings; ``--bare-solve`` runs
one solve of the allocator alone instead, and says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from carlink.cli import CommandError
from carlink.cli_types import fraction, non_negative_float, positive_float

if TYPE_CHECKING:
    from carlink.allocation import Allocation
    from carlink.allocator.solve import AllocatorConfig
    from carlink.onboard.policy import PolicySettings
    from carlink.tasks import Task

BARE_DEFAULTS = {"payload_stat": "p95", "runtime_stat": "p99"}  # a bare solve's statistics unless given


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from carlink.allocator.solve import DEFAULT_CVXPY_MAX_TASKS, DEFAULT_MIP_SOLVER, SOLVERS

    p = sub.add_parser(
        "allocate",
        help="show the allocation the car would choose for a bandwidth and RTT",
        description=(
            "One frame's decision as the car makes it: the onboard daemon's policy (the same code, "
            "statistics and settings as `carlink onboard run`) plans over the bandwidth samples, the "
            "round trip and the car's backlog, and shows per task the cloud option (model, resize, "
            "codec) or the on-car model it sends. --config reads the car's config (its profile, "
            "[[tasks]], [allocator] and [policy]); without it the shipped example profile is used "
            "(illustrative numbers, not measurements) with the daemon's default settings. "
            "--bare-solve shows one solve of the allocator alone instead, which is not what the car runs."
        ),
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--config", metavar="FILE",
                       help="the car's config (TOML, as for `carlink onboard run`): profile, tasks, allocator, policy")
    where.add_argument("--profile", metavar="FILE", help="profile JSON (default: the shipped example profile)")
    p.add_argument("--bandwidth", metavar="MBPS", type=non_negative_float, nargs="+", required=True,
                   help="uplink bandwidth in Mbit/s; several values are samples of it (the estimator's "
                        "window), which the policy plans over")
    p.add_argument("--rtt", metavar="MS", type=non_negative_float, required=True, help="round-trip time in ms")
    p.add_argument("--backlog", metavar="BYTES", type=non_negative_float, default=0.0,
                   help="bytes of the car's earlier uploads still queued ahead of this frame's (default 0)")
    p.add_argument("--deadline", metavar="MS", type=positive_float,
                   help="use this deadline (ms after capture) for every task instead of the profile's")
    p.add_argument("--solver", choices=SOLVERS,
                   help=f"the allocator's solver (default: the config's, else auto: the policy uses the exact "
                        f"fast path, a bare solve CVXPY up to {DEFAULT_CVXPY_MAX_TASKS} tasks), cvxpy, mckp "
                        "(exact fast path) or pulp (TURBO's PuLP/CBC path)")
    p.add_argument("--mip-solver",
                   help=f"CVXPY MIP solver for --solver cvxpy/auto (default: the config's, else {DEFAULT_MIP_SOLVER})")
    p.add_argument("--headroom", metavar="FRACTION", type=fraction,
                   help="plan with this fraction of the bandwidth (0-1; default: the config's, else 1.0)")
    p.add_argument("--bare-solve", action="store_true",
                   help="not the car's policy: one solve of the allocator alone at the bandwidth (the "
                        "samples' mean) times the headroom, with the --payload-stat and --runtime-stat "
                        "statistics and the profile's aggregate utilities")
    p.add_argument("--payload-stat", choices=("p95", "mean"),
                   help="with --bare-solve: payload statistic to plan with (default p95)")
    p.add_argument("--runtime-stat", choices=("p99", "p50"),
                   help="with --bare-solve: cloud runtime statistic to plan with (default p99)")
    p.add_argument("--json", action="store_true", help="print the allocation as JSON")
    p.set_defaults(func=_allocate, parser=p)
    _register_onboard(sub)


def _register_onboard(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from carlink.onboard.daemon_cli import register_run

    g = sub.add_parser("onboard", help="the onboard daemon (run it, check its config)",
                       description="The car half of carlink, normally run as a systemd service.")
    g.set_defaults(parser=g)
    register_run(g.add_subparsers(metavar="COMMAND"))


@dataclass(frozen=True)
class CarSetup:
    """What the daemon would plan with: its tasks, the allocator's and the policy's settings."""

    tasks: tuple["Task", ...]
    config: "AllocatorConfig"
    settings: "PolicySettings"


def _allocate(args: argparse.Namespace) -> int:
    given = [f"--{k.replace('_', '-')}" for k in BARE_DEFAULTS if getattr(args, k) is not None]
    if given and not args.bare_solve:
        raise CommandError(f"{' and '.join(given)} only with --bare-solve: the car's policy plans with "
                           "mean payloads, p50 and p99 runtimes and expected per-frame utilities")
    setup = car_setup(args)
    samples = [b * 1e6 for b in args.bandwidth]
    try:
        if args.bare_solve:
            tasks = bare_tasks(setup, args.payload_stat or BARE_DEFAULTS["payload_stat"],
                               args.runtime_stat or BARE_DEFAULTS["runtime_stat"])
            allocation = bare_solve(tasks, setup.config, samples, args.rtt)
        else:
            tasks = setup.tasks
            allocation = policy_decision(setup, samples, args.rtt, args.backlog)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        print(json.dumps(allocation.to_dict(), indent=2))
        return 0
    _print_table(allocation, tasks, _title(args, allocation))
    return 0


def car_setup(args: argparse.Namespace) -> CarSetup:
    """The tasks and settings of ``--config`` (or the example/``--profile`` profile with the
    daemon's defaults), with the command line's --deadline, --solver, --mip-solver, --headroom."""
    from carlink.allocator.solve import AllocatorConfig, Headroom
    from carlink.onboard.config import ConfigError, load_config
    from carlink.onboard.planning import ProfileError, load_onboard_tasks
    from carlink.onboard.policy import PolicySettings
    from carlink.profile import EXAMPLE_PROFILE

    try:
        if args.config:
            cfg = load_config(args.config)
            tasks = load_onboard_tasks(cfg.profile_path, cfg.tasks)
            config, settings = cfg.allocator_config(), cfg.policy.settings()
        else:
            tasks = load_onboard_tasks(args.profile or EXAMPLE_PROFILE, [])
            config, settings = AllocatorConfig(), PolicySettings()
        if args.deadline is not None:
            tasks = tuple(t.overridden(deadline_ms=args.deadline) for t in tasks)
    except (ConfigError, ProfileError) as exc:
        raise CommandError(str(exc)) from None
    changes = {k: v for k, v in (("solver", args.solver), ("mip_solver", args.mip_solver)) if v is not None}
    if args.headroom is not None:
        changes["headroom"] = Headroom(fraction=args.headroom, quantile=config.headroom.quantile)
    return CarSetup(tuple(tasks), dataclasses.replace(config, **changes), settings)


def policy_decision(setup: CarSetup, samples: list[float], rtt_ms: float, backlog_bytes: float) -> "Allocation":
    """The daemon's decision for one frame (onboard/planning.py's Planner, prepared first so the
    time shown is one frame's)."""
    from carlink.onboard.planning import Planner

    return Planner(setup.tasks, setup.config, setup.settings).allocate(samples, rtt_ms, backlog_bytes)


def bare_tasks(setup: CarSetup, payload: str, runtime: str) -> list["Task"]:
    """The tasks as a bare solve plans them: one payload and one runtime statistic, the aggregate
    utility (as :meth:`carlink.profile.Profile.to_tasks`)."""
    return [t.planned(payload, runtime, utility="aggregate") for t in setup.tasks]  # type: ignore[arg-type]


def bare_solve(tasks: list["Task"], config: "AllocatorConfig", samples: list[float], rtt_ms: float) -> "Allocation":
    """One solve of the allocator alone (CVXPY compiled first, so the time shown is one frame's)."""
    from carlink.allocator import Allocator

    allocator = Allocator(tasks, config)
    allocator.prepare()
    return allocator.allocate(samples, rtt_ms)


def _title(args: argparse.Namespace, allocation: "Allocation") -> str:
    where = f"RTT {allocation.rtt_ms:g} ms"
    if args.bare_solve:
        stats = f"{args.payload_stat or BARE_DEFAULTS['payload_stat']} payload, " \
                f"{args.runtime_stat or BARE_DEFAULTS['runtime_stat']} runtime"
        return (f"bare solve (not the car's policy; {stats}): {allocation.bandwidth_bps / 1e6:.3f} Mbit/s "
                f"planned, {where}")
    return (f"the car's policy: estimate {allocation.estimate_bps / 1e6:.3f} Mbit/s, planned for "
            f"{allocation.bandwidth_bps / 1e6:.3f} Mbit/s, {where}, backlog {args.backlog:g} B")


def _print_table(allocation: "Allocation", tasks: "list[Task] | tuple[Task, ...]", title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    by_name = {t.name: t for t in tasks}
    table = Table(title=title)
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
