"""--truth: what really happens on evaluation frames comes from a per-frame measurement file, while
the car plans with --profile; a truth file that lacks frames is refused by name; overlap with the
planning profile's frames is warned about."""

from __future__ import annotations

import json

import pytest

from carlink.cli import main
from carlink.datasets.trace_readers import load_trace
from carlink.replay.compose import compose_playlist
from carlink.replay.frame_utility import TruthError, TruthUtilities
from carlink.replay.profile_view import load_replay_profile
from carlink.replay.runner import ReplayConfig, run_virtual

from replay_testkit import frame_ids, frame_value, on_car_value, per_frame_profile


@pytest.fixture(scope="module")
def mahimahi(bandwidth_dir):
    return bandwidth_dir / "mahimahi" / "TMobile-LTE-short.up"


@pytest.fixture()
def setup(tmp_path, tf_example_files):
    """Planning profile measured on sequences 0-2, truth measured on sequences 3-5 (the replayed ones)."""
    plan = per_frame_profile(tmp_path / "plan.json", frame_ids(tf_example_files[:3]), description="planning")
    truth = per_frame_profile(tmp_path / "truth.json", frame_ids(tf_example_files[3:6]), description="truth")
    return plan, truth, tf_example_files[3:6]


def test_realised_utilities_are_the_truth_files(setup, mahimahi):
    plan, truth, files = setup
    profile, truth_p = load_replay_profile(plan), load_replay_profile(truth)
    pl = compose_playlist([files], rate_hz=10.0)
    trace = load_trace(mahimahi)
    res = run_virtual(pl.frames, profile, trace, TruthUtilities(truth_p),
                      ReplayConfig(policies=("carlink", "on-car", "oracle")))
    by_index = {pf.index: pf for pf in pl.frames}
    checked = 0
    for name in ("carlink", "on-car", "oracle"):
        for r in res.runs[name].tasks:
            fid = by_index[r.frame].source_id(r.task)
            want = on_car_value(fid) if r.source == "on-car" else frame_value(fid, r.option)
            assert r.utility == pytest.approx(want)
            checked += 1
    assert checked == 3 * 20 * 3
    # Nothing of the planning profile's frames is replayed: no overlap warning.
    assert not any("was measured on" in w for w in res.inputs["warnings"])


def test_truth_lacking_frames_is_refused_naming_them(tmp_path, setup, tf_example_files, mahimahi, capsys):
    plan, _, files = setup
    partial = per_frame_profile(tmp_path / "partial.json", frame_ids(files[:2]))  # lacks files[2]
    missing = frame_ids(files[2:3])
    code = main(["replay", "--compose", ",".join(map(str, files)), "--rate-hz", "10", "--trace", str(mahimahi),
                 "--profile", str(plan), "--truth", str(partial), "-o", str(tmp_path / "o"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("carlink: error: --truth: truth profile") and "lacks 20 frames" in err
    assert missing[0] in err or sorted(missing)[0] in err
    with pytest.raises(TruthError, match="partial.json"):
        TruthUtilities(load_replay_profile(partial)).check(compose_playlist([files]).frames,
                                                           load_replay_profile(plan).tasks)


def test_truth_missing_an_option_is_refused(tmp_path, setup, mahimahi):
    plan, truth, files = setup
    doc = json.loads(truth.read_text())
    for t in doc["tasks"]:
        t["options"] = t["options"][:1]  # no "large"
    truth.write_text(json.dumps(doc))
    with pytest.raises(TruthError, match="FRONT/large"):
        TruthUtilities(load_replay_profile(truth)).check(compose_playlist([files]).frames,
                                                         load_replay_profile(plan).tasks)


def test_cli_truth_summary_and_overlap_warning(tmp_path, setup, tf_example_files, mahimahi, capsys):
    plan, truth, files = setup
    out = tmp_path / "o"
    code = main(["replay", "--compose", ",".join(map(str, files)), "--rate-hz", "10", "--trace", str(mahimahi),
                 "--profile", str(plan), "--truth", str(truth), "--policies", "carlink,on-car",
                 "-o", str(out), "--no-progress", "--no-report"])
    assert code == 0
    printed = capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"]["utilities"] == "truth" and summary["inputs"]["truth"] == str(truth)
    assert summary["inputs"]["profile"] == str(plan)  # planning still uses --profile
    assert "per-frame truth from" in printed.out
    # Three sequences: three cameras; the other two tasks are said not to be evaluated.
    assert summary["inputs"]["warnings"] == [
        f"task {cam}: the scene has no {cam} camera; the task is not evaluated" for cam in ("SIDE_LEFT", "SIDE_RIGHT")]
    # Replaying the planning profile's own frames: warned in stderr and in summary.json.
    both = per_frame_profile(tmp_path / "both.json", frame_ids(tf_example_files[:6]))
    code = main(["replay", "--compose", ",".join(map(str, tf_example_files[:3])), "--trace", str(mahimahi),
                 "--profile", str(plan), "--truth", str(both), "--policies", "on-car", "-o", str(out),
                 "--no-progress", "--no-report"])
    assert code == 0
    warnings = json.loads((out / "summary.json").read_text())["inputs"]["warnings"]
    assert any("was measured on 60 of the replayed images" in w and "not an evaluation" in w for w in warnings)
    assert "warning: the planning profile" in capsys.readouterr().err


def test_truth_refuses_measured_and_wall(tmp_path, setup, mahimahi, capsys):
    plan, truth, files = setup
    for extra in (["--utilities", "measured"], ["--clock", "wall"]):
        code = main(["replay", str(files[0]), "--trace", str(mahimahi), "--profile", str(plan), "--truth", str(truth),
                     *extra, "-o", str(tmp_path), "--no-progress"])
        assert code == 2 and "--truth" in capsys.readouterr().err
