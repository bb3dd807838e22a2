"""``carlink scene info`` and ``carlink trace info`` end to end (in-process, real files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carlink.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_scene_info_builtin_synthetic_example(capsys) -> None:
    code, out, _ = run(capsys, "scene", "info")
    assert code == 0
    assert "SYNTHETIC" in out and "not real data" in out
    assert "FRONT" in out and "480x320" in out
    code, out, _ = run(capsys, "scene", "info", "--json")
    (summary,) = json.loads(out)
    assert summary["synthetic"] is True and summary["frames"] == 3 and summary["labels"] == 36


def test_scene_info_real_files_json(capsys, waymo_frame_file: Path, tf_example_files: list[Path]) -> None:
    code, out, _ = run(capsys, "scene", "info", "--json", str(waymo_frame_file), str(tf_example_files[1]))
    assert code == 0
    waymo, tfex = json.loads(out)
    assert waymo["format"] == "waymo-frame" and waymo["frames"] == 1 and waymo["labels"] == 66
    assert waymo["cameras"]["SIDE_LEFT"]["sizes"] == [{"width": 1920, "height": 886, "images": 1}]
    assert waymo["labels_by_type"] == {"cyclist": 1, "pedestrian": 15, "vehicle": 50}
    assert waymo["time"]["first_s"] == 1553735853.462203
    assert tfex["format"] == "tf-example" and tfex["frames"] == 20 and tfex["labels"] == 836
    assert tfex["time"]["span_s"] == 19.0 and "frame index" in tfex["time"]["basis"]
    code, out, _ = run(capsys, "scene", "info", str(waymo_frame_file))
    assert code == 0 and "1920x886" in out and "corrupt records: 0" in out


def test_scene_info_corrupt_file(capsys, tmp_path: Path, waymo_frame_file: Path) -> None:
    data = bytearray(waymo_frame_file.read_bytes())
    data[5000] ^= 1
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(bytes(data))
    code, _, err = run(capsys, "scene", "info", str(bad))
    assert code == 2 and "data CRC mismatch" in err and "--skip-corrupt" in err
    code, out, _ = run(capsys, "scene", "info", "--skip-corrupt", "--json", str(bad))
    (summary,) = json.loads(out)
    assert code == 0 and summary["frames"] == 0 and len(summary["corrupt_records"]) == 1
    code, out, _ = run(capsys, "scene", "info", "--skip-corrupt", str(bad))
    assert "corrupt records skipped: 1" in out
    code, _, err = run(capsys, "scene", "info", str(tmp_path / "missing.tfrecord"))
    assert code == 2 and "missing.tfrecord" in err


def test_trace_info(capsys, bandwidth_dir: Path) -> None:
    files = [bandwidth_dir / "mahimahi/TMobile-LTE-short.up", bandwidth_dir / "nyu_mets/Car_1.csv",
             bandwidth_dir / "nuwins_5g_uplink/driving/5g/ping.list"]
    code, out, _ = run(capsys, "trace", "info", "--json", *map(str, files))
    assert code == 0
    up, car, ping = json.loads(out)
    assert up["source"].startswith("mahimahi") and round(up["p50_bps"] / 1e6, 2) == 11.24
    assert car["source"].startswith("mbps-csv") and round(car["mean_bps"] / 1e6, 2) == 13.21
    assert ping["has_capacity"] is False and ping["rtt_p50_ms"] == pytest.approx(32.2)
    code, out, _ = run(capsys, "trace", "info", *map(str, files))
    assert code == 0 and "TMobile-LTE-short.up" in out and "11.24" in out and "32.2/49.6" in out
    code, _, err = run(capsys, "trace", "info", "--format", "mahimahi", str(files[1]))
    assert code == 2 and "Car_1.csv: line 1" in err


def test_help_of_every_command(capsys) -> None:
    for argv in (["scene", "--help"], ["scene", "info", "--help"], ["trace", "--help"], ["trace", "info", "--help"]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 0
        assert "usage: carlink" in capsys.readouterr().out
