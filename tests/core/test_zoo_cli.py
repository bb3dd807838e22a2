"""`carlink models list|info|fetch`, with fetch tried against a real HTTP server on loopback."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
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
    # 0. a plain-http mirror is refused unless allowed explicitly
    assert main(["models", "fetch", SMALL, "--cache-dir", str(cache), "--mirror", url]) == 2
    assert "refusing plain-HTTP" in capsys.readouterr().err and not cache.exists()
    # 1. the mirror does not have the file
    assert main(["models", "fetch", SMALL, "--cache-dir", str(cache), "--mirror", url, "--allow-http"]) == 2
    err = capsys.readouterr().err
    assert "HTTP 404" in err and SMALL_FILE in err
    # 2. the mirror has a file of that name whose sha256 is not the official one
    (root / SMALL_FILE).write_bytes(b"tampered weights")
    assert main(["models", "fetch", SMALL, "--cache-dir", str(cache), "--mirror", url, "--allow-http"]) == 2
    err = capsys.readouterr().err
    assert "not the official file" in err
    assert not (cache / SMALL_FILE).exists()  # nothing half-written is left to be loaded later
    # 3. nothing listens there: the message says how to proceed without network
    dead = "http://127.0.0.1:9/"
    assert main(["models", "fetch", SMALL, "--cache-dir", str(cache), "--mirror", dead, "--allow-http"]) == 2
    err = capsys.readouterr().err
    assert "failed" in err and "by hand" in err


def test_help_of_every_subcommand(capsys) -> None:
    for argv in (["models", "--help"], ["models", "list", "--help"], ["models", "info", "--help"],
                 ["models", "fetch", "--help"], ["models", "bench", "--help"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0
        assert "usage: carlink models" in capsys.readouterr().out


# -- the Darknet family ------------------------------------------------------------------------

NANO = "mobilenetv2-yolov3-nano"
NANO_FILES = ("MobileNetV2-YOLOv3-Nano-coco.cfg", "MobileNetV2-YOLOv3-Nano-coco.weights", "coco.names", "LICENSE")


def test_list_shows_darknet_variants_and_where(models_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["models", "list", "--json", "--models-dir", str(models_dir)]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["yolo-fastest-1.1-320x320"]["weights"] == "present"
    assert rows["yolo-fastest-1.1-xl-960x640"]["path"] == str(models_dir / "yolo-fastest-1.1-xl")
    assert rows["yolo-fastest-1.1-320x320"]["classes"] == ["vehicle", "pedestrian", "cyclist"]
    empty = tmp_path / "empty"
    assert main(["models", "list", "--json", "--models-dir", str(empty)]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["yolo-fastest-1.1-320x320"]["weights"] == "missing"
    # the table says which directory, and from which rule (here: conftest's CARLINK_MODELS_DIR)
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert f"models directory: {models_dir} (CARLINK_MODELS_DIR)" in out and "mobilenetv2-yolov3-nano-960x640" in out
    # a bad file shows as bad, with the reason
    shutil.copytree(models_dir / NANO, tmp_path / "bad" / NANO)
    weights = tmp_path / "bad" / NANO / NANO_FILES[1]
    weights.chmod(0o644)
    weights.write_bytes(weights.read_bytes()[:1000])
    assert main(["models", "info", f"{NANO}-320x320", "--json", "--models-dir", str(tmp_path / "bad")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["weights"] == "bad" and "expected 3564300" in info["problem"]


def test_fetch_darknet_from_a_mirror(models_dir: Path, tmp_path: Path, mirror, capsys) -> None:
    root, url = mirror
    shutil.copytree(models_dir / NANO, root / NANO)
    dest = tmp_path / "models"
    # plain http is refused unless asked for explicitly
    assert main(["models", "fetch", f"{NANO}-416x416", "--models-dir", str(dest), "--mirror", url]) == 2
    assert "refusing plain-HTTP URL" in capsys.readouterr().err and not dest.exists()
    assert main(["models", "fetch", f"{NANO}-416x416", "--models-dir", str(dest), "--mirror", url,
                 "--allow-http"]) == 0
    out = capsys.readouterr().out
    for name in NANO_FILES:
        assert (dest / NANO / name).read_bytes() == (models_dir / NANO / name).read_bytes()
        assert f"{url}{NANO}/{name}" in out
    assert [p.name for p in dest.iterdir()] == [NANO]  # no staging folder left behind
    # the fetched files load, and a second fetch keeps them
    from carlink.zoo.registry import get_model

    assert get_model(f"{NANO}-416x416", models_dir=dest, device="cpu").name == f"{NANO}-416x416"
    assert main(["models", "fetch", NANO, "--models-dir", str(dest), "--mirror", url, "--allow-http"]) == 0
    assert capsys.readouterr().out.count("already present") == 4


def test_fetch_darknet_refuses_a_tampered_file(models_dir: Path, tmp_path: Path, mirror, capsys) -> None:
    root, url = mirror
    shutil.copytree(models_dir / NANO, root / NANO)
    tampered = root / NANO / NANO_FILES[1]
    tampered.chmod(0o644)
    data = bytearray(tampered.read_bytes())
    data[-1] ^= 1  # same size, one bit off: only the full sha256 sees it
    tampered.write_bytes(bytes(data))
    dest = tmp_path / "models"
    assert main(["models", "fetch", NANO, "--models-dir", str(dest), "--mirror", url, "--allow-http"]) == 2
    err = capsys.readouterr().err
    assert "carlink: error: mobilenetv2-yolov3-nano: " in err and "is not the official file's 60a6c2a8" in err
    assert list(dest.iterdir()) == []  # nothing installed, no partial file
    # a mirror without the files: the HTTP status and the URL
    assert main(["models", "fetch", "yolo-fastest-1.1", "--models-dir", str(dest), "--mirror", url,
                 "--allow-http"]) == 2
    err = capsys.readouterr().err
    assert "HTTP 404" in err and f"{url}yolo-fastest-1.1/" in err
    # the default source is the authors' repository at the pinned commit, over https
    from carlink.zoo.darknet import NETWORKS

    assert NETWORKS[NANO].source_url(NANO_FILES[1]) == (
        "https://raw.githubusercontent.com/dog-qiuqiu/MobileNet-Yolo/86c05bfc4e508d54a459a469faecc35a113454c1/"
        "MobileNetV2-YOLOv3-Nano/COCO/MobileNetV2-YOLOv3-Nano-coco.weights")


def test_bench_writes_the_profilers_runtime_table(models_dir: Path, tmp_path: Path, capsys) -> None:
    out_csv = tmp_path / "runtime.csv"
    assert main(["models", "bench", "yolo-fastest-1.1-320x320", "--backend", "opencv", "--batch", "1,2",
                 "--threads", "1", "--iterations", "2", "-o", str(out_csv)]) == 0
    out = capsys.readouterr().out
    assert "yolo-fastest-1.1-320x320" in out and "1 thread" in out
    lines = out_csv.read_text().splitlines()
    assert lines[0] == "model,resize,runtime_ms_p50,runtime_ms_p99,batch,backend,device,hardware"
    rows = [line.split(",") for line in lines[1:]]
    assert [(r[0], r[1], r[4], r[5], r[6]) for r in rows] == [
        ("yolo-fastest-1.1-320x320", "*", "1", "opencv", "cpu"), ("yolo-fastest-1.1-320x320", "*", "2", "opencv", "cpu")]
    assert all(0 < float(r[2]) <= float(r[3]) for r in rows)
    assert main(["models", "bench", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert main(["models", "bench", "hog-default", "--backend", "torch", "--iterations", "1"]) == 2
    assert "has no backend 'torch'" in capsys.readouterr().err
