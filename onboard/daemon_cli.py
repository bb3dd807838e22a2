"""``carlink onboard run`` and ``carlink onboard check-config``.

The lead wires :func:`register_run` into onboard/cli.py (the ``onboard`` command group); until
then ``python -m carlink.onboard.daemon_cli run --config FILE`` works the same.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from carlink.cli import CommandError
from carlink.logs import configure_text_logging


def register_run(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``run`` and ``check-config`` to the ``onboard`` group's sub-parsers."""
    r = sub.add_parser(
        "run", help="run the onboard daemon (systemd Type=notify service)",
        description="Run the car's perception uplink: per frame, the on-car model for every task, "
                    "a bandwidth-aware allocation, uploads to the cloud with per-task deadlines, and "
                    "the fused result (cloud when in time, else on-car) as JSON lines. "
                    "SIGHUP reloads config and profile; SIGTERM stops within 2 s. Under systemd it "
                    "sends READY/STATUS/WATCHDOG over $NOTIFY_SOCKET (see onboard/carlink-onboard.service).",
    )
    r.add_argument("--config", required=True, metavar="FILE", help="TOML config (see onboard/example.toml)")
    r.add_argument("--log-json", action="store_true",
                   help="structured logs: one JSON object per line on stderr (for journald/log shippers)")
    r.set_defaults(func=_run)
    c = sub.add_parser(
        "check-config", help="validate a daemon config and its profile, then exit",
        description="Load the TOML config and the profile it names and check what `run` would refuse: "
                    "every task has a camera and an on-car model the zoo knows with its files, the "
                    "device exists, the frame source reads (each file to its first good record: a "
                    "file that is not a TFRecord is refused), the sink can be written, the cloud's "
                    "token, certificate and key files are sound; warn of tasks whose camera the "
                    "source lacks. Print the resolved tasks. Exit 2 with a message naming the key on "
                    "any problem.",
    )
    c.add_argument("config", metavar="FILE", help="TOML config to check")
    c.add_argument("--json", action="store_true", help="print the resolved config as JSON")
    c.set_defaults(func=_check)


def _run(args: argparse.Namespace) -> int:
    from carlink.onboard.daemon import DaemonError, OnboardDaemon, StartupError

    if getattr(args, "log_json", False):
        from carlink.logs import configure_json_logging

        configure_json_logging()  # every logger's records, at the --log-level threshold

    daemon = OnboardDaemon(args.config)
    daemon.install_signal_handlers()
    try:
        rc = daemon.run()
    except StartupError as exc:
        raise CommandError(str(exc)) from None
    except DaemonError as exc:  # it ran and shut down; what it could not do is the exit code's
        print(f"carlink: error: {exc}", file=sys.stderr)
        rc = 2
    # Everything is flushed and closed; the interpreter's own teardown (torch, cvxpy, gRPC
    # modules) can take seconds on a loaded CPU, which would break the 2 s SIGTERM promise.
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # stdout was the sink and its reader is gone: already reported
            pass
    os._exit(rc)


def _check(args: argparse.Namespace) -> int:
    from carlink.onboard.config import ConfigError, load_config
    from carlink.onboard.planning import ProfileError, load_onboard_tasks

    from carlink.zoo.registry import ZooError, check_model_files, get_spec

    try:
        cfg = load_config(args.config)
        tasks = load_onboard_tasks(cfg.profile_path, cfg.tasks)
        for i, t in enumerate(tasks):
            try:
                get_spec(t.on_car.model)
                check_model_files(t.on_car.model)  # missing or bad model files: what `run` would refuse
            except (KeyError, ZooError) as exc:
                raise ConfigError(f"task {t.name!r}: on-car model: {exc}") from None
    except (ConfigError, ProfileError) as exc:
        raise CommandError(str(exc)) from None
    from carlink.onboard.daemon import StartupError, preflight

    try:
        warnings = preflight(cfg, tasks, args.config)
    except StartupError as exc:
        raise CommandError(str(exc)) from None
    for warning in warnings:
        print(f"carlink: warning: {args.config}: {warning}", file=sys.stderr)
    if args.json:
        out = cfg.model_dump(mode="json")
        out["resolved_tasks"] = [
            {"name": t.name, "camera": t.camera, "onboard_model": t.on_car.model,
             "deadline_ms": t.deadline_ms, "weight": t.weight, "options": len(t.options)}
            for t in tasks
        ]
        print(json.dumps(out, indent=2))
    else:
        print(f"{args.config}: OK; profile {cfg.profile_path}; cloud {cfg.cloud.address}; source {cfg.source.kind}")
        for t in tasks:
            print(f"  task {t.name}: camera {t.camera}, on-car {t.on_car.model}, deadline {t.deadline_ms:g} ms, "
                  f"weight {t.weight:g}, {len(t.options)} options")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="carlink onboard", description="the onboard daemon")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    register_run(sub)
    args = parser.parse_args(argv)
    configure_text_logging(getattr(logging, args.log_level))
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"carlink: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
