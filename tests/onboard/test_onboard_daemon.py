"""The daemon as systemd runs it: a real `carlink onboard run` process, a notify socket, signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time


from onboard_testkit import DaemonThread, start_server, write_profile
from timing_testkit import wait_for


def _run_command(config) -> list[str]:
    """`carlink onboard run` once onboard/cli.py wires it; the module entry point until then."""
    from carlink.cli import build_parser

    try:
        build_parser().parse_args(["onboard", "run", "--config", str(config)])
        return [sys.executable, "-m", "carlink.cli", "--log-level", "INFO", "onboard", "run", "--config", str(config), "--log-json"]
    except SystemExit:
        return [sys.executable, "-m", "carlink.onboard.daemon_cli", "run", "--config", str(config), "--log-json"]


def _write_config(path, profile, port, sink, weight=1.0):
    path.write_text(
        f'[daemon]\nprofile = "{profile}"\ndevice = "cpu"\nstatus_every_frames = 5\n'
        f'[source]\nkind = "synthetic"\nrate_hz = 10\n'
        f'[cloud]\naddress = "127.0.0.1:{port}"\ninsecure = true\nping_interval_s = 0.2\n'
        f'[sink]\npath = "{sink}"\n'
        f'[[tasks]]\nname = "det_front"\nweight = {weight}\n'
    )
    return path


def _recv_until(sock, pred, timeout):
    got = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            msg = sock.recv(4096).decode()
        except socket.timeout:
            break
        got.append(msg)
        if pred(msg):
            return got
    raise AssertionError(f"notification not seen in {timeout} s; got {got}")


def test_systemd_notify_reload_and_sigterm(tmp_path):
    srv = start_server()
    profile = write_profile(tmp_path / "p.json", cameras=("FRONT",))
    sink = tmp_path / "out.jsonl"
    config = _write_config(tmp_path / "c.toml", profile, srv.port, sink)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(_run_command(config), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = _recv_until(notify, lambda m: "READY=1" in m, 60)
        assert first[-1].startswith("READY=1") and len(first) == 1, "READY comes first"
        msgs = _recv_until(notify, lambda m: m.startswith("STATUS=") and "frames" in m, 10)
        msgs += _recv_until(notify, lambda m: m == "WATCHDOG=1", 5)
        # SIGHUP: new weight, same process, frames keep flowing.
        _write_config(config, profile, srv.port, sink, weight=2.0)
        lines_before = len(sink.read_text().splitlines())
        proc.send_signal(signal.SIGHUP)
        msgs += _recv_until(notify, lambda m: "reloaded" in m, 30)
        assert "RELOADING=1" in msgs
        time.sleep(0.5)
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=5)
        stop_s = time.monotonic() - t_term
        msgs += _recv_until(notify, lambda m: m == "STOPPING=1", 1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
        srv.stop(0)
    err = proc.stderr.read().decode()
    assert rc == 0, err
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(r["event"].startswith("started") for r in logs), err[-2000:]
    per_frame = [r for r in logs if r["logger"] == "carlink.onboard.estimate"]
    assert per_frame and all("bandwidth_bps" in r and "rtt_ms" in r for r in per_frame)
    assert stop_s < 2.0, f"SIGTERM took {stop_s:.2f} s"
    order = [m.split("=")[0] for m in msgs]
    assert order.index("RELOADING") < max(i for i, m in enumerate(msgs) if "reloaded" in m) < order.index("STOPPING")
    records = [json.loads(line) for line in sink.read_text().splitlines()]
    assert len(records) > lines_before + 3
    ids = [r["frame_id"] for r in records]
    assert ids == list(range(len(ids))), "no frame was dropped across the reload or at shutdown"
    late = [r for r in records if not r["tasks"]["det_front"]["deadline_met"]]
    assert not late, late[:3]


def test_startup_errors_exit_2_with_a_clear_message(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[daemon]\nprofile = "missing.json"\n[source]\nkind = "synthetic"\n')
    proc = subprocess.run(_run_command(config), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "cannot read profile" in proc.stderr and "missing.json" in proc.stderr
    config.write_text('[daemon]\nprofile = "p.json"\n[source]\nkind = "synthetic"\nrate_hz = -1\n')
    proc = subprocess.run(_run_command(config), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "source.rate_hz: Input should be greater than 0" in proc.stderr


def test_check_config_command(tmp_path, capsys):
    from carlink.onboard.daemon_cli import main

    profile = write_profile(tmp_path / "p.json")
    config = tmp_path / "c.toml"
    config.write_text(f'[daemon]\nprofile = "{profile.name}"\n[source]\nkind = "synthetic"\n')
    assert main(["check-config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "task det_front: camera FRONT, on-car noop, deadline 200 ms" in out
    assert "task det_side_left: camera SIDE_LEFT" in out
    config.write_text(f'[daemon]\nprofile = "{profile.name}"\n[source]\nkind = "synthetic"\n[[tasks]]\nname = "det_rear"\n')
    assert main(["check-config", str(config)]) == 2
    assert "task 'det_rear' is not in profile" in capsys.readouterr().err
    config.write_text(f'[daemon]\nprofile = "{profile.name}"\n[source]\nkind = "waymo"\npath = "scenes"\n')
    assert main(["check-config", str(config)]) == 2
    assert f"{config}: source: source path {tmp_path / 'scenes'} does not exist" in capsys.readouterr().err


def test_sighup_moves_to_a_new_cloud_address_and_sink_without_losing_frames(tmp_path):
    old_srv, new_srv = start_server(), start_server()
    profile = write_profile(tmp_path / "p.json", cameras=("FRONT",))
    config = tmp_path / "c.toml"
    sink_a, sink_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _write_config(config, profile, old_srv.port, sink_a)
    running = DaemonThread(config)

    def records(path):
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    try:
        assert wait_for(lambda: any(r["tasks"]["det_front"]["source"] == "cloud" for r in records(sink_a)))
        old_srv.stop(0)  # from now on only the new address can answer
        _write_config(config, profile, new_srv.port, sink_b)
        running.daemon.request_reload()
        assert wait_for(lambda: running.daemon.reloads == 1)
        assert wait_for(lambda: any(r["tasks"]["det_front"]["source"] == "cloud" for r in records(sink_b))), \
            "no cloud result from the new address after the reload"
    finally:
        rc = running.stop()
        new_srv.stop(0)
    assert rc == 0
    ids = [r["frame_id"] for r in records(sink_a)] + [r["frame_id"] for r in records(sink_b)]
    assert ids == list(range(len(ids))), "every frame is in exactly one sink, in order"
    assert records(sink_a) and records(sink_b)


def test_sighup_with_an_unopenable_sink_keeps_the_running_config(tmp_path):
    srv = start_server()
    profile = write_profile(tmp_path / "p.json", cameras=("FRONT",))
    config = tmp_path / "c.toml"
    sink = tmp_path / "a.jsonl"
    _write_config(config, profile, srv.port, sink)
    running = DaemonThread(config)
    daemon = running.daemon
    try:
        assert wait_for(lambda: sink.exists() and sink.read_text().count("\n") >= 3)
        _write_config(config, profile, srv.port, tmp_path / "no_such_dir" / "b.jsonl", weight=3.0)
        daemon.request_reload()
        time.sleep(1.0)
        n = sink.read_text().count("\n")
        time.sleep(0.5)
        assert daemon.reloads == 0
        assert sink.read_text().count("\n") > n, "frames keep going to the running sink"
        assert daemon.pipeline.cfg.tasks[0].weight == 1.0, "the failed reload changed nothing"
    finally:
        running.stop()
        srv.stop(0)
