"""Domain errors and their gRPC mapping.

Cores raise these; one boundary (the server interceptor in :mod:`shared.grpc_server`) turns them into gRPC
statuses with rich details (``google.rpc.BadRequest``, ``RetryInfo``, ``ErrorInfo``) via grpcio-status, so a caller
never sees ``UNKNOWN``. Clients turn an ``AioRpcError`` back into the same classes with :func:`from_rpc_error`.

Every message that leaves a service — a unary status, a streaming item's error — goes through
:func:`public_message` (the one redaction function :func:`shared.logging.redact`, then a bound of
:data:`MAX_MESSAGE_CHARS`); client input quoted in a message should be cut with :func:`bounded` (200 characters)
where the message is built.

    VantageError (INTERNAL)
    ├── InvalidArgument (INVALID_ARGUMENT, BadRequest field violations)
    ├── NotFound (NOT_FOUND)
    ├── FailedPrecondition (FAILED_PRECONDITION)
    ├── Unimplemented (UNIMPLEMENTED)
    ├── Unauthenticated (UNAUTHENTICATED)
    ├── DeadlineExceeded (DEADLINE_EXCEEDED)
    ├── Cancelled (CANCELLED)
    └── RetryableError — worth another attempt; may carry the provider's retry-after
        ├── Unavailable (UNAVAILABLE)
        └── ResourceExhausted (RESOURCE_EXHAUSTED, rate limits)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from shared.logging import bounded, redact, redact_bounded  # noqa: F401  (bounded, redact: public here too)

ERROR_DOMAIN = "vantage.dev"
#: Characters of an error message sent to a client (a status message, a stream item's error).
MAX_MESSAGE_CHARS = 1_000


def public_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` as it may leave the service: secrets masked (:func:`shared.logging.redact`) and then cut to
    ``limit`` characters (:func:`bounded`). Used by the server interceptor for every status message and field
    violation, and by streaming RPCs for each item's error."""
    return redact_bounded(text, limit)


class VantageError(Exception):
    """Base class. ``message`` is safe to show a user (never contains secrets)."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        provider: str = "",
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.provider = provider
        self.metadata = dict(metadata or {})
        #: Set on an error read back from an RPC whose server said "do not retry" (gRFC A6 pushback, a negative
        #: ``grpc-retry-pushback-ms`` trailer): the service behind it already spent its own retries.
        self.retried_by_server = False

    def details(self) -> list[object]:
        """Rich detail messages to attach to the status."""
        out: list[object] = []
        if self.reason or self.provider:
            md = dict(self.metadata)
            if self.provider:
                md["provider"] = self.provider
            out.append(error_details_pb2.ErrorInfo(reason=self.reason or self.code.name, domain=ERROR_DOMAIN, metadata=md))
        return out

    def __str__(self) -> str:
        return self.message


class InvalidArgument(VantageError):
    """Bad input. ``field`` (or ``violations``) names what is wrong, as ``google.rpc.BadRequest``."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(
        self,
        message: str,
        *,
        field: str = "",
        violations: Iterable[tuple[str, str]] = (),
        **kw: object,
    ) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.violations = list(violations) or ([(field, message)] if field else [])

    def details(self) -> list[object]:
        out = super().details()
        if self.violations:
            out.insert(
                0,
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in self.violations
                    ]
                ),
            )
        return out


class NotFound(VantageError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(VantageError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unimplemented(VantageError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Unauthenticated(VantageError):
    code = grpc.StatusCode.UNAUTHENTICATED


class DeadlineExceeded(VantageError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(VantageError):
    code = grpc.StatusCode.CANCELLED


class RetryableError(VantageError):
    """Worth another attempt. ``retry_after`` (seconds) is the provider's hint, when it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after

    def details(self) -> list[object]:
        out = super().details()
        if self.retry_after is not None and self.retry_after >= 0:
            secs = int(self.retry_after)
            nanos = int((self.retry_after - secs) * 1e9)
            out.append(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=secs, nanos=nanos)))
        return out


class Unavailable(RetryableError):
    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(RetryableError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


_BY_CODE: dict[grpc.StatusCode, type[VantageError]] = {
    c.code: c
    for c in (
        InvalidArgument,
        NotFound,
        FailedPrecondition,
        Unimplemented,
        Unauthenticated,
        DeadlineExceeded,
        Cancelled,
        Unavailable,
        ResourceExhausted,
    )
}

RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


def to_status(err: VantageError) -> grpc.Status:
    """The ``grpc.Status`` (code, message, packed details) for ``err``."""
    details = []
    for d in err.details():
        a = any_pb2.Any()
        a.Pack(d)
        details.append(a)
    code_value = getattr(code_pb2, err.code.name)
    return rpc_status.to_status(status_pb2.Status(code=code_value, message=err.message, details=details))


def from_rpc_error(e: grpc.aio.AioRpcError | grpc.RpcError) -> VantageError:
    """Turn a failed RPC back into a :class:`VantageError`, keeping field violations, retry-after and ErrorInfo."""
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    message = (e.details() if hasattr(e, "details") else str(e)) or code.name
    cls = _BY_CODE.get(code, VantageError)
    violations: list[tuple[str, str]] = []
    retry_after: float | None = None
    reason = provider = ""
    try:
        st = rpc_status.from_call(e)
    except Exception:  # a status without details, or a mismatch the library refuses
        st = None
    if st is not None:
        for d in st.details:
            if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                br = error_details_pb2.BadRequest()
                d.Unpack(br)
                violations = [(v.field, v.description) for v in br.field_violations]
            elif d.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                ri = error_details_pb2.RetryInfo()
                d.Unpack(ri)
                retry_after = ri.retry_delay.seconds + ri.retry_delay.nanos / 1e9
            elif d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                ei = error_details_pb2.ErrorInfo()
                d.Unpack(ei)
                reason, provider = ei.reason, ei.metadata.get("provider", "")
    if cls is InvalidArgument:
        return InvalidArgument(message, violations=violations, reason=reason, provider=provider)
    err: VantageError
    if issubclass(cls, RetryableError):
        err = cls(message, retry_after=retry_after, reason=reason, provider=provider)
    else:
        err = cls(message, reason=reason, provider=provider)
    if cls is VantageError:
        err.code = code
    err.retried_by_server = _pushed_back(e)
    return err


#: Trailing-metadata key of gRFC A6 server pushback; a negative value tells a gRPC client not to retry the call
#: (set by :func:`shared.grpc_server.without_client_retry`).
RETRY_PUSHBACK_KEY = "grpc-retry-pushback-ms"


def _pushed_back(e: Any) -> bool:
    """True when the failed call's trailers carry a negative ``grpc-retry-pushback-ms``: the server asked not to be
    retried (gRFC A6)."""
    try:
        trailers = e.trailing_metadata() if hasattr(e, "trailing_metadata") else None
    except Exception:
        return False
    for key, value in trailers or ():
        if key == RETRY_PUSHBACK_KEY:
            try:
                return int(value) < 0
            except (TypeError, ValueError):
                return False
    return False
