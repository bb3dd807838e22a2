"""The oracle is an honest bound (it sends only what arrives in time behind its own queue, never
more than the link carries), and the two diagnostics run carlink's decision code with one thing
known perfectly: the link's future (carlink-link) or the frame's utilities (carlink-utility)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from carlink.datasets.trace_readers import load_trace
from carlink.datasets.traces import Trace
from carlink.onboard.planning import load_onboard_tasks
from carlink.onboard.policy import CarlinkPolicy, PlanInputs
from carlink.profile import EXAMPLE_PROFILE
from carlink.replay import demo
from carlink.replay.compose import compose_playlist
from carlink.replay.frame_utility import ProfileUtilities, TruthUtilities
from carlink.replay.link import MTU, TraceLink
from carlink.replay.profile_view import load_replay_profile
from carlink.replay.runner import BIN_S, ReplayConfig, prepare_trace, run_virtual

from replay_testkit import frame_ids, per_frame_profile


@pytest.fixture(scope="module")
def nuwins(bandwidth_dir):
    return load_trace(bandwidth_dir / "nuwins_5g_uplink" / "driving" / "5g" / "throughput.list", "nuwins")


@pytest.fixture(scope="module")
def tmobile(bandwidth_dir):
    return load_trace(bandwidth_dir / "mahimahi" / "TMobile-LTE-short.up")


DEMO_CFG = ReplayConfig(scale=0.25, trace_offset_s=20.0)


@pytest.fixture(scope="module")
def demo_run(tmobile):
    """Synthetic 5-camera 10 Hz frames, example profile, a scarce (x0.25) real LTE uplink."""
    profile = load_replay_profile(EXAMPLE_PROFILE)
    return run_virtual(demo.synthetic_frames(120), profile, tmobile, ProfileUtilities(profile), DEMO_CFG)


def test_committed_bytes_predict_the_departure_exactly():
    rng = np.random.default_rng(5)
    trace = Trace(np.sort(rng.integers(0, 4000, 2500)), 4000, name="random")
    link = TraceLink(trace, delay=5.0)
    t = 0.0
    for _ in range(800):
        t += float(rng.exponential(4.0))
        n = int(rng.integers(1, 30000))
        k = -(-(link.committed_bytes(t) + n) // MTU)
        predicted = trace.opportunities_between(math.floor(t) + 1, t + 60000.0)[k - 1]
        d, _ = link.send(t, n)
        assert d.departed_ms == predicted


def test_oracle_never_sends_more_than_the_link_carries(demo_run):
    s = demo_run.summary
    assert s["oracle"].link_utilisation <= 1.0 + 1e-9
    oracle_tasks = demo_run.runs["oracle"].tasks
    assert any(r.source == "cloud" for r in oracle_tasks)
    # Everything it sends arrives in time: it plans behind the queue it builds.
    assert all(r.cloud_status in ("ok", "not-sent") for r in oracle_tasks)
    for name, summary in s.items():
        assert summary.mean_utility <= s["oracle"].mean_utility + 1e-9, name


def test_carlink_link_plans_with_the_true_future_capacity(demo_run, tmobile):
    trace = prepare_trace(tmobile, DEMO_CFG, 11.9 + 0.2 + 1.0 + 30.0)  # as run_virtual prepares it
    rtt_s = 0.040  # the trace has no RTT series: 40 ms
    horizon = max(0.2 - rtt_s, BIN_S)  # the example profile's longest deadline is 200 ms
    frames = demo_run.runs["carlink-link"].frames
    for f in frames:
        t0 = f.t * 1000.0
        want = trace.count_between(t0, t0 + horizon * 1000.0) * MTU * 8.0 / horizon
        assert f.estimate_bps == pytest.approx(want)
    # Knowing the link is worth something here: it beats the estimator-driven carlink.
    assert demo_run.summary["carlink-link"].mean_utility > demo_run.summary["carlink"].mean_utility


def test_policy_utility_override_is_the_expectation_by_default():
    tasks = load_onboard_tasks(EXAMPLE_PROFILE, [])
    samples = np.full(10, 6e6)
    plain = CarlinkPolicy(tasks).decide(PlanInputs(samples, 30.0))
    width = max(len(t.options) for t in tasks)
    expected = np.zeros((len(tasks), width))
    for i, t in enumerate(tasks):
        expected[i, :len(t.options)] = [o.utility for o in t.options]
    same = CarlinkPolicy(tasks).decide(PlanInputs(samples, 30.0, utility=expected))
    assert [a.option for a in same.tasks] == [a.option for a in plain.tasks]
    assert same.expected_utility == pytest.approx(plain.expected_utility)
    # Only task 0's cloud options are worth anything this frame: only task 0 goes to the cloud.
    worthless = expected.copy()
    for i, t in enumerate(tasks[1:], start=1):
        worthless[i, :len(t.options)] = expected[i, t.on_car_index]
    only = CarlinkPolicy(tasks).decide(PlanInputs(samples, 30.0, utility=worthless))
    assert not only.tasks[0].on_car and all(a.on_car for a in only.tasks[1:])


def test_carlink_utility_never_sends_what_the_frame_does_not_reward(tmp_path, tf_example_files, nuwins):
    files = tf_example_files[:5]
    path = per_frame_profile(tmp_path / "p.json", frame_ids(files))
    profile = load_replay_profile(path)
    truth = TruthUtilities(profile)
    pl = compose_playlist([files], rate_hz=10.0)
    res = run_virtual(pl.frames, profile, nuwins, truth,
                      ReplayConfig(policies=("carlink", "carlink-utility", "on-car", "oracle"), trace_offset_s=600.0))
    tasks = {t.name: t for t in profile.tasks}
    frames = {pf.index: pf for pf in pl.frames}
    skipped = 0
    for r in res.runs["carlink-utility"].tasks:
        t, pf = tasks[r.task], frames[r.frame]
        u = [truth.utility(pf, t, o) for o in t.options]
        if max(u[1:]) <= u[0]:
            assert r.planned == "on-car"
            skipped += 1
    assert skipped > 0
    s = res.summary
    assert s["carlink-utility"].mean_utility >= s["carlink"].mean_utility
    assert s["oracle"].mean_utility >= s["carlink-utility"].mean_utility


def test_full_packets_in_closed_form_equal_packet_by_packet():
    """TraceLink.send queues a message's full packets behind a busy tail in one step: same
    departures, deliveries and queue state as enqueueing them one by one (fixed and stepped delay)."""
    from carlink.replay.link import DelaySeries

    rng = np.random.default_rng(3)
    for trial in range(12):
        period = int(rng.integers(500, 5000))
        trace = Trace(np.sort(rng.integers(0, period + 1, int(rng.integers(50, 3000)))), period, name="random")
        delay = (float(rng.uniform(0, 30)) if trial % 2 else
                 DelaySeries(np.array([0.0, 300.0, 900.0]), np.array([10.0, 25.0, 5.0]), period))
        fast, ref = TraceLink(trace, delay=delay), TraceLink(trace, delay=delay)
        t = 0.0
        for _ in range(150):
            t += float(rng.exponential(5.0))
            n = int(rng.choice([0, 1, 1499, 1500, 1501, 3000, int(rng.integers(1, 60000))]))
            got, _ = fast.send(t, n)
            for size in [MTU] * (n // MTU) + ([n % MTU] if n % MTU or n == 0 else []):
                want = ref.enqueue(t, size)
            assert (got.departed_ms, got.delivered_ms) == (want.departed_ms, want.delivered_ms)
            assert fast.queued_bytes(t) == ref.queued_bytes(t) and fast.committed_bytes(t) == ref.committed_bytes(t)
            assert (fast.sent_packets, fast.sent_bytes) == (ref.sent_packets, ref.sent_bytes)
