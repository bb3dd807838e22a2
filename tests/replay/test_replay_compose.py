"""Five-camera cars composed from the real 1 Hz FRONT sequences: lockstep frames, each image with its
own labels and its own frame id, the rate, differing lengths, and what the outputs say."""

from __future__ import annotations

import json

import pytest

from carlink.cli import main
from carlink.datasets.frames import CameraName
from carlink.datasets.scene import read_frames
from carlink.replay.compose import CAR_CAMERAS, COMPOSED_LABEL, compose_playlist
from carlink.replay.frame_utility import ProfileUtilities
from carlink.replay.player import PlayerError
from carlink.replay.profile_view import load_replay_profile

from replay_testkit import frame_ids, frame_value, on_car_value, per_frame_profile, truncated_copy


@pytest.fixture(scope="module")
def five(tf_example_files):
    return tf_example_files[:5]


def test_sequences_play_in_lockstep_as_the_five_cameras(five):
    pl = compose_playlist([five], rate_hz=10.0)
    sources = [list(read_frames(p)) for p in five]
    assert len(pl.frames) == 20 and pl.composed and pl.rate_hz == 10.0
    for k, pf in enumerate(pl.frames):
        assert pf.t == pytest.approx(k / 10.0)  # frame k of every sequence at the same instant
        assert pf.cameras() == {c.name for c in CAR_CAMERAS}
        for slot, src in zip(CAR_CAMERAS, sources):
            frame = src[k]
            assert pf.frame.image(slot).data == frame.image(CameraName.FRONT).data  # its own real image
            assert pf.frame.labels[slot] == frame.labels[CameraName.FRONT]  # its own labels, re-keyed
            assert pf.source_id(slot.name) == frame.stable_id  # its own frame id
    assert pl.frames[0].frame_id != pl.frames[1].frame_id


def test_fewer_files_fewer_cameras_and_native_rate(five):
    pl = compose_playlist([five[:2]])
    assert pl.frames[0].cameras() == {"FRONT", "FRONT_LEFT"}
    # Without --rate-hz the sequences keep their own 1 Hz spacing.
    assert pl.frames[1].t - pl.frames[0].t == pytest.approx(1.0)
    assert "1 car of 2 cameras" in pl.description and "1 Hz" in pl.description


def test_several_compositions_play_one_after_the_other(tf_example_files):
    a, b = tf_example_files[:3], tf_example_files[3:6]
    pl = compose_playlist([a, b], rate_hz=10.0)
    assert len(pl.frames) == 40
    assert pl.frames[20].scene == 1 and pl.frames[20].t == pytest.approx(1.9 + 1.0)
    assert pl.description == (f"{COMPOSED_LABEL}: 2 cars of 3 cameras, played at 10 Hz "
                              "(recorded at 1 Hz: time compressed 10x)")


def test_different_lengths_play_to_the_shortest_and_say_so(tmp_path, five):
    short = truncated_copy(five[2], tmp_path / "short.tfrecord", 12)
    pl = compose_playlist([[five[0], five[1], short]], rate_hz=10.0)
    assert len(pl.frames) == 12
    assert any("differ in length" in w and "12 frames" in w and "short.tfrecord: 12" in w for w in pl.warnings)


def test_bad_compositions_are_refused_by_name(tmp_path, tf_example_files):
    with pytest.raises(PlayerError, match="at most 5 cameras"):
        compose_playlist([tf_example_files[:6]])
    empty = tmp_path / "empty.tfrecord"
    empty.write_bytes(b"")
    with pytest.raises(PlayerError, match="empty.tfrecord is empty"):
        compose_playlist([[tf_example_files[0], empty]])
    with pytest.raises(PlayerError, match="nope.tfrecord does not exist"):
        compose_playlist([[tf_example_files[0], tmp_path / "nope.tfrecord"]])


def test_per_frame_values_follow_the_image_not_the_slot(tmp_path, tf_example_files):
    """A profile measured once on the sequences serves any composition: the utility and payload of
    an image in the FRONT_LEFT slot are those measured for that image, here by the FRONT task only."""
    files = tf_example_files[:2]
    ids0, ids1 = frame_ids(files[:1]), frame_ids(files[1:])
    path = per_frame_profile(tmp_path / "p.json", ids0 + ids1, cameras=("FRONT", "FRONT_LEFT"),
                             frames_by_camera={"FRONT_LEFT": ids1})
    profile = load_replay_profile(path)
    source = ProfileUtilities(profile)
    pl = compose_playlist([[files[1], files[0]]], rate_hz=10.0)  # sequence 0 plays FRONT_LEFT
    task = next(t for t in profile.tasks if t.name == "FRONT_LEFT")  # it never measured sequence 0
    for pf in pl.frames:
        fid = pf.source_id("FRONT_LEFT")
        assert fid in ids0
        assert source.utility(pf, task, task.options[0]) == pytest.approx(on_car_value(fid))
        for o in task.options[1:]:
            assert source.utility(pf, task, o) == pytest.approx(frame_value(fid, o.id))
            assert source.payload(pf, task, o) != round(o.payload_bytes_mean)


def test_cli_says_composed_and_names_the_rate(tmp_path, five, bandwidth_dir, capsys):
    out = tmp_path / "out"
    trace = bandwidth_dir / "mahimahi" / "TMobile-LTE-short.up"
    profile = per_frame_profile(tmp_path / "p.json", frame_ids(five))
    code = main(["replay", "--compose", ",".join(map(str, five)), "--rate-hz", "10", "--trace", str(trace),
                 "--profile", str(profile), "--utilities", "profile", "--policies", "carlink,on-car,oracle",
                 "-o", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr()
    assert "composed from real sequences" in printed.out and "10 Hz" in printed.out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"]["scenes"].startswith(COMPOSED_LABEL) and summary["inputs"]["rate_hz"] == 10
    assert summary["inputs"]["scene_files"] == [[str(p) for p in five]]
    assert summary["policies"]["carlink"]["task_frames"] == 100  # 20 frames x 5 cameras
    assert COMPOSED_LABEL in (out / "report.html").read_text()
    # The planning profile was measured on these very images: the replay says so.
    assert any("was measured on 100 of the replayed images" in w for w in summary["inputs"]["warnings"])
    assert "warning: the planning profile" in printed.err


def test_cli_rejects_compose_with_scene_files(tmp_path, five, capsys):
    assert main(["replay", str(five[0]), "--compose", f"{five[1]},{five[2]}", "-o", str(tmp_path),
                 "--no-progress"]) == 2
    assert "carlink: error: give scene files or --compose, not both" in capsys.readouterr().err
