"""The ``carlink`` entry point: every command and sub-command answers --help."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from carlink.cli import build_parser, main


def _all_command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths.append(prefix + (name,))
                paths.extend(_all_command_paths(sub, prefix + (name,)))
    return paths


def test_every_command_has_help(capsys) -> None:
    paths = _all_command_paths(build_parser())
    assert ("models",) in paths
    for path in paths:
        try:
            main([*path, "--help"])
        except SystemExit as exc:
            assert exc.code == 0, path
        out = capsys.readouterr().out
        assert "usage: carlink " + " ".join(path) in " ".join(out.split()), path


def test_console_script_is_installed() -> None:
    res = subprocess.run([sys.executable, "-m", "carlink.cli", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("carlink ")


def test_unknown_command_is_an_error(capsys) -> None:
    try:
        main(["no-such-command"])
    except SystemExit as exc:
        assert exc.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_a_command_group_that_fails_to_import_is_reported(monkeypatch, capsys) -> None:
    # `carlink profile` is registered by the replay group; an import failure there must surface.
    monkeypatch.setitem(sys.modules, "carlink.replay.profile_cli", None)  # makes the import fail
    parser = build_parser()
    err = capsys.readouterr().err
    assert "carlink: warning: the replay commands are unavailable" in err and "profile_cli" in err
    with pytest.raises(SystemExit):
        parser.parse_args(["replay", "--help"])
