"""`carlink cloud serve` as a real process: start, serve, drain on SIGTERM; `carlink cloud models`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from carlink.cli import main
from carlink.proto import inference_pb2_grpc as pb_grpc

from cloud_testkit import front_jpeg, infer_request
from timing_testkit import wait_for


def _serve(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "carlink.cli", "cloud", "serve", *args],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def _wait_for_event(proc: subprocess.Popen, name: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise AssertionError(f"server exited (rc={proc.poll()}) before logging {name!r}")
        record = json.loads(line)  # every log line is one JSON object
        if record["event"] == name:
            return record
    raise AssertionError(f"no {name!r} event within {timeout} s")


def _health(channel) -> int | grpc.StatusCode:
    try:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2).status
    except grpc.RpcError as exc:
        return exc.code()


def _in_flight(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    (line,) = [ln for ln in text.splitlines() if ln.startswith("carlink_cloud_in_flight ")]
    return float(line.split()[1])


def test_sigterm_drains_in_flight_calls_then_exits(waymo_frame_file):
    proc = _serve("--models", "hog-default", "--insecure", "--port", "0", "--grace", "20", "--drain-delay", "1.0",
                  "--metrics-port", "0")
    try:
        serving = _wait_for_event(proc, "serving")
        port, metrics_port = serving["port"], serving["metrics_port"]
        jpeg = front_jpeg(waymo_frame_file)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.InferenceStub(channel)
            assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
            with ThreadPoolExecutor(2) as pool:
                # Two calls of ~0.6 s each on one model worker: the second is queued at SIGTERM.
                calls = [pool.submit(stub.Infer, infer_request(jpeg, model="hog-default"), timeout=60) for _ in range(2)]
                assert wait_for(lambda: _in_flight(metrics_port) == 2)  # both admitted (not a fixed sleep)
                proc.send_signal(signal.SIGTERM)
                assert _wait_for_event(proc, "draining", 10)["grace_s"] == 20
                assert _health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
                replies = [c.result() for c in calls]
            assert all(r.decoded_size.width == 1920 and r.model == "hog-default" for r in replies)
            _wait_for_event(proc, "stopped", 20)
            assert proc.wait(20) == 0
            with pytest.raises(grpc.RpcError) as info:
                stub.Infer(infer_request(jpeg, model="hog-default"), timeout=2)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_serve_without_tls_or_insecure_is_refused_with_a_clear_error(capsys):
    assert main(["cloud", "serve", "--models", "noop", "--port", "0"]) == 2
    assert "--insecure explicitly" in capsys.readouterr().err


def test_serve_unknown_model_is_refused(capsys):
    assert main(["cloud", "serve", "--models", "noop,yolo-v99", "--insecure", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "yolo-v99" in err and "known models" in err


def test_serve_torch_model_without_weights_needs_allow_untrained(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache, whatever this machine has
    assert main(["cloud", "serve", "--models", "ssdlite320_mobilenet_v3_large", "--insecure", "--port", "0",
                 "--device", "cpu"]) == 2
    assert "ssdlite320_mobilenet_v3_large" in capsys.readouterr().err


def test_models_lists_the_zoo(capsys):
    assert main(["cloud", "models", "--json"]) == 0
    models = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert models["hog-default"]["classes"] == ["pedestrian"] and not models["hog-default"]["batchable"]
    assert models["ssdlite320_mobilenet_v3_large"]["input_size"] == [320, 320]
    assert "noop" in models
