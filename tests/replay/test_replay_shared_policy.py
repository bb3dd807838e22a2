"""One carlink policy: the daemon's Planner and replay's `carlink` are the same decision code, and
the virtual replay feeds it what a car can know (its own uploads), not the link's capacity."""

from __future__ import annotations

import json

import numpy as np
import pytest

from carlink.allocator.solve import AllocatorConfig, Headroom
from carlink.clock import VirtualClock
from carlink.datasets.trace_readers import load_trace
from carlink.onboard.config import EstimatorConfig
from carlink.onboard.estimator import UplinkEstimator
from carlink.onboard.planning import Planner, load_onboard_tasks
from carlink.onboard.policy import CarlinkPolicy, PlanInputs, backlog_bytes
from carlink.profile import EXAMPLE_PROFILE
from carlink.replay.frame_utility import ProfileUtilities
from carlink.replay.player import load_scenes
from carlink.replay.policies import CarlinkPolicy as ReplayCarlink
from carlink.replay.policies import FrameView, policy_tasks
from carlink.replay.profile_view import default_profile_path, load_replay_profile
from carlink.replay.runner import ReplayConfig, run_virtual


@pytest.fixture(scope="module")
def nuwins(bandwidth_dir):
    return load_trace(bandwidth_dir / "nuwins_5g_uplink" / "driving" / "5g" / "throughput.list", "nuwins")


@pytest.mark.parametrize("path", [default_profile_path(), EXAMPLE_PROFILE], ids=["default", "example"])
def test_daemon_and_replay_read_the_same_policy_tasks(path):
    daemon = list(load_onboard_tasks(path, []))
    replay = policy_tasks(load_replay_profile(path))
    assert daemon == replay


@pytest.mark.parametrize("path", [default_profile_path(), EXAMPLE_PROFILE], ids=["default", "example"])
def test_daemon_planner_and_replay_carlink_make_the_same_choice(path):
    """Same samples, RTT and backlog: the daemon's Planner and replay's carlink send the same options."""
    onboard = load_onboard_tasks(path, [])
    planner = Planner(onboard, AllocatorConfig())
    replay = ReplayCarlink(load_replay_profile(path))
    rng = np.random.default_rng(3)
    n = len(onboard)
    kinds = set()
    for _ in range(60):
        scale = float(rng.choice([2e5, 1e6, 5e6, 2e7, 1e8]))
        samples = rng.lognormal(0.0, float(rng.uniform(0.1, 1.5)), size=int(rng.integers(1, 40))) * scale
        rtt = float(rng.uniform(10.0, 80.0))
        backlog = float(rng.choice([0.0, 2e4, 3e5]))
        mine = planner.plan(PlanInputs(samples, rtt, backlog))
        view = FrameView(0, 0.0, 0.0, tuple(range(n)), rtt, samples, float(samples[-1]), None, backlog)
        theirs = replay.decide(view)
        assert {a.task: a.option for a in mine.tasks} == {
            onboard[i].name: onboard[i].options[j].id for i, j in theirs.choices.items()}
        assert mine.expected_utility == pytest.approx(theirs.expected_utility, rel=1e-12)
        kinds.add(tuple(a.on_car for a in mine.tasks))
    assert len(kinds) > 1  # the inputs span on-car-only and cloud plans


def _policy(path=EXAMPLE_PROFILE) -> CarlinkPolicy:
    return CarlinkPolicy(load_onboard_tasks(path, []))


def test_policy_is_cautious_under_uncertainty_and_backlog():
    policy = _policy()
    steady = policy.decide(PlanInputs(np.full(20, 4e6), 30.0))
    # Same mean, but most of the time the link is slow and only sometimes fast: less is sent
    # (a plan for the mean would be late four times in five).
    shaky = policy.decide(PlanInputs(np.r_[np.full(16, 1e6), np.full(4, 16e6)], 30.0))
    assert shaky.used_bps < steady.used_bps
    # Bytes already queued ahead of this frame's uploads: less is sent.
    behind = policy.decide(PlanInputs(np.full(20, 4e6), 30.0, backlog_bytes=150_000))
    assert behind.used_bps < steady.used_bps
    # Nothing to count on: everything on-car, and its expected utility is the on-car floor.
    dead = policy.decide(PlanInputs(np.zeros(5), 30.0))
    assert all(a.on_car for a in dead.tasks)
    floor = sum(t.weight * t.on_car.utility for t in policy.tasks)
    assert dead.expected_utility == pytest.approx(floor)


