"""The ``carlink`` command line.

Subcommands come from the ``carlink.commands`` entry-point group: each top-level folder registers
its own (``carlink.datasets.cli:register`` adds ``scene`` and ``trace``, and so on). This keeps
carlink/ free of imports of the folders above it in the dependency order (see DESIGN.md).
A register function receives the argparse sub-parsers object and adds parsers whose defaults
carry ``func``: a callable taking the parsed namespace and returning an exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points
from typing import Callable, Sequence

from carlink import __version__
from carlink.extras import MissingExtraError
from carlink.logs import configure_text_logging

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


class CommandError(Exception):
    """A user-facing failure: printed as ``carlink: error: <message>`` with exit code 2."""


def _builtin_registers() -> list[Register]:
    from carlink.zoo_cli import register as register_models

    return [register_models]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carlink",
        description="Cloud-augmented perception for autonomous vehicles over a scarce uplink.",
    )
    parser.add_argument("--version", action="version", version=f"carlink {__version__}")
    parser.add_argument(
        "--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging threshold for messages on stderr (default: WARNING)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _builtin_registers():
        register(sub)
    for ep in sorted(entry_points(group="carlink.commands"), key=lambda e: e.name):
        try:
            ep.load()(sub)
        except Exception as exc:  # a broken group must not take the other commands down: say so
            print(f"carlink: warning: the {ep.name} commands are unavailable: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_text_logging(getattr(logging, args.log_level))
    func = getattr(args, "func", None)
    if func is None:
        # A command group given without its sub-command prints that group's help.
        (getattr(args, "parser", None) or parser).print_help()
        return 0 if args.command is None else 2
    try:
        return int(func(args) or 0)
    except (CommandError, MissingExtraError) as exc:  # the latter names the extra to install
        print(f"carlink: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("carlink: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Run through the imported module, not this __main__ copy: commands raise
    # carlink.cli.CommandError, which must be the class main() catches.
    from carlink.cli import main as _main

    sys.exit(_main())
