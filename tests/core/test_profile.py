"""Profile schema: the shipped example loads; bad files fail naming file, key, task and option."""

from __future__ import annotations

import copy
import json

import pytest

from carlink.profile import EXAMPLE_PROFILE, ProfileError, load_profile, parse_profile


@pytest.fixture
def example() -> dict:
    return json.loads(EXAMPLE_PROFILE.read_text())


def test_example_profile_loads_and_converts():
    profile = load_profile()  # the shipped example
    assert profile.version == 1 and "ILLUSTRATIVE" in profile.description
    tasks = profile.to_tasks()
    assert [t.name for t in tasks] == ["FRONT", "FRONT_LEFT", "FRONT_RIGHT", "SIDE_LEFT", "SIDE_RIGHT"]
    for task, tp in zip(tasks, profile.tasks):
        assert task.on_car.on_car and task.on_car.payload_bytes == 0
        assert len(task.options) == len(tp.options) + 1
        # conservative statistics by default, the means on request
        assert task.options[1].payload_bytes == tp.options[0].payload_bytes_p95
    mean = profile.to_tasks(payload="mean", runtime="p50")
    assert mean[0].options[1].payload_bytes == profile.tasks[0].options[0].payload_bytes_mean
    assert mean[0].options[1].runtime_ms == profile.tasks[0].options[0].runtime_ms_p50


def test_round_trip(example, tmp_path):
    profile = parse_profile(example)
    path = tmp_path / "p.json"
    path.write_text(profile.to_json())
    assert load_profile(path) == profile


def _error(raw) -> str:
    with pytest.raises(ProfileError) as info:
        parse_profile(raw, "p.json")
    return str(info.value)


def test_errors_name_task_option_and_key(example):
    bad = copy.deepcopy(example)
    bad["tasks"][3]["options"][1]["payload_bytes_mean"] = -5
    msg = _error(bad)
    assert "p.json" in msg and "tasks[3] 'SIDE_LEFT'" in msg and "options[1]" in msg
    assert bad["tasks"][3]["options"][1]["id"] in msg and "payload_bytes_mean" in msg


def test_missing_key_unknown_key_and_codec_rules(example):
    bad = copy.deepcopy(example)
    del bad["tasks"][0]["deadline_ms"]
    assert "tasks[0] 'FRONT'.deadline_ms: required key is missing" in _error(bad)
    bad = copy.deepcopy(example)
    bad["tasks"][0]["options"][0]["payload_byte_mean"] = 1
    assert "payload_byte_mean" in _error(bad)
    bad = copy.deepcopy(example)
    del bad["tasks"][1]["options"][2]["jpeg_quality"]
    assert "needs jpeg_quality" in _error(bad)
    bad = copy.deepcopy(example)
    bad["tasks"][1]["options"][2]["codec"] = "png"
    assert "only allowed with codec 'jpeg'" in _error(bad)


def test_utility_range_and_duplicates_checked_at_load(example):
    bad = copy.deepcopy(example)
    bad["tasks"][2]["options"][0]["utility"] = 1.7
    msg = _error(bad)
    assert "task 'FRONT_RIGHT'" in msg and "outside" in msg
    bad["tasks"][2]["utility_range"] = [0, 2]
    parse_profile(bad)  # declared range: fine
    dup = copy.deepcopy(example)
    dup["tasks"][4]["options"][1]["id"] = dup["tasks"][4]["options"][0]["id"]
    assert "duplicate option id" in _error(dup)


def test_version_nan_and_bad_json(example, tmp_path):
    bad = copy.deepcopy(example)
    bad["version"] = 3
    assert "version 3 is not supported" in _error(bad)
    path = tmp_path / "nan.json"
    path.write_text(EXAMPLE_PROFILE.read_text().replace('"utility": 0.5', '"utility": NaN', 1))
    with pytest.raises(ProfileError, match="NaN is not allowed"):
        load_profile(path)
    path.write_text("{ not json")
    with pytest.raises(ProfileError, match="not valid JSON at line 1"):
        load_profile(path)


def test_classes_and_frames_of_a_v2_task():
    from carlink.detection import WaymoClass
    from carlink.profile import DEFAULT_PROFILE

    raw = json.loads(DEFAULT_PROFILE.read_text())
    task = parse_profile(raw).tasks[0]
    assert task.waymo_classes == tuple(WaymoClass[c.upper()] for c in raw["tasks"][0]["classes"])
    # frame id -> the index of that frame's value in every per-frame list
    positions = task.frame_positions
    assert list(positions) == [f["id"] for f in raw["tasks"][0]["frames"]]
    assert list(positions.values()) == list(range(len(raw["tasks"][0]["frames"])))
    bad = copy.deepcopy(raw)
    bad["tasks"][0]["classes"] = ["pedestrian", "unicorn"]
    msg = _error(bad)
    assert f"tasks[0] '{raw['tasks'][0]['name']}'.classes" in msg and "unknown class 'unicorn'" in msg
