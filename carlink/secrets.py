"""Credentials that both the car and the cloud read: one reader each, one set of rules.

* :func:`read_token_file`: the bearer token of ``[cloud] token_file`` (daemon) and
  ``--token-file`` (server).
* :func:`check_cert_and_key` and :func:`check_ca_bundle`: PEM files checked with the standard
  library's ``ssl`` (OpenSSL) before gRPC sees them, so a bad certificate or key is refused by
  name at start-up, not reported by gRPC as "Failed to bind" or as a connection that never comes up.

Errors are :class:`CredentialError` (a ValueError) whose message starts with the file's path;
callers prefix the setting that named it (``cloud.token_file``, ``--tls-key``...).
"""

from __future__ import annotations

import logging
import os
import ssl
import stat
from pathlib import Path

_log = logging.getLogger(__name__)


class CredentialError(ValueError):
    """A token, certificate or key file cannot be used (the message names the file)."""


def read_token_file(path: str | os.PathLike[str], log: logging.Logger | None = None) -> str:
    """The bearer token in ``path``: one line of visible ASCII without spaces (RFC 6750's
    b64token and more), surrounding whitespace ignored. A file that group or others may read is
    warned about on ``log``: the token is a credential."""
    p = Path(path)
    try:
        raw = p.read_bytes()
        mode = p.stat().st_mode
    except OSError as exc:
        raise CredentialError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise CredentialError(f"{p}: the token must be ASCII text") from None
    if not token:
        raise CredentialError(f"{p} is empty")
    if any(not 0x21 <= ord(c) <= 0x7E for c in token):
        raise CredentialError(f"{p}: the token must be one line of visible characters without spaces")
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        (log or _log).warning("token file %s is readable by %s (mode %s); it holds a credential: chmod 600 it",
                              p, "group and others" if mode & stat.S_IRGRP and mode & stat.S_IROTH
                              else "group" if mode & stat.S_IRGRP else "others", oct(stat.S_IMODE(mode)))
    return token


def _no_password() -> bytes:
    # gRPC cannot use an encrypted key either; an empty password makes OpenSSL fail, not prompt.
    return b""


def check_cert_and_key(cert: str | os.PathLike[str], key: str | os.PathLike[str]) -> None:
    """A PEM certificate chain and the (unencrypted) private key that matches it."""
    _check_pem_certificates(cert, "certificate")
    try:
        text = Path(key).read_bytes()
    except OSError as exc:
        raise CredentialError(f"{key}: cannot read: {exc.strerror or exc}") from None
    if b"PRIVATE KEY-----" not in text:
        raise CredentialError(f"{key}: not a PEM private key (no '-----BEGIN ... PRIVATE KEY-----' block)")
    if b"ENCRYPTED" in text:
        raise CredentialError(f"{key}: an encrypted private key; gRPC needs it unencrypted (readable by the service only)")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(str(cert), str(key), password=_no_password)
    except ssl.SSLError as exc:
        reason = _reason(exc)
        if "mismatch" in reason:
            raise CredentialError(f"{key}: the private key does not belong to the certificate {cert} ({reason})") from None
        raise CredentialError(f"{key}: not a valid PEM private key ({reason})") from None


def _check_pem_certificates(path: str | os.PathLike[str], what: str) -> None:
    if not Path(path).is_file():
        raise CredentialError(f"{path}: no such file")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(path))
    except ssl.SSLError as exc:
        raise CredentialError(f"{path}: not a PEM {what} ({_reason(exc)})") from None
    except OSError as exc:
        raise CredentialError(f"{path}: cannot read: {exc.strerror or exc}") from None


def check_ca_bundle(path: str | os.PathLike[str]) -> None:
    """A file of one or more PEM CA certificates."""
    _check_pem_certificates(path, "CA certificate bundle")


def _reason(exc: ssl.SSLError) -> str:
    """OpenSSL's reason in words ("KEY_VALUES_MISMATCH" -> "key values mismatch")."""
    reason = getattr(exc, "reason", None)
    return reason.replace("_", " ").lower() if reason else str(exc)
