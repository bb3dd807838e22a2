"""Transport security (TLS, optional mutual TLS) and bearer-token authentication."""

from __future__ import annotations

import hmac
from pathlib import Path

import grpc

# Load balancers and orchestrators probe health without credentials.
UNAUTHENTICATED_PREFIXES = ("/grpc.health.v1.Health/",)


def server_credentials(cert: Path, key: Path, client_ca: Path | None = None) -> grpc.ServerCredentials:
    """TLS with the server's certificate; with ``client_ca``, clients must present a certificate it signed."""
    root = Path(client_ca).read_bytes() if client_ca else None
    return grpc.ssl_server_credentials(
        [(Path(key).read_bytes(), Path(cert).read_bytes())],
        root_certificates=root,
        require_client_auth=root is not None,
    )


def read_token(path: Path) -> bytes:
    token = Path(path).read_text().strip()
    if not token:
        raise ValueError(f"token file {path} is empty")
    if any(c.isspace() for c in token):
        raise ValueError(f"token file {path}: the token must be one line without spaces")
    return token.encode()


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Refuses calls whose ``authorization`` metadata is not ``Bearer <token>`` (UNAUTHENTICATED)."""

    def __init__(self, token: bytes, exempt_prefixes: tuple[str, ...] = UNAUTHENTICATED_PREFIXES) -> None:
        self._expected = b"Bearer " + token
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
        # compare_digest: the time taken does not reveal how much of the token matched.
        if hmac.compare_digest(presented, self._expected):
            return continuation(handler_call_details)
        reason = "missing authorization metadata" if not presented else "invalid bearer token"
        handler = continuation(handler_call_details)
        return _refusing_handler(handler, f"{reason} for {method}") if handler is not None else None


def _refusing_handler(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that aborts with UNAUTHENTICATED."""

    def abort(request_or_iterator, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    kw = dict(request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort, **kw)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort, **kw)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort, **kw)
    return grpc.unary_unary_rpc_method_handler(abort, **kw)
