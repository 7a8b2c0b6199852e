"""Transport security and per-call authentication for Vantage's gRPC services.

Two independent, optional layers, both configured in :class:`~shared.config.Settings` (``VANTAGE_TLS_*``,
``VANTAGE_AUTH_*``):

* **TLS / mTLS** (reference/performance.md §6; grpc/grpc ``examples/python/auth``): a server with
  ``tls_cert_file`` + ``tls_key_file`` listens with ``grpc.ssl_server_credentials``; with ``tls_ca_file`` too it
  requires client certificates that chain to that CA (``require_client_auth``) unless ``tls_client_auth`` is false.
  Clients dial with ``grpc.ssl_channel_credentials`` (root = ``tls_ca_file`` or the system roots, client
  certificate = ``tls_client_cert_file``) whenever TLS is configured; ``tls_server_name`` overrides the name checked
  in the server certificate (``grpc.ssl_target_name_override``), e.g. when dialling ``127.0.0.1``.
* **Bearer token**: with ``auth_token`` set every server requires ``authorization: Bearer <token>`` on every call
  (compared in constant time with :func:`hmac.compare_digest`), except health checks and reflection while
  ``auth_allow_health`` is true; a missing or wrong token ends the call with ``UNAUTHENTICATED`` and a message that
  never contains what the client sent. Clients send the token: as call credentials
  (``grpc.access_token_call_credentials``, composed with the TLS credentials) on TLS channels, and as plain
  metadata through a client interceptor on insecure channels — gRPC refuses call credentials on an insecure
  channel, and plaintext is for loopback use only.

Every secret of the settings (provider keys, the token) is registered with :func:`shared.logging.register_secret`
so that log lines never carry it, whatever key it is logged under. :func:`redact` (the same function as
:func:`shared.logging.redact`) is the one place secrets are masked, for logs and for unary and streaming errors.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from pydantic import SecretStr

from shared.config import BaseServiceSettings
from shared.logging import redact, register_secret, register_url_password

#: Metadata key of the bearer token (gRPC metadata keys are lower case).
AUTHORIZATION_KEY = "authorization"
#: Methods that stay reachable without a token when ``auth_allow_health`` is true: probes (Docker, Kubernetes,
#: ``vantage doctor``) and tools (grpcurl ``list`` / ``describe``) must work without the secret.
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
#: The one message an unauthenticated caller gets: it names no token, expected or received.
UNAUTHENTICATED_MESSAGE = "missing or invalid bearer token"


class TLSConfigError(ValueError):
    """The TLS settings are inconsistent or name a file that cannot be read."""


def _read_pem(path: str, setting: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise TLSConfigError(f"{setting}: cannot read {path}: {e.strerror or e}") from None


def _pair(cert: str, key: str, cert_setting: str, key_setting: str) -> tuple[bytes, bytes] | None:
    """(key PEM, cert PEM) when both paths are set, None when neither; an error when only one is."""
    if not cert and not key:
        return None
    if not cert or not key:
        missing = cert_setting if not cert else key_setting
        raise TLSConfigError(f"{cert_setting} and {key_setting} go together; {missing} is empty")
    return _read_pem(key, key_setting), _read_pem(cert, cert_setting)


def register_settings_secrets(settings: BaseServiceSettings) -> None:
    """Register every ``SecretStr`` value of ``settings`` (provider keys, auth token) and the database password
    for log redaction; so are the passwords of the database URLs (``database_url``, the search service's
    ``search_database_url``)."""
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr):
            register_secret(value.get_secret_value())
    for name in ("database_url", "search_database_url"):  # only models with a database read these
        register_url_password(getattr(settings, name, ""))


def auth_token(settings: BaseServiceSettings) -> str | None:
    """The bearer token, or None when auth is off (unset or empty)."""
    token = settings.auth_token.get_secret_value() if settings.auth_token is not None else ""
    if not token:
        return None
    register_secret(token)
    return token


# --- server side ---------------------------------------------------------------------------------------------


def server_tls_enabled(settings: BaseServiceSettings) -> bool:
    """True when servers listen with TLS (a certificate and key are configured)."""
    return bool(settings.tls_cert_file or settings.tls_key_file)


def server_credentials(settings: BaseServiceSettings) -> grpc.ServerCredentials | None:
    """TLS credentials for ``add_secure_port``, or None for plaintext.

    With ``tls_ca_file`` the server verifies client certificates against it, and requires one (mTLS) while
    ``tls_client_auth`` is true. Raises :class:`TLSConfigError` for a half-configured pair or an unreadable file.
    """
    pair = _pair(settings.tls_cert_file, settings.tls_key_file, "VANTAGE_TLS_CERT_FILE", "VANTAGE_TLS_KEY_FILE")
    if pair is None:
        return None
    ca = _read_pem(settings.tls_ca_file, "VANTAGE_TLS_CA_FILE") if settings.tls_ca_file else None
    return grpc.ssl_server_credentials(
        [pair], root_certificates=ca, require_client_auth=bool(ca) and settings.tls_client_auth
    )


async def _deny(_request: Any, context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)


# One deny handler per RPC shape, built once: stable objects let the ContextInterceptor cache its wrappers. A
# coroutine handler serves every shape (grpc.aio awaits it, and the abort ends the call before any write). No
# request deserializer: an unauthenticated caller's bytes are never parsed.
_DENY_UNARY_UNARY = grpc.unary_unary_rpc_method_handler(_deny)
_DENY_UNARY_STREAM = grpc.unary_stream_rpc_method_handler(_deny)
_DENY_STREAM_UNARY = grpc.stream_unary_rpc_method_handler(_deny)
_DENY_STREAM_STREAM = grpc.stream_stream_rpc_method_handler(_deny)


def _deny_handler(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that aborts with UNAUTHENTICATED before reading any request."""
    if handler.unary_unary:
        return _DENY_UNARY_UNARY
    if handler.unary_stream:
        return _DENY_UNARY_STREAM
    if handler.stream_unary:
        return _DENY_STREAM_UNARY
    return _DENY_STREAM_STREAM


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Require ``authorization: Bearer <token>`` on every call (health and reflection exempt when
    ``allow_health``); anything else → ``UNAUTHENTICATED``.

    The comparison is constant-time over the token bytes (:func:`hmac.compare_digest`; only the length can leak).
    Measured overhead of such an interceptor: within run-to-run noise (reference/performance.md §1.2).
    """

    def __init__(self, token: str, *, allow_health: bool = True) -> None:
        if not token:
            raise ValueError("BearerTokenInterceptor needs a non-empty token")
        self._expected = token.encode()
        self._allow_health = allow_health

    def authorized(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> bool:
        """True when ``metadata`` carries the expected bearer token (scheme case-insensitive, RFC 6750 §2.1)."""
        for key, value in metadata or ():
            if key != AUTHORIZATION_KEY:
                continue
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            scheme, _, credential = text.strip().partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(credential.strip().encode(), self._expected):
                return True
        return False

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method or ""
        if self._allow_health and method.startswith(OPEN_METHOD_PREFIXES):
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        if handler is None:
            # Unknown method: UNIMPLEMENTED, token or not (the method list is public through reflection anyway).
            # Denying it instead would hand arbitrary client-chosen method names to the metrics and log labels.
            return None
        if self.authorized(handler_call_details.invocation_metadata):
            return handler
        return _deny_handler(handler)


def server_interceptors(settings: BaseServiceSettings) -> list[grpc.aio.ServerInterceptor]:
    """The security interceptors a server needs under ``settings`` (empty when auth is off)."""
    token = auth_token(settings)
    return [BearerTokenInterceptor(token, allow_health=settings.auth_allow_health)] if token else []


# --- client side ---------------------------------------------------------------------------------------------


def client_tls_enabled(settings: BaseServiceSettings) -> bool:
    """True when clients dial over TLS: ``tls`` when set, else when any certificate or CA file is configured."""
    if settings.tls is not None:
        return settings.tls
    return bool(settings.tls_ca_file or settings.tls_client_cert_file or settings.tls_cert_file)


def channel_credentials(settings: BaseServiceSettings) -> grpc.ChannelCredentials | None:
    """Credentials for ``grpc.aio.secure_channel`` (TLS, the client certificate when configured, and the bearer
    token as call credentials), or None when clients dial in plaintext."""
    if not client_tls_enabled(settings):
        return None
    ca = _read_pem(settings.tls_ca_file, "VANTAGE_TLS_CA_FILE") if settings.tls_ca_file else None
    pair = _pair(
        settings.tls_client_cert_file,
        settings.tls_client_key_file,
        "VANTAGE_TLS_CLIENT_CERT_FILE",
        "VANTAGE_TLS_CLIENT_KEY_FILE",
    )
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=pair[0] if pair else None, certificate_chain=pair[1] if pair else None
    )
    token = auth_token(settings)
    if token:
        creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(token))
    return creds


def channel_security_options(settings: BaseServiceSettings) -> list[tuple[str, Any]]:
    """Extra channel args: the expected server name when ``tls_server_name`` overrides the dialled host."""
    if settings.tls_server_name and client_tls_enabled(settings):
        return [("grpc.ssl_target_name_override", settings.tls_server_name)]
    return []


class _TokenMetadata:
    """Adds ``authorization: Bearer <token>`` to every call of an insecure channel (loopback use: gRPC refuses
    call credentials without a secure transport)."""

    def __init__(self, token: str) -> None:
        self._pair = (AUTHORIZATION_KEY, f"Bearer {token}")

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        pairs = [(k, v) for k, v in (details.metadata or ()) if k != AUTHORIZATION_KEY]
        return details._replace(metadata=grpc.aio.Metadata(*pairs, self._pair))


# grpc.aio files each interceptor under the FIRST call shape it implements (an if/elif chain over the four
# interfaces in grpc/aio/_channel.py), so one object implementing all four only ever sees unary-unary calls: the
# token must come from four objects, one per shape, or streaming calls go out without it.
class _UnaryUnaryToken(_TokenMetadata, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


class _UnaryStreamToken(_TokenMetadata, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


class _StreamUnaryToken(_TokenMetadata, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details), request_iterator)


class _StreamStreamToken(_TokenMetadata, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details), request_iterator)


def client_interceptors(settings: BaseServiceSettings) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors of an insecure channel: the token as metadata when auth is on (TLS channels carry it as call
    credentials instead, see :func:`channel_credentials`)."""
    token = auth_token(settings)
    if token and not client_tls_enabled(settings):
        return [cls(token) for cls in (_UnaryUnaryToken, _UnaryStreamToken, _StreamUnaryToken, _StreamStreamToken)]
    return []


__all__ = [
    "AUTHORIZATION_KEY",
    "UNAUTHENTICATED_MESSAGE",
    "BearerTokenInterceptor",
    "TLSConfigError",
    "auth_token",
    "channel_credentials",
    "channel_security_options",
    "client_interceptors",
    "client_tls_enabled",
    "redact",
    "register_settings_secrets",
    "server_credentials",
    "server_interceptors",
    "server_tls_enabled",
]
