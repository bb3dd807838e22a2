"""Issue 15 on the daemon: a corrupt or unreadable frame source never ends it; it skips, counts,
logs, reports itself degraded and recovers. Real `carlink onboard run` processes, real TFRecords
(records of the real 1 Hz Waymo sequences, written with datasets/tfrecord.py, then corrupted)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from carlink.datasets.tf_example_pb2 import Example
from carlink.datasets.tfrecord import FOOTER_BYTES, HEADER_BYTES, TFRecordReader, TFRecordWriter
from carlink.onboard.config import SourceConfig
from carlink.onboard.sources import SkippedInput, open_source
from carlink.clock import VirtualClock

from onboard_testkit import free_port, write_profile
from timing_testkit import wait_for


@dataclass
class Corrupted:
    path: Path
    offsets: list[int]  # byte offset of each record's header
    good: set[int]  # records that must come through


def write_corrupted(path: Path, source: Path, n: int = 6) -> Corrupted:
    """``n`` real records; record 2's data CRC broken, record 4's image replaced by bytes that are
    no JPEG (the record itself is valid), the file cut inside record 5."""
    records = [r.data for r in TFRecordReader(source)][:n]
    example = Example()
    example.ParseFromString(records[4])
    example.features.feature["image/encoded"].bytes_list.value[0] = b"\xff\xd8 not a jpeg at all"
    records[4] = example.SerializeToString()
    offsets, pos = [], 0
    with TFRecordWriter(path) as w:
        for r in records:
            offsets.append(pos)
            w.write(r)
            pos += HEADER_BYTES + len(r) + FOOTER_BYTES
    data = bytearray(path.read_bytes())
    data[offsets[2] + HEADER_BYTES + 100] ^= 0xFF  # inside record 2's data: its CRC no longer matches
    del data[offsets[5] + HEADER_BYTES + 50:]  # record 5 ends early
    path.write_bytes(bytes(data))
    return Corrupted(path, offsets, {0, 1, 3})


def test_source_skips_bad_records_and_images_naming_file_record_and_offset(tmp_path, tf_example_files):
    bad = write_corrupted(tmp_path / "bad.tfrecord", tf_example_files[0])
    src = open_source(SourceConfig(kind="tf-example", path=str(bad.path), realtime=False), VirtualClock(), {"FRONT"})
    skipped: list[SkippedInput] = []
    src.on_skip = skipped.append
    src.check()
    frames = list(src)
    assert [int(f.origin.rsplit("#", 1)[1]) for f in frames] == sorted(bad.good)
    got = {(s.record, s.offset, s.reason) for s in skipped}
    assert got == {(2, bad.offsets[2], "corrupt_record"), (4, bad.offsets[4], "undecodable_image"),
                   (5, bad.offsets[5], "corrupt_record")}
    assert all(s.path == str(bad.path) for s in skipped)


# -- real daemon processes ------------------------------------------------------------------------

def _config(tmp_path: Path, source: Path, metrics_port: int, sink: Path) -> Path:
    profile = write_profile(tmp_path / "p.json", cameras=("FRONT",))
    path = tmp_path / "c.toml"
    path.write_text(
        f'[daemon]\nprofile = "{profile}"\ndevice = "cpu"\nstatus_every_frames = 5\n'
        f'[source]\nkind = "tf-example"\npath = "{source}"\nrealtime = false\nloop = true\nretry_s = 0.2\n'
        f'[cloud]\naddress = "127.0.0.1:{free_port()}"\ninsecure = true\nping_interval_s = 0.5\n'
        f'[estimator]\nprobe = false\n'
        f'[sink]\npath = "{sink}"\ninclude_detections = false\n'
        f'[metrics]\nport = {metrics_port}\n'
    )
    return path


def _metric(port: int, name: str, labels: str = "") -> float | None:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + (labels or " ")) or (not labels and line.startswith(name + "{")):
            return float(line.rsplit(" ", 1)[1])
    return None


class _Daemon:
    """`carlink onboard run` with a notify socket; stderr collected into a file (no pipe to fill)."""

    def __init__(self, tmp_path: Path, config: Path) -> None:
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(tmp_path / "notify.sock"))
        self.notify.setblocking(False)  # saw() takes what is queued now: a fast daemon never keeps it reading
        self.messages: list[str] = []
        self.err_path = tmp_path / "stderr.log"
        env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "OMP_NUM_THREADS": "1"}
        env.pop("WATCHDOG_USEC", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "carlink.cli", "--log-level", "INFO", "onboard", "run", "--config", str(config),
             "--log-json"], env=env, stdout=subprocess.DEVNULL, stderr=self.err_path.open("wb"))

    def saw(self, pred) -> bool:
        """Whether any notification so far matches ``pred`` (reads what is queued, never waits)."""
        while True:
            try:
                self.messages.append(self.notify.recv(4096).decode())
            except BlockingIOError:
                break
        return any(pred(m) for m in self.messages)

    def logs(self) -> list[dict]:
        return [json.loads(line) for line in self.err_path.read_text().splitlines() if line.startswith("{")]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=120)  # a drain on a busy machine: as long as start-up may take
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.notify.close()


def _sink_records(sink: Path) -> list[dict]:
    return [json.loads(line) for line in sink.read_text().splitlines()] if sink.exists() else []


def test_daemon_skips_corrupt_records_and_keeps_running(tmp_path, tf_example_files):
    bad = write_corrupted(tmp_path / "bad.tfrecord", tf_example_files[0])
    port, sink = free_port(), tmp_path / "out.jsonl"
    daemon = _Daemon(tmp_path, _config(tmp_path, bad.path, port, sink))
    try:
        assert wait_for(lambda: daemon.saw(lambda m: "READY=1" in m), 120), daemon.err_path.read_text()[-3000:]
        # Two rounds of the looped file: each bad record met twice, and still running.
        assert wait_for(lambda: len(_sink_records(sink)) >= 2 * len(bad.good), 60)
        assert daemon.proc.poll() is None
        assert _metric(port, "carlink_onboard_source_skipped_total", '{reason="corrupt_record"}') >= 2
        assert _metric(port, "carlink_onboard_source_skipped_total", '{reason="undecodable_image"}') >= 1
        assert _metric(port, "carlink_onboard_source_degraded") == 0
    finally:
        rc = daemon.stop()
    assert rc == 0, daemon.err_path.read_text()[-3000:]
    origins = {r["origin"] for r in _sink_records(sink)}
    assert origins == {f"{bad.path}#{i}" for i in bad.good}
    skipped = [r["event"] for r in daemon.logs() if r["event"].startswith("source skipped")]
    for i in (2, 4, 5):
        assert any(f"{bad.path}: record {i} at byte offset {bad.offsets[i]}:" in m for m in skipped), skipped


def test_unreadable_source_is_a_degraded_state_reported_and_retried(tmp_path, tf_example_files):
    good_bytes = tf_example_files[0].read_bytes()
    scene = tmp_path / "scene.tfrecord"
    scene.write_bytes(good_bytes)
    port, sink = free_port(), tmp_path / "out.jsonl"
    daemon = _Daemon(tmp_path, _config(tmp_path, scene, port, sink))
    try:
        assert wait_for(lambda: daemon.saw(lambda m: "READY=1" in m), 120), daemon.err_path.read_text()[-3000:]
        assert wait_for(lambda: len(_sink_records(sink)) >= 5, 60)
        # The file turns into something that is no TFRecord (what check-config and start-up accepted).
        tmp = tmp_path / "garbage"
        tmp.write_bytes(b"this is not a TFRecord file\n" * 100)
        tmp.replace(scene)
        assert wait_for(lambda: daemon.saw(lambda m: m.startswith("STATUS=DEGRADED: source unreadable")), 60), \
            daemon.messages[-5:]
        assert _metric(port, "carlink_onboard_source_degraded") == 1
        assert wait_for(lambda: _metric(port, "carlink_onboard_source_failures_total") >= 2, 30), "retried"
        assert daemon.proc.poll() is None, "still running"
        n_degraded = len(_sink_records(sink))
        tmp.write_bytes(good_bytes)
        tmp.replace(scene)
        assert wait_for(lambda: daemon.saw(lambda m: "STATUS=source readable again" in m), 60)
        assert wait_for(lambda: len(_sink_records(sink)) > n_degraded + 3, 60), "frames flow again"
        assert _metric(port, "carlink_onboard_source_degraded") == 0
    finally:
        rc = daemon.stop()
    assert rc == 0
    errors = [r for r in daemon.logs() if r["level"] == "error"]
    degraded = [r for r in errors if r["event"].startswith("source degraded")]
    assert len(degraded) == 1, "one error line per state change, not one per retry"
    assert str(scene) in degraded[0]["event"] and "not a TFRecord" in " ".join(r["event"] for r in daemon.logs())
    ids = [r["frame_id"] for r in _sink_records(sink)]
    assert ids == list(range(len(ids)))


@pytest.mark.parametrize("content, problem", [
    (b"frame_id,time\n1,0.0\n" * 20, "not a TFRecord file"),
    (b"", "no readable tf-example record"),
])
def test_check_config_refuses_a_source_that_is_not_a_tfrecord(tmp_path, content, problem):
    scene = tmp_path / "scene.tfrecord"
    scene.write_bytes(content)
    config = _config(tmp_path, scene, 0, tmp_path / "out.jsonl")
    for command in (["check-config", str(config)], ["run", "--config", str(config)]):
        proc = subprocess.run([sys.executable, "-m", "carlink.cli", "onboard", *command], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"carlink: error: {config}: source: {scene}") and problem in proc.stderr
        assert "Traceback" not in proc.stderr


# -- authentication: TLS by default, mutual TLS, refusals said loudly -----------------------------

TOKEN = "car-token-0123456789"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from cloud_testkit import make_pki

    return make_pki(tmp_path_factory.mktemp("pki"))


def _tls_server(pki, token_file: Path | None = None, client_ca: bool = False):
    from carlink.cloud.config import ServerConfig
    from cloud_testkit import running_server

    return running_server(ServerConfig(models=("noop",), port=0, tls_cert=pki.server_cert, tls_key=pki.server_key,
                                       client_ca=pki.ca_cert if client_ca else None, token_file=token_file, grace_s=0))


def _synthetic_config(tmp_path: Path, cloud: str, metrics_port: int = 0, sink: Path | None = None) -> Path:
    profile = write_profile(tmp_path / "p.json", cameras=("FRONT",))
    path = tmp_path / "c.toml"
    path.write_text(
        f'[daemon]\nprofile = "{profile}"\ndevice = "cpu"\nstatus_every_frames = 5\n'
        f'[source]\nkind = "synthetic"\nrate_hz = 20\n'
        f'[cloud]\nping_interval_s = 0.2\n{cloud}'
        f'[sink]\npath = "{sink or tmp_path / "out.jsonl"}"\ninclude_detections = false\n'
        f'[metrics]\nport = {metrics_port}\n'
    )
    return path


def _cloud_results(sink: Path) -> int:
    return sum(1 for r in _sink_records(sink) if r["tasks"]["det_front"]["source"] == "cloud")


def test_tls_is_the_default_and_mutual_tls_presents_the_cars_certificate(tmp_path, pki):
    from onboard_testkit import DaemonThread

    with _tls_server(pki, client_ca=True) as server:
        sink = tmp_path / "out.jsonl"
        # No "insecure" key: TLS. The server requires a client certificate signed by its CA.
        config = _synthetic_config(tmp_path, f'address = "127.0.0.1:{server.port}"\nca_cert = "{pki.ca_cert}"\n'
                                             f'client_cert = "{pki.client_cert}"\nclient_key = "{pki.client_key}"\n',
                                   sink=sink)
        running = DaemonThread(config)
        try:
            assert wait_for(lambda: _cloud_results(sink) >= 3, 60), "cloud results over mutual TLS"
        finally:
            assert running.stop() == 0
        # Without the car's certificate the handshake fails: on-car only.
        sink2 = tmp_path / "out2.jsonl"
        (tmp_path / "no_cert").mkdir()
        config = _synthetic_config(tmp_path / "no_cert", f'address = "127.0.0.1:{server.port}"\n'
                                                         f'ca_cert = "{pki.ca_cert}"\n', sink=sink2)
        running = DaemonThread(config)
        try:
            assert wait_for(lambda: len(_sink_records(sink2)) >= 10, 60)
        finally:
            assert running.stop() == 0
        assert _cloud_results(sink2) == 0


@pytest.mark.parametrize("cloud, problem", [
    ('address = "127.0.0.1:1"\ninsecure = true\ntoken_file = "token"\n',
     "cloud: token_file with insecure = true would send the bearer token in cleartext"),
    ('address = "127.0.0.1:1"\nclient_cert = "car.pem"\nclient_key = "car.key"\n', "cloud.client_cert/client_key"),
    ('address = "127.0.0.1:1"\nca_cert = "token"\n', "cloud.ca_cert"),
])
def test_unsafe_or_broken_cloud_settings_stop_start_up(tmp_path, cloud, problem):
    (tmp_path / "token").write_text(TOKEN)
    (tmp_path / "token").chmod(0o600)
    config = _synthetic_config(tmp_path, cloud)
    for command in (["check-config", str(config)], ["run", "--config", str(config)]):
        proc = subprocess.run([sys.executable, "-m", "carlink.cli", "onboard", *command], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("carlink: error:") and problem in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_refused_car_says_so_loudly_and_recovers_after_sighup(tmp_path, pki):
    server_token = tmp_path / "server_token"
    server_token.write_text(TOKEN)
    server_token.chmod(0o600)
    car_token = tmp_path / "car_token"
    car_token.write_text("not-the-token")
    car_token.chmod(0o644)  # readable by others: warned about
    port, sink = free_port(), tmp_path / "out.jsonl"
    with _tls_server(pki, token_file=server_token) as server:
        cloud = f'address = "127.0.0.1:{server.port}"\nca_cert = "{pki.ca_cert}"\ntoken_file = "{car_token}"\n'
        config = _synthetic_config(tmp_path, cloud, port, sink)
        daemon = _Daemon(tmp_path, config)
        try:
            assert wait_for(lambda: daemon.saw(lambda m: m.startswith("STATUS=CLOUD REFUSED: UNAUTHENTICATED")), 120), \
                daemon.messages[-5:]
            assert _metric(port, "carlink_onboard_cloud_refused") == 1
            assert wait_for(lambda: _metric(port, "carlink_onboard_cloud_refusals_total",
                                            '{code="UNAUTHENTICATED"}') >= 5, 30), "every refused call is counted"
            assert wait_for(lambda: daemon.saw(lambda m: m.startswith("STATUS=CLOUD REFUSED: on-car only;")), 30), \
                "the periodic status says so too"
            # The token is rotated in place (same path, same config): SIGHUP picks it up.
            car_token.write_text(TOKEN)
            car_token.chmod(0o600)
            daemon.proc.send_signal(signal.SIGHUP)
            assert wait_for(lambda: daemon.saw(lambda m: "STATUS=cloud accepts calls again" in m), 60), daemon.messages[-5:]
            assert _metric(port, "carlink_onboard_cloud_refused") == 0
            assert wait_for(lambda: _cloud_results(sink) >= 3, 60)
        finally:
            rc = daemon.stop()
    assert rc == 0
    logs = daemon.logs()
    refused = [r for r in logs if r["level"] == "error" and "refuses this car's calls" in r["event"]]
    assert len(refused) == 1, "one error line per change of state"
    assert "UNAUTHENTICATED" in refused[0]["event"] and "not-the-token" not in daemon.err_path.read_text()
    assert any(r["level"] == "warning" and f"token file {car_token} is readable by group and others" in r["event"]
               for r in logs)


# -- a sink that fails ------------------------------------------------------------------------------

@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (every write: No space left on device)")
def test_a_failing_sink_is_reported_once_counted_and_ends_in_exit_code_2(tmp_path):
    config = _synthetic_config(tmp_path, 'address = "127.0.0.1:1"\ninsecure = true\n', sink=Path("/dev/full"))
    config.write_text(config.read_text().replace('rate_hz = 20\n', 'rate_hz = 50\nmax_frames = 20\n'))
    proc = subprocess.run([sys.executable, "-m", "carlink.cli", "--log-level", "INFO", "onboard", "run", "--config",
                           str(config), "--log-json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.rstrip().splitlines()[-1]
    assert last == (f"carlink: error: {config}: sink.path /dev/full: 20 of 20 results could not be written "
                    "(sink /dev/full: cannot write: No space left on device)"), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    logs = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    errors = [r for r in logs if r["level"] == "error" and "cannot write" in r["event"]]
    assert len(errors) == 1, "one error line when the sink starts failing, not one per frame"


# -- check-config checks what run would refuse, and warns of what would silently do nothing ----------

def _check_config(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "carlink.cli", "onboard", "check-config", str(config)],
                          capture_output=True, text=True, timeout=120)


def test_check_config_warns_of_a_task_whose_camera_the_source_never_has(tmp_path, tf_example_files):
    profile = write_profile(tmp_path / "p.json", cameras=("FRONT", "SIDE_LEFT"))
    config = tmp_path / "c.toml"
    config.write_text(f'[daemon]\nprofile = "{profile}"\ndevice = "cpu"\n'
                      f'[source]\nkind = "tf-example"\npath = "{tf_example_files[0]}"\n'
                      f'[cloud]\naddress = "127.0.0.1:1"\ninsecure = true\n')
    proc = _check_config(config)
    assert proc.returncode == 0, proc.stderr
    assert (f"carlink: warning: {config}: task 'det_side_left' watches camera SIDE_LEFT, which source "
            f"{tf_example_files[0]} does not have (it has FRONT); the task will never run") in proc.stderr
    assert "det_front" not in proc.stderr


@pytest.mark.parametrize("sink, problem", [
    ("no_such_folder/out.jsonl", "sink.path: cannot write"),
    (".", "sink.path: cannot write"),  # a folder
])
def test_check_config_refuses_a_sink_run_could_not_open(tmp_path, sink, problem):
    config = _synthetic_config(tmp_path, 'address = "127.0.0.1:1"\ninsecure = true\n', sink=tmp_path / sink)
    proc = _check_config(config)
    assert proc.returncode == 2 and proc.stderr.startswith(f"carlink: error: {config}: {problem}"), proc.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_check_config_leaves_no_file_behind_for_a_sink_it_could_create(tmp_path):
    config = _synthetic_config(tmp_path, 'address = "127.0.0.1:1"\ninsecure = true\n', sink=tmp_path / "new.jsonl")
    proc = _check_config(config)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "new.jsonl").exists()


def test_check_config_refuses_cuda_on_a_machine_without_a_gpu(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    config = _synthetic_config(tmp_path, 'address = "127.0.0.1:1"\ninsecure = true\n')
    config.write_text(config.read_text().replace('device = "cpu"', 'device = "cuda"'))
    proc = _check_config(config)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"carlink: error: {config}: daemon.device:") and "no CUDA GPU" in proc.stderr
