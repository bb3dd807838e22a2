"""Onboard components on their own: config, profile, estimator, encoder, fuser, sink, systemd."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest

from carlink.clock import VirtualClock, WallClock
from carlink.detection import Box2D, Detection, WaymoClass
from carlink.onboard.config import ConfigError, EstimatorConfig, load_config
from carlink.onboard.daemon import StartupError, load_everything
from carlink.onboard.encoder import EncodeSpec, ParallelEncoder, encode_image
from carlink.onboard.estimator import UplinkEstimator
from carlink.onboard.fuser import Fuser, TaskPlan
from carlink.onboard.pipeline import OnboardPipeline, load_onboard_models
from carlink.onboard.planning import Planner, ProfileError, load_onboard_tasks
from carlink.onboard.policy import PolicySettings
from carlink.onboard.sink import JsonLinesSink, MemorySink
from carlink.onboard.systemd import SystemdNotifier, watchdog_interval_s
from carlink.onboard.uplink import UploadOutcome

from onboard_testkit import make_config, write_profile

EXAMPLE = Path(__file__).resolve().parents[2] / "onboard" / "example.toml"


# -- config and profile ----------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_example_config_is_valid():
    cfg = load_config(EXAMPLE)
    assert cfg.source.kind == "waymo" and cfg.tasks[0].name == "FRONT"
    # The example documents the policy's defaults: the same the replay's carlink plans with.
    assert cfg.policy.settings() == PolicySettings()


@pytest.mark.parametrize(
    "body, key, problem",
    [
        ('[daemon]\nprofile="p.json"\ndevise="cpu"\n[source]\nkind="synthetic"\n', "daemon.devise", "unknown key"),
        ('[daemon]\nprofile="p.json"\n[source]\nkind="folder"\n', "source", "needs a 'path'"),
        ('[daemon]\nprofile="p.json"\n[source]\nkind="synthetic"\n[estimator]\nquantile=1.5\n', "estimator.quantile", "less than or equal to 1"),
        ('[daemon]\nprofile="p.json"\n[source]\nkind="synthetic"\n[[tasks]]\nname="a"\ndeadline_ms=-1\n', "tasks[0].deadline_ms", "greater than 0"),
        ('[daemon]\nprofile="p.json"\n[source]\nkind="synthetic"\n[cloud]\ninsecure=true\nca_cert="ca.pem"\n', "cloud", "ca_cert would not be used"),
        ('[daemon]\nprofile="p.json"\n[source]\nkind="synthetic"\n[cloud]\ninsecure=true\ntoken_file="t"\n', "cloud", "in cleartext"),
        ('[daemon]\nprofile="p.json"\n[source]\nkind="synthetic"\n[cloud]\nclient_cert="car.pem"\n', "cloud", "both 'client_cert' and 'client_key'"),
        ('[daemon]\n[source]\nkind="synthetic"\n', "daemon.profile", "required key is missing"),
        ('[source]\nkind="webcam"\n[daemon]\nprofile="p"\n', "source.kind", "'waymo'"),
        ('[daemon]\nprofile="p"\n[source]\nkind="synthetic"\n[allocator]\nsolver="magic"\n', "allocator", "solver must be one of"),
        ('[daemon]\nprofile="p"\n[source]\nkind="synthetic"\n[policy]\nquantiles=[0.1, 1.5]\n', "policy.quantiles[1]", "less than or equal to 1"),
        ('[daemon]\nprofile="p"\n[source]\nkind="synthetic"\n[policy]\nquantiles=[]\n', "policy.quantiles", "at least 1 item"),
        ('[daemon]\nprofile="p"\n[source]\nkind="synthetic"\n[policy]\nruntimes=["p90"]\n', "policy.runtimes[0]", "'p50' or 'p99'"),
        ('[daemon]\nprofile="p"\n[source]\nkind="synthetic"\n[policy]\nquantile=0.1\n', "policy.quantile", "unknown key"),
    ],
)
def test_bad_config_values_name_the_key(tmp_path, body, key, problem):
    path = _write(tmp_path / "c.toml", body)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert f"{path}: {key}:" in msg and problem in msg


def test_config_not_toml_and_missing(tmp_path):
    with pytest.raises(ConfigError, match=r"not valid TOML.*line 1"):
        load_config(_write(tmp_path / "c.toml", "[daemon\nprofile=1"))
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.toml")


def _config_with_profile(tmp_path: Path, profile: str) -> Path:
    return _write(tmp_path / "c.toml", f'[daemon]\nprofile="{profile}"\n[source]\nkind="synthetic"\n')


def test_missing_profile_is_a_startup_error(tmp_path):
    with pytest.raises(StartupError, match=r"cannot read profile .*nope\.json"):
        load_everything(_config_with_profile(tmp_path, "nope.json"))


@pytest.mark.parametrize(
    "content, problem",
    [
        ('{"tasks": [', "not valid JSON at line 1"),
        ('{"version": 1, "tasks": [{"name": "a", "camera": "FRONT", "deadline_ms": 100}]}', "on_car: required key is missing"),
        ('{"version": 1, "tasks": [{"name": "a", "camera": "FRONT", "deadline_ms": 100, '
         '"on_car": {"model": "noop", "utility": 2.0}}]}', "outside the task's range"),
        ('{"version": 7, "tasks": []}', "version 7 is not supported"),
    ],
)
def test_corrupt_profile_is_a_startup_error(tmp_path, content, problem):
    _write(tmp_path / "p.json", content)
    with pytest.raises(StartupError) as err:
        load_everything(_config_with_profile(tmp_path, "p.json"))
    assert "p.json" in str(err.value) and problem in str(err.value), str(err.value)


def test_config_task_overrides_and_unknown_task(tmp_path):
    write_profile(tmp_path / "p.json")
    cfg = load_config(_write(tmp_path / "c.toml", (
        '[daemon]\nprofile="p.json"\n[source]\nkind="synthetic"\n'
        '[[tasks]]\nname="det_front"\ndeadline_ms=150\nweight=2\n'
    )))
    (t,) = load_onboard_tasks(cfg.profile_path, cfg.tasks)
    assert (t.deadline_ms, t.weight, t.camera, t.on_car.model) == (150, 2, "FRONT", "noop")
    cfg = load_config(_write(tmp_path / "c.toml", (
        '[daemon]\nprofile="p.json"\n[source]\nkind="synthetic"\n[[tasks]]\nname="rear"\n'
    )))
    with pytest.raises(ProfileError, match=r"tasks\[0\]\.name: task 'rear' is not in profile"):
        load_onboard_tasks(cfg.profile_path, cfg.tasks)


def test_unknown_onboard_model_is_a_startup_error(tmp_path):
    write_profile(tmp_path / "p.json", onboard_model="no-such-model")
    with pytest.raises(StartupError, match="no-such-model"):
        load_everything(_config_with_profile(tmp_path, "p.json"))


def test_policy_section_reaches_the_pipelines_planner(tmp_path):
    cfg = make_config(write_profile(tmp_path / "p.json"), "127.0.0.1:9",
                      policy={"quantiles": [0.0, 0.5], "runtimes": ["p99"]})
    tasks = load_onboard_tasks(cfg.profile_path, cfg.tasks)
    pipe = OnboardPipeline(cfg, tasks, WallClock(), MemorySink(), load_onboard_models(tasks, "cpu"))
    try:
        policy = pipe.planner.policy
        assert policy.settings == PolicySettings(quantiles=(0.0, 0.5), runtimes=("p99",))
        # Candidate budgets are the configured quantiles of the samples, then 0 (send nothing).
        assert policy.budgets(np.array([4e6, 1e6, 3e6, 2e6])) == [1e6, 2e6, 0.0]
    finally:
        pipe.close()
    # Keys left out keep the policy's defaults.
    partial = make_config(tmp_path / "p.json", "127.0.0.1:9", policy={"runtimes": ["p50"]}).policy.settings()
    assert partial == PolicySettings(runtimes=("p50",))


def test_planner_follows_bandwidth(tmp_path):
    tasks = load_onboard_tasks(write_profile(tmp_path / "p.json"), [])
    planner = Planner(tasks)
    assert all(c.on_car for c in planner.allocate(0.0, 20.0).tasks)
    rich = planner.allocate(50e6, 20.0)
    assert [c.option for c in rich.tasks] == ["cloud_640_q80", "cloud_640_q80"]
    # 15 kB in (200 - 20 - 5) ms needs ~0.69 Mbit/s per task; 60 kB in (200 - 20 - 10) ms ~2.82.
    mid = planner.allocate(2.0e6, 20.0)
    assert sorted(c.option for c in mid.tasks) == ["cloud_320_q70", "cloud_320_q70"]
    assert mid.used_bps <= 2.0e6


# -- estimator -------------------------------------------------------------------------------


def test_estimator_low_quantile_window_and_decay():
    clock = VirtualClock()
    est = UplinkEstimator(EstimatorConfig(window_s=5, quantile=0.1, stale_after_s=1, decay_half_life_s=1, initial_bps=1e6), clock)
    assert est.estimate().bandwidth_bps == 1e6 and est.estimate().age_s is None
    for mbps in [10, 10, 10, 10, 10, 10, 10, 10, 10, 2]:
        est.record_upload(int(mbps * 1e6 / 8 * 0.1), elapsed_s=0.1 + 0.05, server_s=0.0)  # rtt default 50 ms
        clock.advance(0.1)
    e = est.estimate()
    # The 10th percentile (linear interpolation) of nine 10 Mbit/s samples and one 2 Mbit/s one.
    assert e.bandwidth_bps == pytest.approx(np.quantile([10e6] * 9 + [2e6], 0.1), rel=1e-9)
    assert e.bandwidth_bps < 10e6
    assert not e.stale
    clock.advance(3.0 - 0.1)  # 3 s since the last sample, 2 s past stale_after: two half-lives
    e2 = est.estimate()
    assert e2.stale and e2.bandwidth_bps == pytest.approx(e.bandwidth_bps / 4, rel=1e-6)


def test_estimator_timeouts_pull_the_estimate_down():
    clock = VirtualClock()
    est = UplinkEstimator(EstimatorConfig(quantile=0.2), clock)
    for _ in range(5):
        est.record_upload(125_000, 0.15, 0.0)  # 1 Mbit in 0.1 s: 10 Mbit/s
        clock.advance(0.1)
    for _ in range(5):
        est.record_timeout(50_000, 0.2)  # 0.4 Mbit not through in 0.2 s: below 2 Mbit/s
        clock.advance(0.1)
    assert est.estimate().bandwidth_bps <= 2e6


def test_estimator_rtt_is_a_high_quantile():
    est = UplinkEstimator(EstimatorConfig(quantile=0.1), VirtualClock())
    for r in [0.02] * 9 + [0.2]:
        est.record_rtt(r)
    assert est.estimate().rtt_s > 0.02


def test_probing_is_bounded_and_only_when_underused():
    clock = VirtualClock()
    cfg = EstimatorConfig(initial_bps=10e6, probe_max_bps=80_000, probe_below_fraction=0.5)
    est = UplinkEstimator(cfg, clock)
    clock.advance(1.0)
    assert est.probe_bytes(allocated_bps=9e6) == 0  # the allocation uses the estimate: no probe
    sent = 0
    for _ in range(100):  # 10 s of frames at 10 Hz with an idle uplink
        n = est.probe_bytes(allocated_bps=0.0)
        if n:
            sent += n
            est.probe_done()
        clock.advance(0.1)
    assert 0 < sent * 8 <= 80_000 * 11  # never more than probe_max_bps (plus one bucket)
    n = est.probe_bytes(0.0)
    assert n == 0 or est.probe_bytes(0.0) == 0  # one probe in flight at a time


# -- encoder ---------------------------------------------------------------------------------


def test_encoder_on_real_waymo_images(waymo_frame_file):
    from carlink.datasets.waymo import read_waymo_frames

    (frame,) = list(read_waymo_frames(waymo_frame_file))
    images = {im.camera.name: im.decode() for im in frame.images}
    assert images["FRONT"].shape == (1280, 1920, 3) and images["SIDE_LEFT"].shape == (886, 1920, 3)
    enc = ParallelEncoder(2)
    try:
        jobs = {
            "FRONT": (images["FRONT"], EncodeSpec("jpeg", 80, (640, 427))),
            "SIDE_LEFT": (images["SIDE_LEFT"], EncodeSpec("png", 1, (480, 221))),
            "FRONT_LEFT": (images["FRONT_LEFT"], EncodeSpec("raw", size=(64, 48))),
        }
        out = enc.encode_many(jobs)
    finally:
        enc.close()
    front = cv2.imdecode(np.frombuffer(out["FRONT"].payload, np.uint8), cv2.IMREAD_COLOR)
    assert front.shape == (427, 640, 3) and out["FRONT"].original_size == (1920, 1280)
    # The JPEG is a faithful downscale of the camera image, not noise.
    ref = cv2.resize(images["FRONT"], (640, 427), interpolation=cv2.INTER_AREA)
    assert np.abs(front.astype(int) - ref.astype(int)).mean() < 6
    side = cv2.imdecode(np.frombuffer(out["SIDE_LEFT"].payload, np.uint8), cv2.IMREAD_COLOR)
    assert side.shape == (221, 480, 3)
    ref_side = cv2.resize(images["SIDE_LEFT"], (480, 221), interpolation=cv2.INTER_AREA)
    assert np.abs(side.astype(int) - ref_side.astype(int)).mean() < 3  # PNG is lossless: resize only
    assert len(out["FRONT_LEFT"].payload) == 64 * 48 * 3
    q20 = encode_image(images["FRONT"], EncodeSpec("jpeg", 20, (640, 427)))
    assert len(q20.payload) < len(out["FRONT"].payload)


def test_encoder_rejects_bad_input():
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        encode_image(np.zeros((10, 10), np.uint8), EncodeSpec("jpeg"))
    with pytest.raises(ValueError, match="quality 0 outside"):
        EncodeSpec("jpeg", 0)
    with pytest.raises(ValueError, match="codec 'webp'"):
        EncodeSpec("webp")  # type: ignore[arg-type]


# -- fuser -----------------------------------------------------------------------------------

DET = [Detection(Box2D(10, 20, 30, 40), 0.9, WaymoClass.VEHICLE)]
CAR = [Detection(Box2D(1, 2, 3, 4), 0.5, WaymoClass.PEDESTRIAN)]


def _plan(deadline: float, cloud: bool = True) -> TaskPlan:
    return TaskPlan(deadline - 0.005, deadline, "cloud_a" if cloud else "car", "car", cloud)


def _ok(task: str, frame: int, at: float) -> UploadOutcome:
    return UploadOutcome(task, frame, "m", "ok", detections=DET, sent_at=0.0, done_at=at)


def test_fuser_uses_cloud_only_when_in_time():
    f = Fuser()
    f.open_frame(1, 0.0, {"a": _plan(0.2), "b": _plan(0.2), "c": _plan(0.2, cloud=False)}, {})
    f.onboard_result(1, "a", CAR, 0.03)
    f.onboard_result(1, "b", CAR, 0.03)
    f.onboard_result(1, "c", CAR, 0.03)
    assert f.poll(0.05) == []  # a and b wait for the cloud (c is resolved: nothing was sent)
    f.cloud_outcome(_ok("a", 1, 0.1))
    assert f.poll(0.1) == []  # b still waits
    assert f.poll(0.196) != []  # 0.195 = give-up time: b falls back without waiting longer
    f2 = Fuser()
    f2.open_frame(2, 0.0, {"a": _plan(0.2), "b": _plan(0.2), "c": _plan(0.2, cloud=False)}, {})
    for t in "abc":
        f2.onboard_result(2, t, CAR, 0.03)
    f2.cloud_outcome(_ok("a", 2, 0.1))
    f2.cloud_outcome(_ok("b", 2, 0.199))  # arrived after the give-up time: never used
    (fr,) = f2.poll(0.2)
    assert fr.tasks["a"].source == "cloud" and fr.tasks["a"].detections == DET
    assert fr.tasks["b"].source == "on-car" and fr.tasks["b"].cloud_status == "late"
    assert fr.tasks["c"].source == "on-car" and fr.tasks["c"].cloud_status == "not-sent"
    assert all(r.deadline_met for r in fr.tasks.values())
    f2.cloud_outcome(_ok("a", 2, 0.3))  # after emission: counted, dropped
    assert f2.counters.cloud_late == 2


def test_fuser_failure_resolves_early_and_late_onboard_is_a_miss():
    f = Fuser()
    f.open_frame(1, 0.0, {"a": _plan(0.2)}, {})
    f.open_frame(2, 0.1, {"a": _plan(0.3)}, {})
    f.onboard_result(1, "a", CAR, 0.01)
    f.cloud_outcome(UploadOutcome("a", 1, "m", "UNAVAILABLE", done_at=0.02))
    (fr,) = f.poll(0.02)  # no need to wait for the deadline once the cloud has failed
    assert fr.tasks["a"].cloud_status == "UNAVAILABLE" and fr.tasks["a"].latency_s == pytest.approx(0.02)
    assert f.poll(0.5) == []  # frame 2's on-car result is not there yet: nothing to emit
    f.onboard_result(2, "a", CAR, 0.5)
    (fr2,) = f.poll(0.5)
    assert fr2.tasks["a"].source == "on-car" and not fr2.tasks["a"].deadline_met
    assert f.counters.deadline_misses == 1


# -- sink and systemd ------------------------------------------------------------------------


def test_json_lines_sink(tmp_path):
    f = Fuser()
    f.open_frame(7, 1.5, {"a": _plan(1.7)}, {"estimate": {"bandwidth_bps": 1.0}})
    f.onboard_result(7, "a", CAR, 1.51)
    f.cloud_outcome(_ok("a", 7, 1.6))
    sink = JsonLinesSink(tmp_path / "out.jsonl")
    for fr in f.poll(1.6):
        sink.write(fr)
    sink.close()
    (line,) = (tmp_path / "out.jsonl").read_text().splitlines()
    rec = json.loads(line)
    assert rec["frame_id"] == 7 and rec["estimate"] == {"bandwidth_bps": 1.0}
    t = rec["tasks"]["a"]
    assert t["source"] == "cloud" and t["option"] == "cloud_a" and t["latency_ms"] == pytest.approx(100, abs=0.01)
    assert t["detections"] == [{"box": [10, 20, 30, 40], "score": 0.9, "class": "vehicle"}]


def test_sd_notify_datagrams_on_a_unix_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(2)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        n = SystemdNotifier()
        assert n.ready("up") and n.status("5 frames") and n.watchdog() and n.stopping()
        got = [server.recv(4096).decode() for _ in range(4)]
        n.close()
    finally:
        server.close()
    assert got == ["READY=1\nSTATUS=up", "STATUS=5 frames", "WATCHDOG=1", "STOPPING=1"]
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not SystemdNotifier().ready()  # not under systemd: silently nothing


def test_watchdog_interval(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval_s() == 2.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval_s() is None


def test_estimator_credits_concurrent_uploads_to_the_shared_link():
    """Two tasks' uploads share a 10 Mbit/s link: together, not each alone, they measure it."""
    clock = VirtualClock()
    est = UplinkEstimator(EstimatorConfig(window_s=10, quantile=0.0), clock)
    rtt = 0.05  # the estimator's default round trip before any ping
    for _ in range(5):
        t0 = clock.now()
        # 125 kB each, sent together: 0.2 s on the wire for both at 10 Mbit/s, fair shares.
        clock.advance(0.2 + rtt)
        est.record_upload(125_000, clock.now() - t0, 0.0, sent_at=t0)
        est.record_upload(125_000, clock.now() - t0, 0.0, sent_at=t0)
        clock.advance(0.5)  # idle: the next pair is a new burst
    e = est.estimate()
    assert e.bandwidth_bps == pytest.approx(10e6, rel=1e-6)
    assert e.samples == 5  # one sample per burst, the halves replaced


