"""Issue 15 on the cloud server: authentication safe by default and visible, errors that name
what is wrong, bounded memory. Real `carlink cloud serve` processes and real servers on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from carlink.cloud.config import ServerConfig
from carlink.proto import inference_pb2 as pb
from carlink.proto import inference_pb2_grpc as pb_grpc

from cloud_testkit import make_pki, running_server

TOKEN = "hardening-token-0123456789"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture()
def token_file(tmp_path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "carlink.cli", "cloud", "serve", "--models", "noop", *args],
                          capture_output=True, text=True, timeout=timeout)


class _Serve:
    """`carlink cloud serve` in the background; stderr (JSON log lines) collected into a file."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.err = tmp_path / "serve.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "carlink.cli", "cloud", "serve", "--models", "noop", *args],
                                     stdout=subprocess.DEVNULL, stderr=self.err.open("wb"))

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.err.read_text().splitlines() if line.startswith("{")]

    def wait_for(self, name: str, timeout: float = 60) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = [e for e in self.events() if e["event"] == name]
            if found:
                return found[0]
            assert self.proc.poll() is None, self.err.read_text()[-2000:]
            time.sleep(0.05)
        raise AssertionError(f"no {name!r} event in {timeout} s: {self.err.read_text()[-2000:]}")

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def _metrics(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


# -- authentication -----------------------------------------------------------------------------

def test_insecure_with_a_token_file_is_refused_unless_told_explicitly(token_file):
    proc = _cli("--insecure", "--token-file", str(token_file), "--port", "0")
    assert proc.returncode == 2
    assert proc.stderr.startswith("carlink: error:") and "--allow-plaintext-token" in proc.stderr
    assert "cleartext" in proc.stderr and "Traceback" not in proc.stderr
    cfg = ServerConfig(models=("noop",), port=0, insecure=True, token_file=token_file, allow_plaintext_token=True)
    with running_server(cfg) as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            pb_grpc.InferenceStub(channel).Ping(pb.PingRequest(), timeout=5, metadata=[("authorization", f"Bearer {TOKEN}")])


def test_refused_calls_are_logged_and_counted_without_the_token(tmp_path, pki, token_file):
    metrics_port = _free_port()
    serve = _Serve(tmp_path, "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
                   "--token-file", str(token_file), "--port", "0", "--metrics-port", str(metrics_port))
    try:
        port = serve.wait_for("serving")["port"]
        creds = grpc.ssl_channel_credentials(pki.ca_cert.read_bytes())
        with grpc.secure_channel(f"localhost:{port}", creds) as channel:
            stub = pb_grpc.InferenceStub(channel)
            wrong = TOKEN[:-1] + "X"
            for metadata in (None, [("authorization", f"Bearer {wrong}")], [("authorization", f"Basic {TOKEN}")]):
                with pytest.raises(grpc.RpcError) as info:
                    stub.Ping(pb.PingRequest(), timeout=5, metadata=metadata)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            # RFC 6750: the scheme is case-insensitive.
            for scheme in ("Bearer", "bearer", "BEARER"):
                stub.Ping(pb.PingRequest(), timeout=5, metadata=[("authorization", f"{scheme} {TOKEN}")])
        text = _metrics(metrics_port)
        refusals = {line.split("{", 1)[1].split("}", 1)[0]: float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines() if line.startswith("carlink_cloud_refused_calls_total{")}
        labels = 'code="UNAUTHENTICATED",method="/carlink.v1.Inference/Ping"'
        assert refusals == {f'{labels},reason="missing authorization metadata"': 1.0,
                            f'{labels},reason="invalid bearer token"': 1.0,
                            f'{labels},reason="authorization is not a Bearer credential"': 1.0}
        refused = [e for e in serve.events() if e["event"] == "refused"]
        assert len(refused) == 3 and all(e["code"] == "UNAUTHENTICATED" and e["peer"] for e in refused)
        assert TOKEN[:-1] not in serve.err.read_text(), "the token presented is never logged"
    finally:
        assert serve.stop() == 0


def test_group_readable_token_file_is_warned_about(tmp_path, pki, token_file):
    token_file.chmod(0o644)
    serve = _Serve(tmp_path, "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
                   "--token-file", str(token_file), "--port", "0")
    try:
        serve.wait_for("serving")
        warnings = [e for e in serve.events() if e["level"] == "warning" and str(token_file) in e["event"]]
        assert warnings and "readable by group and others" in warnings[0]["event"], serve.events()
    finally:
        serve.stop()


def test_metrics_endpoint_is_loopback_only_by_default(pki):
    cfg = ServerConfig(models=("noop",), host="0.0.0.0", port=0, insecure=True, metrics_port=0)
    with running_server(cfg) as server:
        assert server._metrics_http[0].server_address[0] == "127.0.0.1"
        assert "carlink_cloud_in_flight" in _metrics(server.metrics_port)


# -- errors that name what is wrong ------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["key of another certificate", "key is a certificate", "cert is a key",
                                  "client CA is a key"])
def test_bad_tls_files_are_named_not_reported_as_a_bind_failure(pki, case):
    cert, key, extra = pki.server_cert, pki.server_key, []
    if case == "key of another certificate":
        key, problem = pki.client_key, f"{pki.client_key}: the private key does not belong to the certificate"
    elif case == "key is a certificate":
        key, problem = pki.ca_cert, f"{pki.ca_cert}: not a PEM private key"
    elif case == "cert is a key":
        cert, problem = pki.server_key, f"{pki.server_key}: not a PEM certificate"
    else:
        extra, problem = ["--client-ca", str(pki.client_key)], f"--client-ca: {pki.client_key}: not a PEM CA"
    proc = _cli("--tls-cert", str(cert), "--tls-key", str(key), *extra, "--port", "0")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("carlink: error:") and problem in proc.stderr, proc.stderr
    assert "bind" not in proc.stderr.lower() and "Traceback" not in proc.stderr


def test_a_port_in_use_is_named(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = _cli("--insecure", "--port", str(port))
    assert proc.returncode == 2
    assert f"carlink: error: cannot listen on 127.0.0.1:{port}: Address already in use" in proc.stderr


def test_a_second_server_on_the_same_port_is_refused(tmp_path):
    """gRPC's default SO_REUSEPORT would let it bind and take half of the calls."""
    with running_server() as first:
        proc = _cli("--insecure", "--port", str(first.port))
    assert proc.returncode == 2 and "Address already in use" in proc.stderr


def test_a_metrics_port_in_use_is_named(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = _cli("--insecure", "--port", "0", "--metrics-port", str(port))
    assert proc.returncode == 2
    assert f"--metrics-port {port}: cannot listen on 127.0.0.1:{port}: Address already in use" in proc.stderr
