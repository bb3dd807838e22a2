"""How the car reaches the cloud, and whether the cloud lets it in.

* :func:`open_cloud_channel`: the gRPC channel and bearer token that ``[cloud]`` describes. TLS
  unless ``insecure`` is set (the server's CA from ``ca_cert``, else the system's roots), the car's
  certificate and key for mutual TLS, the token read by carlink.secrets. Every file is checked
  before the channel exists; ValueError names the key (``cloud.client_key: ...``).
* :class:`AccessMonitor`: follows the status of the car's calls. A refusal (UNAUTHENTICATED,
  PERMISSION_DENIED) puts the car in the "refused" state: an error line once per change of state,
  a counter per refused call, a 0/1 state the daemon reports (metric and sd_notify STATUS). The
  car then runs on-car, as it must, but not in silence.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import Callable

import grpc

from carlink.onboard.config import CloudConfig, OnboardConfig
from carlink.secrets import CredentialError, check_ca_bundle, check_cert_and_key, read_token_file

log = logging.getLogger(__name__)

REFUSED_CODES = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})

# Reconnect quickly after the server returns: gRPC's default backoff grows to two minutes.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
    ("grpc.enable_retries", 0),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def _checked(key: str, check: Callable[[], object]):
    try:
        return check()
    except CredentialError as exc:
        raise ValueError(f"cloud.{key} {exc}") from None


def channel_credentials(cloud: CloudConfig, resolve: Callable[[str], Path]) -> grpc.ChannelCredentials | None:
    """TLS credentials of ``cloud`` (None for plaintext), every file checked first."""
    if cloud.insecure:
        return None
    root = None
    if cloud.ca_cert:
        ca = resolve(cloud.ca_cert)
        _checked("ca_cert", lambda: check_ca_bundle(ca))
        root = ca.read_bytes()
    chain = key = None
    if cloud.client_cert and cloud.client_key:
        cert_path, key_path = resolve(cloud.client_cert), resolve(cloud.client_key)
        _checked("client_cert/client_key", lambda: check_cert_and_key(cert_path, key_path))
        chain, key = cert_path.read_bytes(), key_path.read_bytes()
    return grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)


def open_cloud_channel(cfg: OnboardConfig) -> tuple[grpc.Channel, str | None]:
    """The channel to ``[cloud] address`` and the bearer token to send (None without token_file)."""
    cloud = cfg.cloud
    token = _checked("token_file", lambda: read_token_file(cfg.resolve(cloud.token_file), log)) \
        if cloud.token_file else None
    creds = channel_credentials(cloud, cfg.resolve)
    if creds is None:
        return grpc.insecure_channel(cloud.address, options=CHANNEL_OPTIONS), token
    return grpc.secure_channel(cloud.address, creds, options=CHANNEL_OPTIONS), token


def credentials_fingerprint(cfg: OnboardConfig) -> str:
    """A digest of the [cloud] settings and of the token, CA, certificate and key files' bytes: a
    reload whose fingerprint differs opens a new channel, so a rotated token or certificate
    takes effect at SIGHUP even when the paths stay the same."""
    digest = hashlib.sha256(cfg.cloud.model_dump_json().encode())
    for key in ("token_file", "ca_cert", "client_cert", "client_key"):
        name = getattr(cfg.cloud, key)
        if name:
            try:
                digest.update(cfg.resolve(name).read_bytes())
            except OSError:
                digest.update(b"\0unreadable")  # open_cloud_channel names the problem
    return digest.hexdigest()


class AccessMonitor:
    """Whether the cloud accepts the car's calls, from the status codes they end with.

    A code in REFUSED_CODES means refused; OK means accepted; other codes (unreachable, late,
    bad input) say nothing about access. ``on_refusal(code)`` hears of every refused call,
    ``on_change(refused)`` of every change of state.
    """

    def __init__(self, address: str, on_refusal: Callable[[str], None] | None = None,
                 on_change: Callable[[str | None], None] | None = None) -> None:
        self.address = address
        self.refused: str | None = None  # "UNAUTHENTICATED: <server's words>" while refused
        self._on_refusal = on_refusal
        self._on_change = on_change
        self._lock = threading.Lock()

    def observe(self, code: grpc.StatusCode | None, detail: str = "") -> None:
        if code in REFUSED_CODES:
            if self._on_refusal is not None:
                self._on_refusal(code.name)
            self._set(f"{code.name}: {detail}" if detail else code.name)
        elif code == grpc.StatusCode.OK:
            self._set(None)

    def _set(self, refused: str | None) -> None:
        with self._lock:
            if (refused is None) == (self.refused is None):
                if refused is not None:
                    self.refused = refused
                return
            self.refused = refused
        if refused is not None:
            log.error("cloud %s refuses this car's calls: %s; running on-car only until it accepts them "
                      "(check cloud.token_file, client_cert/client_key)", self.address, refused)
        else:
            log.warning("cloud %s accepts this car's calls again", self.address)
        if self._on_change is not None:
            self._on_change(refused)
