"""Nothing silently wrong (issue 15, replay items): a warning on stderr and in summary.json when the
profile's tasks match no camera, the trace loops, the offset is past the trace's end, a scene file
is empty; a camera without labels has undefined task-frames, not zero."""

from __future__ import annotations

import json

import pytest

from carlink.cli import main
from carlink.datasets.trace_readers import load_trace
from carlink.replay.frame_utility import ProfileUtilities
from carlink.replay.player import load_playlist
from carlink.replay.profile_view import load_replay_profile
from carlink.replay.runner import ReplayConfig, run_virtual

from replay_testkit import frame_ids, per_frame_profile


@pytest.fixture(scope="module")
def att2016(bandwidth_dir):
    return bandwidth_dir / "mahimahi" / "ATT-LTE-driving-2016.up"  # 120 s


def _replay(tmp_path, args, capsys):
    out = tmp_path / "o"
    code = main(["replay", *args, "--utilities", "profile", "-o", str(out), "--no-progress", "--no-report"])
    printed = capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text()) if code == 0 else None
    return code, printed, summary


def test_profile_tasks_matching_no_camera_are_warned(tmp_path, tf_example_files, att2016, capsys):
    side = per_frame_profile(tmp_path / "side.json", frame_ids(tf_example_files[:1]), cameras=("SIDE_LEFT",))
    code, printed, summary = _replay(tmp_path, [str(tf_example_files[0]), "--trace", str(att2016),
                                                "--profile", str(side), "--policies", "carlink,on-car"], capsys)
    assert code == 0
    w = [x for x in summary["inputs"]["warnings"] if "matches a camera" in x]
    assert w and "SIDE_LEFT" in w[0] and "FRONT" in w[0]
    assert "carlink replay: warning: no task of profile" in printed.err
    assert summary["policies"]["carlink"]["task_frames"] == 0


def test_trace_shorter_than_the_replay_loops_with_a_warning(tmp_path, tf_example_files, att2016, capsys):
    # Two 20 s sequences one after the other: 40 s from offset 100 s of a 120 s trace.
    code, printed, summary = _replay(tmp_path, [str(tf_example_files[0]), str(tf_example_files[1]), "--trace",
                                                str(att2016), "--trace-offset", "100", "--policies", "on-car"], capsys)
    assert code == 0
    assert any("is shorter than the replay" in w and "loops" in w for w in summary["inputs"]["warnings"])
    assert "it loops" in printed.err


def test_offset_past_the_end_is_warned(tmp_path, tf_example_files, att2016, capsys):
    code, printed, summary = _replay(tmp_path, [str(tf_example_files[0]), "--trace", str(att2016),
                                                "--trace-offset", "500", "--policies", "on-car"], capsys)
    assert code == 0
    w = [x for x in summary["inputs"]["warnings"] if "past the end" in x]
    assert w and "500 s" in w[0] and "120.002 s" in w[0] and "starts 19.992 s into it" in w[0]
    assert "past the end" in printed.err
    # Within the trace and short enough: no trace warning.
    code, printed, summary = _replay(tmp_path, [str(tf_example_files[0]), "--trace", str(att2016),
                                                "--policies", "on-car"], capsys)
    assert not any("trace" in w for w in summary["inputs"]["warnings"])


def test_empty_scene_file_is_skipped_with_a_warning(tmp_path, tf_example_files, att2016, capsys):
    empty = tmp_path / "empty.tfrecord"
    empty.write_bytes(b"")
    code, printed, summary = _replay(tmp_path, [str(empty), str(tf_example_files[0]), "--trace", str(att2016),
                                                "--policies", "on-car"], capsys)
    assert code == 0
    assert any("empty.tfrecord is empty" in w for w in summary["inputs"]["warnings"])
    assert "empty.tfrecord is empty" in printed.err
    # Nothing but empty files: an error, not an empty summary.
    code, printed, _ = _replay(tmp_path, [str(empty), "--trace", str(att2016)], capsys)
    assert code == 2 and "carlink: error: scenes: no frames in" in printed.err


def test_camera_without_labels_is_undefined_not_zero(tmp_path, tf_example_files, att2016):
    """A profile task on a camera the scene has but never labels: its task-frames are None (left out
    of every mean), while a labelled camera's are defined."""
    # The sequences label vehicles only on some frames; a task evaluated on cyclists finds none.
    doc_path = per_frame_profile(tmp_path / "p.json", ["unused#0"], cameras=("FRONT",))
    doc = json.loads(doc_path.read_text())
    doc["tasks"][0]["classes"] = ["cyclist"]
    doc_path.write_text(json.dumps(doc))
    profile = load_replay_profile(doc_path)
    pl = load_playlist([tf_example_files[0]])  # 214 vehicle labels, no cyclist
    res = run_virtual(pl.frames, profile, load_trace(att2016), ProfileUtilities(profile),
                      ReplayConfig(policies=("carlink", "on-car")))
    assert all(r.utility is None for r in res.runs["on-car"].tasks)
    assert res.summary["on-car"].mean_utility is None and res.summary["on-car"].task_frames_evaluated == 0
    assert any("has no label of the classes cyclist" in w and "undefined" in w for w in res.inputs["warnings"])
    # The same task on vehicles: defined (the aggregate, for frames the profile never measured).
    doc["tasks"][0]["classes"] = ["vehicle"]
    doc_path.write_text(json.dumps(doc))
    profile = load_replay_profile(doc_path)
    res = run_virtual(pl.frames, profile, load_trace(att2016), ProfileUtilities(profile),
                      ReplayConfig(policies=("on-car",)))
    labelled = sum(1 for f in pl.frames if f.frame.labels.get(next(iter(f.frame.labels))))
    assert res.summary["on-car"].task_frames_evaluated == labelled > 0
