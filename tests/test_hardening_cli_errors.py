"""Issue 15, part 4: `carlink replay` and `carlink profile run` on a file that is not a TFRecord,
on a corrupt one and on a folder end with `carlink: error: ...` naming it, exit code 2, no
traceback. Real processes; the corrupt file is real records written with datasets/tfrecord.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from carlink.datasets.tfrecord import FOOTER_BYTES, HEADER_BYTES, TFRecordReader, TFRecordWriter


def _scenes(tmp_path: Path, source: Path) -> dict[str, tuple[Path, str]]:
    text = tmp_path / "notes.tfrecord"
    text.write_text("frame,time\n" * 100)
    records = [r.data for r in TFRecordReader(source)][:3]
    corrupt = tmp_path / "corrupt.tfrecord"
    with TFRecordWriter(corrupt) as w:
        for r in records:
            w.write(r)
    data = bytearray(corrupt.read_bytes())
    offset = HEADER_BYTES + len(records[0]) + FOOTER_BYTES  # record 1
    data[offset + HEADER_BYTES + 10] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    folder = tmp_path / "scenes"
    folder.mkdir()
    return {
        "not a TFRecord": (text, f"{text}: record 0 at byte offset 0: not a TFRecord file"),
        "corrupt": (corrupt, f"{corrupt}: record 1 at byte offset {offset}: data CRC mismatch"),
        "folder": (folder, f"scene file {folder} is not a file"),
    }


@pytest.mark.parametrize("case", ["not a TFRecord", "corrupt", "folder"])
@pytest.mark.parametrize("command", ["replay", "profile run"])
def test_bad_scene_files_are_named(tmp_path, tf_example_files, command, case):
    scene, problem = _scenes(tmp_path, tf_example_files[0])[case]
    args = (["replay", str(scene), "--no-progress", "--no-report", "-o", str(tmp_path / "out")] if command == "replay"
            else ["profile", "run", str(scene), "-o", str(tmp_path / "p.json"), "--no-progress"])
    proc = subprocess.run([sys.executable, "-m", "carlink.cli", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("carlink: error:") and problem in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
