"""carlink's one task model: an Option carries the profile's statistics, Task.planned gives the
allocator's view under chosen statistics, and a profile becomes tasks in one place."""

from __future__ import annotations

import pytest

from carlink.profile import EXAMPLE_PROFILE, expected_frame_utility, load_profile
from carlink.tasks import Option, Task


def _task() -> Task:
    return Task("T", 150.0, (
        Option("car", 0.2, on_car=True, runtime_ms=8.0, runtime_ms_p99=12.0, aggregate_utility=0.25),
        Option("q75", 0.5, payload_bytes=40_000, payload_bytes_p95=52_000, runtime_ms=20.0, runtime_ms_p99=35.0,
               aggregate_utility=0.55, model="big", resize=(640, 480), jpeg_quality=75),
    ), weight=2.0, camera="FRONT")


def test_an_option_written_without_statistics_has_one_value_of_each():
    o = Option("a", 0.4, payload_bytes=1000, runtime_ms=10.0)
    assert (o.payload_bytes_mean, o.payload_bytes_p95, o.runtime_ms_p50, o.runtime_ms_p99) == (1000, 1000, 10.0, 10.0)
    assert o.frame_utility == o.aggregate_utility == 0.4
    task = Task("T", 100.0, (Option("car", 0.1, on_car=True), o))
    assert task.planned(payload="p95", runtime="p99", utility="aggregate") == task


def test_planned_sets_the_planning_numbers_and_keeps_the_statistics():
    task = _task()
    tail = task.planned(payload="p95", runtime="p99", utility="aggregate")
    cloud = tail.option("q75")
    assert (cloud.payload_bytes, cloud.runtime_ms, cloud.utility) == (52_000, 35.0, 0.55)
    assert (tail.on_car.payload_bytes, tail.on_car.runtime_ms, tail.on_car.utility) == (0.0, 12.0, 0.25)
    # the statistics travel along: planning again gives the other view back
    assert tail.planned(payload="mean", runtime="p50") == task
    assert (cloud.model, cloud.resize, cloud.jpeg_quality, tail.camera, tail.weight) == ("big", (640, 480), 75, "FRONT", 2.0)
    with pytest.raises(ValueError, match="payload statistic must be one of"):
        task.planned(payload="p99", runtime="p50")  # type: ignore[arg-type]


def test_overridden_replaces_the_cars_settings():
    task = _task().overridden(deadline_ms=90.0, weight=0.5, camera="SIDE_LEFT", on_car_model="tiny")
    assert (task.deadline_ms, task.weight, task.camera, task.on_car.model) == (90.0, 0.5, "SIDE_LEFT", "tiny")
    assert task.option("q75").model == "big"
    assert _task().overridden() == _task()
    with pytest.raises(ValueError, match="deadline_ms must be a finite number > 0"):
        _task().overridden(deadline_ms=0.0)


@pytest.mark.parametrize("make, message", [
    (lambda: Option("a", 0.5, payload_bytes=10, runtime_ms=30.0, runtime_ms_p99=20.0),
     "option 'a': runtime p99 20.0 ms is below its p50 30.0 ms"),
    (lambda: Option("a", 0.5, payload_bytes=10, payload_bytes_p95=float("nan")), "option 'a': payload_bytes_p95 must be a finite"),
    (lambda: Option("a", 0.5, payload_bytes=10, aggregate_utility=1.2), "option 'a': aggregate_utility 1.2 is outside"),
    (lambda: Option("a", 0.5, payload_bytes=10, runtime_ms_p50=-1.0), "option 'a': runtime_ms_p50 must be >= 0"),
])
def test_bad_statistics_are_rejected_with_names(make, message):
    with pytest.raises(ValueError, match=message):
        Task("T", 100.0, (Option("car", 0.1, on_car=True), make()))


def test_the_on_car_option_uploads_nothing_in_any_statistic():
    with pytest.raises(ValueError, match="on-car option uploads nothing"):
        Task("T", 100.0, (Option("car", 0.1, on_car=True, payload_bytes_p95=5.0),))


def test_a_profile_becomes_tasks_in_one_place():
    profile = load_profile(EXAMPLE_PROFILE)
    tasks = profile.tasks_for_planning()
    for task, tp in zip(tasks, profile.tasks):
        assert (task.name, task.camera, task.deadline_ms, task.weight) == (tp.name, tp.camera, tp.deadline_ms, tp.weight)
        assert task.options[0].on_car and task.on_car.model == tp.on_car.model
        assert task.on_car.runtime_ms_p99 == tp.on_car.runtime_ms_p99
        for o, op in zip(task.options[1:], tp.options):
            # plans with what the car expects of one frame; carries every statistic
            assert (o.payload_bytes, o.runtime_ms) == (op.payload_bytes_mean, op.runtime_ms_p50)
            assert o.utility == o.frame_utility == expected_frame_utility(op.utility, op.utilities)
            assert (o.payload_bytes_p95, o.runtime_ms_p99, o.aggregate_utility) == (
                op.payload_bytes_p95, op.runtime_ms_p99, op.utility)
            assert (o.model, o.resize, o.codec, o.jpeg_quality) == (op.model, op.resize, op.codec, op.jpeg_quality)
    # to_tasks is that list under one choice of statistics
    assert profile.to_tasks() == [t.planned(payload="p95", runtime="p99", utility="aggregate") for t in tasks]
    short = profile.to_tasks(payload="mean", runtime="p50", deadline_ms=80.0)
    assert all(t.deadline_ms == 80.0 for t in short)


def test_expected_frame_utility_leaves_undefined_frames_out():
    assert expected_frame_utility(0.7, [0.2, None, 0.4]) == pytest.approx(0.3)
    assert expected_frame_utility(0.7, [None, None]) == 0.7
    assert expected_frame_utility(0.7, None) == 0.7
