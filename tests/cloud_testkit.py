"""Shared helpers of the cloud server tests: real servers on loopback, real images, certificates."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import grpc
import numpy as np

from carlink.detection import Detection
from carlink.proto import inference_pb2 as pb
from carlink.proto import inference_pb2_grpc as pb_grpc
from carlink.zoo.base import Detector, ModelSpec

from carlink.cloud.config import ServerConfig
from carlink.cloud.server import InferenceServer


def front_jpeg(waymo_frame_file: Path) -> bytes:
    """The real FRONT camera JPEG (1920x1280) of the one complete Waymo Frame."""
    from carlink.datasets.waymo import read_waymo_frames

    frame = next(iter(read_waymo_frames(waymo_frame_file)))
    (front,) = [im for im in frame.images if im.camera.name == "FRONT"]
    return front.data


def infer_request(payload: bytes, model: str = "noop", task: str = "front_det",
                  encoding: int = pb.ENCODING_JPEG, **kw) -> pb.InferRequest:
    return pb.InferRequest(task=task, model=model, encoding=encoding, payload=payload, **kw)


@contextlib.contextmanager
def running_server(config: ServerConfig | None = None, detectors=None, **overrides) -> Iterator[InferenceServer]:
    """A real server on a free loopback port, stopped (drained) afterwards."""
    if config is None:
        settings = dict(models=("noop",), port=0, insecure=True)
        settings.update(overrides)
        config = ServerConfig(**settings)
    server = InferenceServer(config, detectors=detectors)
    server.start()
    try:
        yield server
    finally:
        server.stop(grace=1.0)


@contextlib.contextmanager
def stub_for(server: InferenceServer, credentials: grpc.ChannelCredentials | None = None,
             options: Sequence[tuple[str, object]] = ()) -> Iterator[pb_grpc.InferenceStub]:
    target = f"127.0.0.1:{server.port}"
    opts = [("grpc.max_send_message_length", 64 * 1024 * 1024), *options]
    channel = grpc.secure_channel(target, credentials, opts) if credentials else grpc.insecure_channel(target, opts)
    with channel:
        yield pb_grpc.InferenceStub(channel)


class SleepDetector(Detector):
    """A stand-in model that takes a fixed time and counts its calls (for queueing tests)."""

    pretrained = True

    def __init__(self, seconds: float, name: str = "sleep", batchable: bool = False) -> None:
        self.spec = ModelSpec(name=name, family="test", input_size=None, classes=(), batchable=batchable)
        self.seconds = seconds
        self.calls = 0
        self.batch_sizes: list[int] = []
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray) -> list[Detection]:
        return self.detect_batch([image])[0]

    def detect_batch(self, images) -> list[list[Detection]]:
        with self._lock:
            self.calls += 1
            self.batch_sizes.append(len(images))
        time.sleep(self.seconds)
        return [[] for _ in images]


@dataclass(frozen=True)
class Pki:
    """A throwaway CA with a server certificate (for 127.0.0.1/localhost) and a client certificate."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path  # a second CA that signed nothing here
    other_client_cert: Path  # signed by other_ca: not trusted by the server
    other_client_key: Path


def make_pki(folder: Path) -> Pki:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(key, path: Path) -> Path:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        return path

    def write_cert(cert, path: Path) -> Path:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def make_ca(cn: str):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        return key, cert

    def make_leaf(cn: str, ca_key, ca_cert, server: bool):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca_cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(
                       [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    ca_key, ca = make_ca("carlink test CA")
    other_key, other = make_ca("untrusted test CA")
    s_key, s_cert = make_leaf("localhost", ca_key, ca, server=True)
    c_key, c_cert = make_leaf("car-0001", ca_key, ca, server=False)
    o_key, o_cert = make_leaf("car-rogue", other_key, other, server=False)
    return Pki(
        ca_cert=write_cert(ca, folder / "ca.pem"),
        server_cert=write_cert(s_cert, folder / "server.pem"), server_key=write_key(s_key, folder / "server.key"),
        client_cert=write_cert(c_cert, folder / "client.pem"), client_key=write_key(c_key, folder / "client.key"),
        other_ca_cert=write_cert(other, folder / "other_ca.pem"),
        other_client_cert=write_cert(o_cert, folder / "rogue.pem"),
        other_client_key=write_key(o_key, folder / "rogue.key"),
    )
