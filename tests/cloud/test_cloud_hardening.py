"""Issue 15 on the cloud server: authentication safe by default and visible, errors that name
what is wrong, bounded memory. Real `carlink cloud serve` processes and real servers on loopback."""

from __future__ import annotations

import json
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
from timing_testkit import wait_for

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


# -- bounded memory: the decoded-pixel budget ---------------------------------------------------

def _budget_server_main(conn, settings: dict) -> None:
    """Child process: a server whose model decodes pixels (a no-op that is not of the noop family)."""
    from carlink.cloud.server import InferenceServer
    from carlink.zoo.base import ModelSpec
    from carlink.zoo.noop import NoopDetector

    server = InferenceServer(ServerConfig(**settings),
                             detectors={"decode": [NoopDetector(ModelSpec("decode", "test", None, (), batchable=True))]})
    conn.send(server.start())
    conn.recv()
    server.stop(grace=1.0)


def _vm_hwm_bytes(pid: int) -> int:
    line = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def _smooth_jpeg(side: int) -> bytes:
    import cv2
    import numpy as np

    coarse = np.random.default_rng(0).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    image = cv2.resize(coarse, (side, side), interpolation=cv2.INTER_LINEAR)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 30])[1].tobytes()


def test_decoded_pixels_in_flight_stay_within_the_budget(tmp_path):
    """24 concurrent 4000x4000 JPEGs (48 MB each decoded, 1.15 GB together) against a budget of
    one image: the server's peak RSS grows by at most the documented figure."""
    import multiprocessing as mp
    import threading

    side, clients, budget = 4000, 24, 20_000_000
    payload = _smooth_jpeg(side)
    settings = dict(models=("decode",), port=0, insecure=True, max_pixels=budget, max_pixels_in_flight=budget,
                    budget_wait_ms=200.0)
    ctx = mp.get_context("spawn")
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=_budget_server_main, args=(child, settings), daemon=True)
    proc.start()
    try:
        port = conn.recv()
        base = _vm_hwm_bytes(proc.pid)
        codes: list[tuple[grpc.StatusCode, str]] = []
        start = threading.Barrier(clients)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.InferenceStub(channel)

            def call() -> None:
                start.wait()
                try:
                    stub.Infer(pb.InferRequest(task="t", model="decode", encoding=pb.ENCODING_JPEG, payload=payload),
                               timeout=120)
                    codes.append((grpc.StatusCode.OK, ""))
                except grpc.RpcError as exc:
                    codes.append((exc.code(), exc.details()))

            threads = [threading.Thread(target=call) for _ in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        peak = _vm_hwm_bytes(proc.pid)
    finally:
        conn.close()
        proc.join(30)
    ok = sum(1 for c, _ in codes if c == grpc.StatusCode.OK)
    refused = [d for c, d in codes if c == grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert ok >= 1 and len(refused) + ok == clients, codes
    assert all("decoded-pixel budget" in d for d in refused)
    # The figure of cloud/README.md: 3 bytes per budgeted pixel, plus two copies of each payload
    # being received (here small), plus 64 MiB for the allocator's own slack.
    figure = 3 * budget + 2 * (32 + 8) * len(payload) + 64 * 2**20
    assert peak - base <= figure, f"peak grew by {(peak - base) / 2**20:.0f} MiB; figure {figure / 2**20:.0f} MiB"
    # Without the budget one decoded image each would have been 24 x 48 MB.
    assert peak - base < clients * side * side * 3 / 4


# -- nothing silently wrong: a corrupt JPEG ---------------------------------------------------------

def test_a_jpeg_with_corrupt_entropy_data_is_refused_not_half_decoded(waymo_frame_file):
    import cv2
    import numpy as np

    from cloud_testkit import SleepDetector, front_jpeg, infer_request, stub_for

    jpeg = bytearray(front_jpeg(waymo_frame_file))
    for offset in (100_000, 200_000, 300_000):
        jpeg[offset] ^= 0x5A  # inside the entropy-coded data; markers and EOI intact
    corrupt = bytes(jpeg)
    assert cv2.imdecode(np.frombuffer(corrupt, np.uint8), cv2.IMREAD_COLOR) is not None, "cv2 alone accepts it"
    model = SleepDetector(0.0)
    with running_server(models=("sleep",), detectors={"sleep": [model]}) as server, stub_for(server) as stub:
        with pytest.raises(grpc.RpcError) as info:
            stub.Infer(infer_request(corrupt, model="sleep"), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "corrupt JPEG" in info.value.details() and "Corrupt JPEG data" in info.value.details()
        assert model.calls == 0, "the model never saw the half-decoded image"
        # The intact image still decodes, to exactly cv2's pixels (same library, same settings).
        reply = stub.Infer(infer_request(front_jpeg(waymo_frame_file), model="sleep"), timeout=10)
        assert (reply.decoded_size.width, reply.decoded_size.height) == (1920, 1280)


# -- metrics that count what happened -------------------------------------------------------------

def test_requests_past_their_deadline_before_decoding_count_as_deadline_drops(waymo_frame_file):
    from carlink.wire import unix_us

    from cloud_testkit import SleepDetector, front_jpeg, infer_request, stub_for

    with running_server(models=("sleep",), detectors={"sleep": [SleepDetector(0.0)]}) as server, \
            stub_for(server) as stub:
        late = infer_request(front_jpeg(waymo_frame_file), model="sleep", deadline_unix_us=unix_us() - 1_000_000)
        with pytest.raises(grpc.RpcError) as info:
            stub.Infer(late, timeout=10)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "before decoding" in info.value.details()
        text = server.metrics.exposition().decode()
    assert 'carlink_cloud_drops_total{model="sleep",reason="deadline"} 1.0' in text


def test_messages_over_grpcs_size_limit_are_counted():
    with running_server(models=("noop",), port=0, insecure=True, max_payload_bytes=100_000) as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}", [("grpc.max_send_message_length", 64 << 20)]) as channel:
            stub = pb_grpc.InferenceStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.Infer(pb.InferRequest(task="t", model="noop", encoding=pb.ENCODING_JPEG, payload=bytes(500_000)),
                           timeout=10)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # The handler counts it after gRPC has answered the client.
        assert wait_for(lambda: b"message_refused" in server.metrics.exposition(), 10.0)
        text = server.metrics.exposition().decode()
    assert 'carlink_cloud_drops_total{model="other",reason="message_refused"} 1.0' in text
    assert 'carlink_cloud_requests_total{code="RESOURCE_EXHAUSTED",model="other"} 1.0' in text