def test_policy_picks_the_best_candidate_by_its_own_score():
    policy = _policy()
    samples = np.array([0.5e6, 1e6, 2e6, 3e6, 6e6, 8e6])
    best = policy.decide(PlanInputs(samples, 40.0))
    # Every single-quantile plan (what a fixed headroom would send) scores no better.
    for q in policy.settings.quantiles:
        fixed = CarlinkPolicy(policy.tasks, AllocatorConfig(headroom=Headroom(quantile=q)))
        alloc = fixed.decide(PlanInputs(samples, 40.0))
        cols = [(i, policy.column(i, a.option)) for i, a in enumerate(alloc.tasks)]
        assert policy.expected_value(cols, samples, 40.0) <= best.expected_utility + 1e-12


def test_backlog_drains_at_the_estimate():
    assert backlog_bytes([(0.0, 100_000), (0.5, 50_000)], 1.0, 400_000) == pytest.approx(50_000 + 25_000)
    assert backlog_bytes([(0.0, 10_000)], 5.0, 1e6) == 0.0


def test_estimator_exposes_samples_and_latest():
    clock = VirtualClock()
    est = UplinkEstimator(EstimatorConfig(initial_bps=2e6, stale_after_s=1.0, decay_half_life_s=1.0), clock)
    assert est.bandwidth_samples().tolist() == [2e6] and est.latest_bps() == 2e6
    for k, rate in enumerate((4e6, 1e6, 3e6)):
        clock.advance(0.1)
        est.record_upload(int(rate / 8 * 0.1), 0.1 + 0.05, 0.0)  # 0.05 s default RTT taken off
    assert est.bandwidth_samples() == pytest.approx([4e6, 1e6, 3e6])
    assert est.latest_bps() == pytest.approx(3e6)
    clock.advance(2.0)  # stale for 1 s: one half-life of decay, as estimate() applies
    assert est.bandwidth_samples() == pytest.approx([2e6, 0.5e6, 1.5e6])


def test_replay_learns_the_link_from_its_own_uploads(waymo_frame_file, tf_example_files, nuwins):
    frames = load_scenes([waymo_frame_file, *tf_example_files[:3]])
    profile = load_replay_profile(default_profile_path())
    cfg = dict(policies=("carlink", "turbo"), scale=1.0, trace_offset_s=1200.0)
    up = run_virtual(frames, profile, nuwins, ProfileUtilities(), ReplayConfig(**cfg))
    tr = run_virtual(frames, profile, nuwins, ProfileUtilities(), ReplayConfig(estimates="trace", **cfg))
    assert "uploads" in up.inputs["estimates"] and "trace" in tr.inputs["estimates"]
    # The first frame knows only the estimator's initial value; the trace mode knows nothing yet.
    assert up.runs["carlink"].frames[0].estimate_bps == EstimatorConfig().initial_bps
    assert tr.runs["carlink"].frames[0].estimate_bps == 0.0
    # The estimate moves with what the car measured, and differs from the true capacity reports.
    est = [f.estimate_bps for f in up.runs["carlink"].frames]
    assert len(set(est)) > 5
    assert est != [f.estimate_bps for f in tr.runs["carlink"].frames]
    # A car sending little probes; the padding goes through the same link and is accounted.
    assert up.summary["carlink"].probe_bytes > 0 and tr.summary["carlink"].probe_bytes == 0
    assert json.loads(up.summary_json())["policies"]["carlink"]["probe_bytes"] == up.runs["carlink"].probe_bytes


def test_config_rejects_unknown_estimates():
    with pytest.raises(ValueError, match="estimates"):
        ReplayConfig(estimates="oracle")


def test_remembered_solves_do_not_change_decisions():
    """The policy keeps solved allocations across frames (the same samples and RTT recur): a policy
    that has seen many frames decides exactly as a fresh one on the same inputs."""
    tasks = load_onboard_tasks(EXAMPLE_PROFILE, [])
    seasoned = CarlinkPolicy(tasks)
    rng = np.random.default_rng(11)
    inputs = [PlanInputs(rng.lognormal(0.0, 0.8, size=12) * float(rng.choice([5e5, 3e6, 2e7])),
                         float(rng.choice([20.0, 45.0])), float(rng.choice([0.0, 5e4]))) for _ in range(25)]
    for x in inputs * 3:  # each input seen three times
        mine = seasoned.decide(x)
        theirs = CarlinkPolicy(tasks).decide(x)
        assert [a.option for a in mine.tasks] == [a.option for a in theirs.tasks]
        assert mine.expected_utility == pytest.approx(theirs.expected_utility, rel=1e-12)
    assert len(seasoned._solved) < 3 * 25 * 18  # solves were remembered, not repeated


def test_budget_quantiles_are_numpys_inverted_cdf():
    from carlink.onboard.policy import inverted_cdf_quantiles

    rng = np.random.default_rng(2)
    qs = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 1.0)
    for n in [*range(1, 60), 100, 200, 399]:
        x = np.round(rng.lognormal(size=n), int(rng.integers(0, 3)))
        assert np.array_equal(inverted_cdf_quantiles(x, qs), np.quantile(x, qs, method="inverted_cdf"))
