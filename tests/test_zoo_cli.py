"""`carlink models list|info|fetch`, with fetch tried against a real HTTP server on loopback."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path

import pytest

from carlink.cli import main

SMALL = "ssdlite320_mobilenet_v3_large"
SMALL_FILE = "ssdlite320_mobilenet_v3_large_coco-a79551df.pth"


@pytest.fixture()
def mirror(tmp_path: Path):
    """A loopback HTTP server over a folder: a stand-in for a fleet's weights mirror."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_list_json_reports_weights_status(tmp_path: Path, capsys) -> None:
    (tmp_path / SMALL_FILE).write_bytes(b"x")
    assert main(["models", "list", "--json", "--cache-dir", str(tmp_path)]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["hog-default"]["weights"] == "built-in"
    assert rows[SMALL]["weights"] == "present" and rows[SMALL]["path"] == str(tmp_path / SMALL_FILE)
    assert rows["retinanet_resnet50_fpn"]["weights"] == "missing"
    assert rows["noop"]["classes"] == []
    assert main(["models", "list"]) == 0
    assert "hog-daimler-accurate" in capsys.readouterr().out


def test_info_and_unknown_name(tmp_path: Path, capsys) -> None:
    assert main(["models", "info", SMALL, "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "weights missing" in out and f"carlink models fetch {SMALL}" in out
    assert main(["models", "info", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'nope'" in err and "hog-default" in err


def test_fetch_builtin_and_already_present(tmp_path: Path, capsys) -> None:
    assert main(["models", "fetch", "hog-daimler"]) == 0
    assert "nothing to fetch" in capsys.readouterr().out
    (tmp_path / SMALL_FILE).write_bytes(b"already here")
    assert main(["models", "fetch", SMALL, "--cache-dir", str(tmp_path)]) == 0
    assert "already present" in capsys.readouterr().out
    assert (tmp_path / SMALL_FILE).read_bytes() == b"already here"  # untouched


def test_fetch_failures_are_clear(tmp_path: Path, mirror, capsys) -> None:
    root, url = mirror
    cache = tmp_path / "cache"
    # 1. the mirror does not have the file
    assert main(["models", "fetch", SMALL, "--cache-dir", str(cache), "--mirror", url]) == 2
    err = capsys.readouterr().err
    assert "HTTP 404" in err and SMALL_FILE in err
    # 2. the mirror has a file of that name whose sha256 is not the official one
    (root / SMALL_FILE).write_bytes(b"tampered weights")
    assert main(["models", "fetch", SMALL, "--cache-dir", str(cache), "--mirror", url]) == 2
    err = capsys.readouterr().err
    assert "not the official file" in err
    assert not (cache / SMALL_FILE).exists()  # nothing half-written is left to be loaded later
    # 3. nothing listens there: the message says how to proceed without network
    dead = "http://127.0.0.1:9/"
    assert main(["models", "fetch", SMALL, "--cache-dir", str(cache), "--mirror", dead]) == 2
    err = capsys.readouterr().err
    assert "failed" in err and "by hand" in err


def test_help_of_every_subcommand(capsys) -> None:
    for argv in (["models", "--help"], ["models", "list", "--help"], ["models", "info", "--help"],
                 ["models", "fetch", "--help"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0
        assert "usage: carlink models" in capsys.readouterr().out
