"""Exceptions of the Vantage client: one class per gRPC status the services use, built from the status and its rich
details (``grpc-status-details-bin``: a ``google.rpc.Status`` whose ``details`` hold ``google.rpc.BadRequest``,
``RetryInfo``, ``ErrorInfo``…; https://google.aip.dev/193 and grpc/grpc ``doc/statuscodes.md``).

Every method of :class:`~vantage_client.VantageClient` and :class:`~vantage_client.AsyncVantageClient` raises only
these (never a ``grpc.RpcError``), plus ``ValueError`` / ``TypeError`` for arguments refused before any call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

#: Trailing-metadata key of the serialized ``google.rpc.Status`` (grpc/grpc ``src/python/grpcio_status``).
STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One ``google.rpc.BadRequest.FieldViolation``: the request field (a path such as ``org_eval.models[2]``) and
    why it was refused."""

    field: str
    description: str


class VantageError(Exception):
    """A call failed. ``code`` is the gRPC status (``grpc.StatusCode``), ``message`` the server's status message,
    ``reason`` / ``domain`` / ``metadata`` those of a ``google.rpc.ErrorInfo`` detail when the server sent one."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None, reason: str = "", domain: str = "",
                 metadata: dict[str, str] | None = None, method: str = "") -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.reason = reason
        self.domain = domain
        self.metadata = dict(metadata or {})
        self.method = method

    def __str__(self) -> str:
        where = f"{self.method}: " if self.method else ""
        return f"{where}{self.code.name}: {self.message}"


class InvalidArgument(VantageError):
    """INVALID_ARGUMENT. ``field_violations`` lists the fields the server named (``google.rpc.BadRequest``)."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str, *, field_violations: list[FieldViolation] | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.field_violations: list[FieldViolation] = list(field_violations or [])

    @property
    def fields(self) -> list[str]:
        """The names of the refused fields, in the server's order."""
        return [v.field for v in self.field_violations]


class NotFound(VantageError):
    """NOT_FOUND, e.g. no run with that id."""

    code = grpc.StatusCode.NOT_FOUND


class PermissionDenied(VantageError):
    """PERMISSION_DENIED, e.g. a server path named in a request (send the content instead)."""

    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(VantageError):
    """UNAUTHENTICATED: no bearer token, or the wrong one."""

    code = grpc.StatusCode.UNAUTHENTICATED


class DeadlineExceeded(VantageError):
    """DEADLINE_EXCEEDED: the call's deadline (the client's default for the RPC, or ``timeout=``) passed."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class FailedPrecondition(VantageError):
    """FAILED_PRECONDITION, e.g. cancelling a run that has ended, or a retired model."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class _Retryable(VantageError):
    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        #: Seconds the server asked the client to wait before trying again (``google.rpc.RetryInfo.retry_delay``),
        #: or None when it sent none.
        self.retry_after = retry_after


class Unavailable(_Retryable):
    """UNAVAILABLE: the server (or a provider behind it) cannot serve now; ``retry_after`` in seconds when the
    server sent ``google.rpc.RetryInfo``."""

    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(_Retryable):
    """RESOURCE_EXHAUSTED: a budget or rate limit; ``retry_after`` as for :class:`Unavailable`."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


_BY_CODE: dict[grpc.StatusCode, type[VantageError]] = {
    cls.code: cls
    for cls in (InvalidArgument, NotFound, PermissionDenied, Unauthenticated, DeadlineExceeded, FailedPrecondition,
                Unavailable, ResourceExhausted)
}


def _trailing(err: grpc.RpcError) -> list[tuple[str, Any]]:
    try:
        md = err.trailing_metadata()  # type: ignore[attr-defined]
    except Exception:  # not a grpc.Call (e.g. a channel-level failure object)
        return []
    return list(md or ())


def _rich_status(err: grpc.RpcError) -> status_pb2.Status | None:
    """The ``google.rpc.Status`` of the trailing metadata, when the server sent one that parses."""
    for key, value in _trailing(err):
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes | bytearray):
            st = status_pb2.Status()
            try:
                st.ParseFromString(bytes(value))
            except Exception:  # a corrupt detail must not hide the status itself
                return None
            return st
    return None


def from_rpc_error(err: grpc.RpcError, method: str = "") -> VantageError:
    """The :class:`VantageError` subclass for ``err`` (sync ``grpc.RpcError`` or ``grpc.aio.AioRpcError``), with the
    field violations, retry delay and error info of its rich status."""
    try:
        code = err.code()  # type: ignore[attr-defined]
        message = err.details() or ""  # type: ignore[attr-defined]
    except Exception:
        code, message = grpc.StatusCode.UNKNOWN, str(err)
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    violations: list[FieldViolation] = []
    retry_after: float | None = None
    info: dict[str, Any] = {}
    st = _rich_status(err)
    for any_msg in st.details if st is not None else ():
        if any_msg.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            any_msg.Unpack(br)
            violations += [FieldViolation(v.field, v.description) for v in br.field_violations]
        elif any_msg.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            ri = error_details_pb2.RetryInfo()
            any_msg.Unpack(ri)
            retry_after = ri.retry_delay.seconds + ri.retry_delay.nanos / 1e9
        elif any_msg.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            ei = error_details_pb2.ErrorInfo()
            any_msg.Unpack(ei)
            info = {"reason": ei.reason, "domain": ei.domain, "metadata": dict(ei.metadata)}
    cls = _BY_CODE.get(code, VantageError)
    kw: dict[str, Any] = {"code": code, "method": method, **info}
    if cls is InvalidArgument:
        return InvalidArgument(message, field_violations=violations, **kw)
    if issubclass(cls, _Retryable):
        return cls(message, retry_after=retry_after, **kw)  # type: ignore[call-arg]
    return cls(message, **kw)


__all__ = [
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "VantageError",
    "from_rpc_error",
]