def test_estimator_seals_long_bursts_so_a_busy_link_keeps_sampling():
    clock = VirtualClock()
    est = UplinkEstimator(EstimatorConfig(window_s=10, quantile=0.0), clock)
    # An upload of 100 kB every 0.1 s, each 0.15 s on the wire: always two overlap, and the link
    # moves 8 Mbit/s without a pause for 3 s.
    for i in range(30):
        sent = 0.1 * i
        clock.advance_to(sent + 0.15 + 0.05)  # on the wire, then the default 50 ms round trip
        est.record_upload(100_000, clock.now() - sent, 0.0, sent_at=sent)
    e = est.estimate()
    assert e.samples >= 3  # sealed bursts: not one sample for the whole busy stretch
    assert 6.5e6 < e.bandwidth_bps <= 8.1e6


def test_the_car_runs_darknet_on_opencv_unless_cuda_is_asked_for(tmp_path, models_dir):
    from carlink.onboard.pipeline import onboard_backend
    from onboard_testkit import write_profile

    car = "yolo-fastest-1.1-320x320"
    assert onboard_backend(car, "auto") == "opencv" and onboard_backend(car, "cpu") == "opencv"
    assert onboard_backend(car, "cuda") == "torch" and onboard_backend(car, "cuda:1") == "torch"
    assert onboard_backend(car, "auto", "torch") == "torch"  # an explicit choice stands
    assert onboard_backend("hog-default", "auto") == "auto"  # one-backend families choose their own
    task = load_onboard_tasks(write_profile(tmp_path / "p.json", cameras=("FRONT",), onboard_model=car), ())[0]
    (model,) = load_onboard_models((task,), "auto").values()
    assert model.backend == "opencv" and model.name == car
