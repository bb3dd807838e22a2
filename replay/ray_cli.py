"""The command-line options that put a command's work on Ray: ``--workers``, ``--ray-address``, ``--verbose``.

Shared by ``carlink profile run`` and ``carlink replay sweep``; neither imports Ray unless one of
these options is given.
"""

from __future__ import annotations

import argparse

from carlink.cli_types import positive_int
from carlink.replay.distributed import RAY_EXTRA, DistributedError, RayTarget, check_reachable, import_ray


def add_ray_arguments(parser: argparse.ArgumentParser, work: str) -> None:
    """Add the Ray options to ``parser``; ``work`` says what runs in parallel (for the help)."""
    group = parser.add_argument_group(
        "scale-out on Ray", f"Run {work} in parallel on Ray (needs the extra: {RAY_EXTRA}); "
                            "the result is the same as without these options.")
    group.add_argument("--workers", type=positive_int, metavar="N",
                       help="Ray workers: without --ray-address, a local Ray with N CPUs is started for the "
                            "run; with it, N workers on the cluster (default there: one per cluster CPU)")
    group.add_argument("--ray-address", metavar="ADDRESS",
                       help="an existing Ray cluster: its head's HOST:PORT (default port 6379), or 'auto' "
                            "for the cluster this node has joined; run carlink on a node of the cluster")
    group.add_argument("--verbose", action="store_true",
                       help="show the Ray workers' own log lines in this terminal (by default they stay "
                            "in Ray's session logs, /tmp/ray/session_latest/logs)")


def ray_target(args: argparse.Namespace) -> RayTarget | None:
    """The Ray run the options ask for, or None (serial); bad options are a CommandError."""
    if args.workers is None and args.ray_address is None:
        if args.verbose:
            raise _command_error("--verbose shows the Ray workers' logs: it needs --workers or --ray-address")
        return None
    try:
        target = RayTarget(workers=args.workers, address=args.ray_address, verbose=args.verbose)
        # before any scene is read: a missing extra or an unreachable cluster fails at once
        import_ray()
        if target.address is not None:
            check_reachable(target.address, target.connect_timeout_s)
        return target
    except DistributedError as exc:
        raise _command_error(str(exc)) from None


def _command_error(message: str) -> Exception:
    from carlink.cli import CommandError

    return CommandError(message)


__all__ = ["add_ray_arguments", "ray_target"]
