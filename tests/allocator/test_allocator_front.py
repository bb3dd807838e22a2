"""The allocator front: edge cases, validation, headroom, switching penalty, JSON. The command
(`carlink allocate`) is tested in tests/onboard/test_onboard_allocate.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from carlink.allocation import Allocation
from carlink.allocator import Allocator, AllocatorConfig, Headroom, allocate, staircase, synthetic
from carlink.allocator.utility import critical_bandwidth, upper_convex_hull
from carlink.tasks import Option, Task

SOLVERS = ["mckp", "cvxpy", "pulp"]


def camera_task(name: str = "FRONT", deadline: float = 150.0, weight: float = 1.0) -> Task:
    return Task(
        name=name, deadline_ms=deadline, weight=weight, camera=name,
        options=(
            Option("on-car", 0.3, on_car=True),
            Option("small", 0.5, payload_bytes=25_000, runtime_ms=20.0),
            Option("large", 0.7, payload_bytes=100_000, runtime_ms=40.0),
        ),
    )


def test_critical_bandwidth_formula():
    # 8 * 100 kB / ((150 - 30 - 40) ms) = 10 Mbit/s
    assert critical_bandwidth(100_000, 150, 30, 40) == pytest.approx(10e6)
    assert critical_bandwidth(100_000, 100, 60, 40) == math.inf  # no time left
    assert critical_bandwidth(0, 10, 60, 40) == 0.0  # on-car


def test_staircase_and_hull():
    steps = staircase(camera_task(), rtt_ms=30.0)
    assert [s.option for s in steps] == ["on-car", "small", "large"]
    assert steps[0].bandwidth_bps == 0.0 and steps[0].on_car
    assert steps[1].bandwidth_bps == pytest.approx(8 * 25_000 / 0.1)
    assert [s.utility for s in steps] == sorted(s.utility for s in steps)
    assert upper_convex_hull(steps)[0] == steps[0]


@pytest.mark.parametrize("solver", SOLVERS)
def test_zero_bandwidth_gives_all_on_car(solver):
    tasks = [camera_task("A"), camera_task("B")]
    a = allocate(tasks, 0.0, 30.0, solver=solver)
    assert all(t.on_car for t in a.tasks) and a.used_bps == 0.0
    assert a.expected_utility == pytest.approx(0.6)


@pytest.mark.parametrize("solver", SOLVERS)
def test_rtt_beyond_deadline_gives_all_on_car(solver):
    a = allocate([camera_task("A", deadline=100.0)], 1e9, rtt_ms=100.0, solver=solver)
    assert a.tasks[0].on_car


def test_all_cloud_options_infeasible_by_deadline():
    a = allocate([camera_task("A")], 1e9, 30.0, deadline_ms=50.0)  # 50 - 30 < runtimes
    assert a.tasks[0].option == "on-car"


@pytest.mark.parametrize("solver", SOLVERS)
def test_single_task_takes_best_option_that_fits(solver):
    a = allocate([camera_task()], 5e6, 30.0, solver=solver)  # small needs 2 Mbit/s, large 10
    assert a.tasks[0].option == "small"
    assert a.unused_bps == pytest.approx(3e6)
    assert a.optimality_gap == 0.0


def test_zero_tasks():
    a = allocate([], 1e6, 30.0)
    assert a.tasks == () and a.expected_utility == 0.0 and a.unused_bps == 1e6


def test_weights_steer_the_choice():
    heavy = allocate([camera_task("A", weight=1.0), camera_task("B", weight=3.0)], 10e6, 30.0)
    assert heavy.choice("B").option == "large" and heavy.choice("A").on_car


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Task("T", 100, (Option("a", 0.5, payload_bytes=10),)), "no on-car option"),
        (lambda: Task("T", 100, (Option("c", 0.2, on_car=True), Option("a", float("nan"), payload_bytes=1))),
         "task 'T', option 'a': utility"),
        (lambda: Task("T", 100, (Option("c", 0.2, on_car=True), Option("a", 0.5, payload_bytes=-1))),
         "task 'T', option 'a': payload_bytes"),
        (lambda: Task("T", 100, (Option("c", 0.2, on_car=True), Option("c", 0.5, payload_bytes=1))),
         "task 'T': duplicate option id 'c'"),
        (lambda: Task("T", 100, (Option("c", 0.2, on_car=True), Option("a", 1.5, payload_bytes=1))),
         "task 'T', option 'a': utility 1.5 is outside"),
        (lambda: Task("T", float("nan"), (Option("c", 0.2, on_car=True),)), "task 'T': deadline_ms"),
    ],
)
def test_bad_tasks_are_rejected_with_names(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        make()


def test_declared_utility_range_allows_other_scales():
    t = Task("T", 100, (Option("c", 2.0, on_car=True), Option("a", 7.5, payload_bytes=1)), utility_range=(0, 10))
    assert t.option("a").utility == 7.5


def test_negative_or_nan_bandwidth_is_rejected():
    alloc = Allocator([camera_task()])
    with pytest.raises(ValueError, match="bandwidth"):
        alloc.allocate(-1.0, 30.0)
    with pytest.raises(ValueError, match="sample 1"):
        alloc.allocate([1e6, float("nan")], 30.0)
    with pytest.raises(ValueError, match="rtt_ms"):
        alloc.allocate(1e6, -5.0)


def test_headroom_fraction_and_quantile():
    alloc = Allocator([camera_task()], AllocatorConfig(headroom=Headroom(fraction=0.5)))
    a = alloc.allocate(12e6, 30.0)
    assert a.bandwidth_bps == 6e6 and a.estimate_bps == 12e6
    assert a.tasks[0].option == "small"  # large (10 Mbit/s) no longer fits
    samples = np.array([1e6, 2e6, 20e6, 20e6, 20e6, 20e6, 20e6, 20e6, 20e6, 20e6])
    q = Allocator([camera_task()], AllocatorConfig(headroom=Headroom(quantile=0.1))).allocate(samples, 30.0)
    assert q.bandwidth_bps == 1e6 and q.tasks[0].on_car


def test_switching_penalty_prevents_flapping():
    # Two options almost equal in value: without a penalty the choice follows tiny changes.
    task = Task("T", 150, (Option("c", 0.1, on_car=True),
                           Option("a", 0.600, payload_bytes=10_000), Option("b", 0.601, payload_bytes=10_000)))
    alloc = Allocator([task])
    assert alloc.allocate(1e7, 30.0).tasks[0].option == "b"
    prev = {"T": "a"}
    kept = alloc.allocate(1e7, 30.0, previous=prev, switching_penalty=0.01)
    assert kept.tasks[0].option == "a" and kept.switches == 0
    assert kept.expected_utility == pytest.approx(0.6)  # the bonus is not reported as utility
    moved = alloc.allocate(1e7, 30.0, previous=prev, switching_penalty=0.0001)
    assert moved.tasks[0].option == "b" and moved.switches == 1


def test_auto_picks_cvxpy_at_car_scale_and_fast_path_beyond():
    rng = np.random.default_rng(0)
    assert Allocator(synthetic.random_tasks(rng, 5, 4)).solver_for() == "cvxpy"
    assert Allocator(synthetic.random_tasks(rng, 20, 4)).solver_for() == "mckp"
    assert Allocator(synthetic.random_tasks(rng, 5, 4), AllocatorConfig(solver="mckp")).solver_for() == "mckp"
    cfg = AllocatorConfig.from_dict({"solver": "cvxpy", "mip_solver": "HIGHS", "headroom": {"fraction": 0.8}})
    assert cfg.headroom.fraction == 0.8
    with pytest.raises(ValueError, match="unknown keys"):
        AllocatorConfig.from_dict({"solvr": "x"})
    with pytest.raises(ValueError, match="solver must be one of"):
        AllocatorConfig(solver="gurobi-magic")


def test_allocation_json_round_trip():
    rng = np.random.default_rng(3)
    a = allocate(synthetic.random_tasks(rng, 5, 12), 30e6, 25.0, solver="mckp")
    back = Allocation.from_json(a.to_json())
    assert back == a
    d = json.loads(a.to_json())
    assert d["unused_bps"] == pytest.approx(a.unused_bps) and d["solver"] == "mckp"
    with pytest.raises(ValueError, match="unknown keys"):
        Allocation.from_dict({**d, "bogus": 1})
