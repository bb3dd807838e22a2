"""SIGHUP applies every config section: a real daemon on a thread, a real cloud server on loopback,
the real Waymo frame as the new source."""

from __future__ import annotations

import json
import socket
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from onboard_testkit import DaemonThread, free_port, start_server, write_profile
from timing_testkit import wait_for


def _config(path, profile, port, sink, *, source: str, tasks=("det_front",), threads=2, metrics_port=0,
            device="cpu"):
    body = (
        f'[daemon]\nprofile = "{profile}"\ndevice = "{device}"\n'
        f'[source]\n{source}\n'
        f'[cloud]\naddress = "127.0.0.1:{port}"\ninsecure = true\nping_interval_s = 0.2\n'
        f'[encoder]\nthreads = {threads}\n'
        f'[sink]\npath = "{sink}"\n'
        f'[metrics]\nport = {metrics_port}\n'
    )
    body += "".join(f'[[tasks]]\nname = "{t}"\n' for t in tasks)
    path.write_text(body)
    return path


SYNTHETIC = 'kind = "synthetic"\nrate_hz = 10'


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@dataclass
class _Running:
    """A daemon on synthetic frames (a real server on loopback) whose config a test rewrites."""

    port: int
    profile: Path
    sink: Path
    config: Path
    thread: DaemonThread
    rc: int | None = None

    @property
    def daemon(self):
        return self.thread.daemon

    def rewrite(self, **kw) -> None:
        _config(self.config, self.profile, self.port, self.sink, **kw)

    def records(self) -> list[dict]:
        return _records(self.sink)


@contextmanager
def _daemon_running(tmp_path, cameras):
    """Yields once the daemon has written 3 frames; ``rc`` holds run()'s result after the block."""
    srv = start_server()
    profile = write_profile(tmp_path / "p.json", cameras=cameras)
    sink = tmp_path / "out.jsonl"
    config = _config(tmp_path / "c.toml", profile, srv.port, sink, source=SYNTHETIC)
    run = _Running(srv.port, profile, sink, config, DaemonThread(config))
    try:
        assert wait_for(lambda: len(run.records()) >= 3)
        yield run
    finally:
        run.rc = run.thread.stop()
        srv.stop(0)


def test_sighup_switches_source_tasks_encoder_metrics_and_device(tmp_path, waymo_frame_file):
    with _daemon_running(tmp_path, ("FRONT", "SIDE_LEFT")) as run:
        daemon = run.daemon
        assert daemon.metrics_port is None, "metrics disabled at start"
        old_model = daemon.pipeline.models["noop"]
        metrics_port = free_port()
        real = f'kind = "waymo"\npath = "{waymo_frame_file}"\nloop = true\nrate_hz = 10'
        run.rewrite(source=real, tasks=("det_front", "det_side_left"), threads=1, metrics_port=metrics_port,
                    device="auto")
        daemon.request_reload()
        assert wait_for(lambda: daemon.reloads == 1)
        assert wait_for(lambda: sum("tfrecord" in r["origin"] for r in run.records()) >= 3)
        assert daemon.pipeline.encoder.threads == 1
        assert daemon.pipeline.models["noop"] is not old_model, "models re-loaded for the new device"
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        assert "carlink_onboard_frames_total" in text
    assert run.rc == 0
    records = run.records()
    assert [r["frame_id"] for r in records] == list(range(len(records))), "ids continue across the switch"
    origins = [r["origin"] for r in records]
    first_real = next(i for i, o in enumerate(origins) if "tfrecord" in o)
    assert first_real >= 3 and all(o.startswith("synthetic:") for o in origins[:first_real])
    assert all(o == f"{waymo_frame_file}#0" for o in origins[first_real:]), "never back to the old source"
    real = records[first_real:]
    assert all(set(r["tasks"]) == {"det_front", "det_side_left"} for r in real)
    assert any(r["tasks"]["det_side_left"]["source"] == "cloud" for r in real), "the new camera is uploaded"
    assert all(r["tasks"]["det_front"]["deadline_met"] for r in records)


def test_sighup_adding_a_camera_keeps_the_source_and_feeds_the_new_task(tmp_path):
    with _daemon_running(tmp_path, ("FRONT", "SIDE_LEFT")) as run:
        daemon = run.daemon
        source = daemon.source
        run.rewrite(source=SYNTHETIC, tasks=("det_front", "det_side_left"))
        daemon.request_reload()
        assert wait_for(lambda: daemon.reloads == 1)
        assert wait_for(lambda: sum("det_side_left" in r["tasks"] for r in run.records()) >= 3)
        assert daemon.source is source, "an unchanged [source] keeps running"
    assert run.rc == 0
    records = run.records()
    assert [r["frame_id"] for r in records] == list(range(len(records)))
    origins = [int(r["origin"].split(":")[1]) for r in records]
    assert origins == list(range(len(origins))), "the synthetic source was not restarted"


def test_sighup_to_a_missing_source_path_keeps_everything(tmp_path):
    with _daemon_running(tmp_path, ("FRONT",)) as run:
        daemon = run.daemon
        missing = tmp_path / "no_such.tfrecord"
        run.rewrite(source=f'kind = "waymo"\npath = "{missing}"', threads=1)
        daemon.request_reload()
        assert wait_for(lambda: daemon.failed_reloads == 1)
        n = len(run.records())
        assert wait_for(lambda: len(run.records()) >= n + 3), "frames keep flowing from the running source"
        assert daemon.reloads == 0
        assert daemon.pipeline.encoder.threads == 2, "the failed reload changed nothing"
    assert run.rc == 0
    assert all(r["origin"].startswith("synthetic:") for r in run.records())


def test_missing_source_path_stops_start_up_before_ready(tmp_path):
    from carlink.onboard.daemon import OnboardDaemon, StartupError
    from carlink.onboard.systemd import SystemdNotifier

    profile = write_profile(tmp_path / "p.json", cameras=("FRONT",))
    config = _config(tmp_path / "c.toml", profile, 1, tmp_path / "out.jsonl",
                     source=f'kind = "folder"\npath = "{tmp_path / "frames"}"', metrics_port=free_port())
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.setblocking(False)
    daemon = OnboardDaemon(config, notifier=SystemdNotifier(str(tmp_path / "notify.sock")))
    try:
        with pytest.raises(StartupError, match=r"source: source path .*frames is not a folder"):
            daemon.run()
        with pytest.raises(BlockingIOError):
            notify.recv(4096)  # nothing was announced: no READY=1
    finally:
        notify.close()
    assert daemon.metrics_port is None, "nothing left listening"


@pytest.mark.parametrize("token, problem", [(None, "cannot read"), ("", "is empty")])
def test_bad_token_file_stops_start_up_with_its_key(tmp_path, token, problem):
    from carlink.onboard.daemon import OnboardDaemon, StartupError

    profile = write_profile(tmp_path / "p.json", cameras=("FRONT",))
    config = _config(tmp_path / "c.toml", profile, 1, tmp_path / "out.jsonl", source=SYNTHETIC,
                     metrics_port=free_port())
    if token is not None:
        (tmp_path / "token").write_text(token)
    config.write_text(config.read_text().replace("[cloud]\n", '[cloud]\ntoken_file = "token"\nallow_plaintext_token = true\n'))
    daemon = OnboardDaemon(config)
    with pytest.raises(StartupError, match=rf"c\.toml: cloud\.token_file .*token:? {problem}"):
        daemon.run()
    assert daemon.metrics_port is None and daemon.pipeline is None
