"""TLS, mutual TLS and bearer tokens on a real server; certificates made by the test."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError

from carlink.cloud.config import ServerConfig
from carlink.proto import inference_pb2 as pb
from carlink.proto import inference_pb2_grpc as pb_grpc

from cloud_testkit import make_pki, running_server

TOKEN = "s3cr3t-token-for-tests"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("token") / "token"
    path.write_text(TOKEN + "\n")
    return path


def _stub(port: int, creds: grpc.ChannelCredentials) -> tuple[grpc.Channel, pb_grpc.InferenceStub]:
    channel = grpc.secure_channel(f"localhost:{port}", creds)
    return channel, pb_grpc.InferenceStub(channel)


def _ping_code(stub, metadata=None) -> grpc.StatusCode:
    try:
        stub.Ping(pb.PingRequest(), timeout=5, metadata=metadata)
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        return exc.code()


def test_tls_without_cert_and_key_is_a_clear_config_error():
    with pytest.raises(ValidationError, match="--insecure explicitly"):
        ServerConfig(models=("noop",))


def test_tls_server_answers_tls_client_and_refuses_plaintext(pki):
    cfg = ServerConfig(models=("noop",), port=0, tls_cert=pki.server_cert, tls_key=pki.server_key)
    with running_server(cfg) as server:
        channel, stub = _stub(server.port, grpc.ssl_channel_credentials(pki.ca_cert.read_bytes()))
        with channel:
            assert _ping_code(stub) == grpc.StatusCode.OK
        with grpc.insecure_channel(f"localhost:{server.port}") as plain:
            assert _ping_code(pb_grpc.InferenceStub(plain)) == grpc.StatusCode.UNAVAILABLE
        # A client that trusts another CA does not accept the server.
        channel, stub = _stub(server.port, grpc.ssl_channel_credentials(pki.other_ca_cert.read_bytes()))
        with channel:
            assert _ping_code(stub) == grpc.StatusCode.UNAVAILABLE


def test_mtls_requires_a_client_certificate_from_the_trusted_ca(pki):
    cfg = ServerConfig(models=("noop",), port=0, tls_cert=pki.server_cert, tls_key=pki.server_key,
                       client_ca=pki.ca_cert)
    with running_server(cfg) as server:
        ca = pki.ca_cert.read_bytes()
        channel, stub = _stub(server.port, grpc.ssl_channel_credentials(ca))  # no client certificate
        with channel:
            assert _ping_code(stub) == grpc.StatusCode.UNAVAILABLE
        rogue = grpc.ssl_channel_credentials(ca, pki.other_client_key.read_bytes(), pki.other_client_cert.read_bytes())
        channel, stub = _stub(server.port, rogue)
        with channel:
            assert _ping_code(stub) == grpc.StatusCode.UNAVAILABLE
        good = grpc.ssl_channel_credentials(ca, pki.client_key.read_bytes(), pki.client_cert.read_bytes())
        channel, stub = _stub(server.port, good)
        with channel:
            assert _ping_code(stub) == grpc.StatusCode.OK  # and the server kept serving throughout


def test_bearer_token_is_required_on_every_rpc_but_health(pki, token_file):
    cfg = ServerConfig(models=("noop",), port=0, tls_cert=pki.server_cert, tls_key=pki.server_key,
                       token_file=token_file)
    with running_server(cfg) as server:
        channel, stub = _stub(server.port, grpc.ssl_channel_credentials(pki.ca_cert.read_bytes()))
        with channel:
            for metadata in (None, [("authorization", "Bearer wrong")], [("authorization", TOKEN)],
                             [("authorization", "Bearer " + TOKEN[:-1])]):
                with pytest.raises(grpc.RpcError) as info:
                    stub.ListModels(pb.ListModelsRequest(), timeout=5, metadata=metadata)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert "token" in info.value.details() or "authorization" in info.value.details()
            ok = [("authorization", "Bearer " + TOKEN)]
            assert [m.name for m in stub.ListModels(pb.ListModelsRequest(), timeout=5, metadata=ok).models] == ["noop"]
            health = health_pb2_grpc.HealthStub(channel)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
                health_pb2.HealthCheckResponse.SERVING


def test_token_also_works_with_plaintext_when_insecure_is_explicit(token_file):
    with running_server(models=("noop",), port=0, insecure=True, token_file=token_file,
                        allow_plaintext_token=True) as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.InferenceStub(channel)
            assert _ping_code(stub) == grpc.StatusCode.UNAUTHENTICATED
            assert _ping_code(stub, [("authorization", "Bearer " + TOKEN)]) == grpc.StatusCode.OK
