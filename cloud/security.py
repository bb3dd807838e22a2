"""Transport security (TLS, optional mutual TLS) and bearer-token authentication."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Callable

import grpc

from carlink.secrets import CredentialError, check_ca_bundle, check_cert_and_key

# Load balancers and orchestrators probe health without credentials.
UNAUTHENTICATED_PREFIXES = ("/grpc.health.v1.Health/",)


def server_credentials(cert: Path, key: Path, client_ca: Path | None = None) -> grpc.ServerCredentials:
    """TLS with the server's certificate; with ``client_ca``, clients must present a certificate it signed.

    The files are checked first (CredentialError names the option and the file): gRPC itself
    reports a bad certificate or key only as a failure to bind the port.
    """
    try:
        check_cert_and_key(cert, key)
    except CredentialError as exc:
        raise CredentialError(f"--tls-cert/--tls-key: {exc}") from None
    if client_ca:
        try:
            check_ca_bundle(client_ca)
        except CredentialError as exc:
            raise CredentialError(f"--client-ca: {exc}") from None
    root = Path(client_ca).read_bytes() if client_ca else None
    return grpc.ssl_server_credentials(
        [(Path(key).read_bytes(), Path(cert).read_bytes())],
        root_certificates=root,
        require_client_auth=root is not None,
    )


RefusalObserver = Callable[[str, grpc.StatusCode, str, str], None]  # (method, code, reason, peer)


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Refuses calls whose ``authorization`` metadata is not ``Bearer <token>`` (UNAUTHENTICATED).

    The scheme is matched case-insensitively (RFC 6750 via RFC 7235), the token exactly and in
    constant time. ``on_refused`` hears of each refused call as it is answered (method, status
    code, a short reason and the peer's address), never the token presented.
    """

    def __init__(self, token: str | bytes, on_refused: RefusalObserver | None = None,
                 exempt_prefixes: tuple[str, ...] = UNAUTHENTICATED_PREFIXES) -> None:
        self._token = token.encode() if isinstance(token, str) else bytes(token)
        self._on_refused = on_refused
        self._exempt = exempt_prefixes

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method or ""
        if method.startswith(self._exempt):
            return continuation(handler_call_details)
        presented = b""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                presented = value.encode() if isinstance(value, str) else bytes(value)
                break
        reason = self._problem(presented)
        if reason is None:
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is None:  # an unknown method: gRPC answers UNIMPLEMENTED
            return None
        return _refusing_handler(handler, method, reason, self._on_refused)

    def _problem(self, presented: bytes) -> str | None:
        """None when ``presented`` carries the token; else why not, in a few words."""
        if not presented:
            return "missing authorization metadata"
        scheme, _, credentials = presented.partition(b" ")
        if scheme.lower() != b"bearer":
            return "authorization is not a Bearer credential"
        # compare_digest: the time taken does not reveal how much of the token matched.
        if hmac.compare_digest(credentials.strip(b" "), self._token):
            return None
        return "invalid bearer token"


def _refusing_handler(handler: grpc.RpcMethodHandler, method: str, reason: str,
                      on_refused: RefusalObserver | None) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that reports the refusal and aborts with UNAUTHENTICATED."""
    code = grpc.StatusCode.UNAUTHENTICATED

    def abort(request_or_iterator, context):
        if on_refused is not None:
            on_refused(method, code, reason, context.peer())
        context.abort(code, f"{reason} for {method}")

    kw = dict(request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort, **kw)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort, **kw)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort, **kw)
    return grpc.unary_unary_rpc_method_handler(abort, **kw)
