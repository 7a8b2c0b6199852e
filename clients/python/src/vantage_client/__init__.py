"""Typed Python clients of the Vantage gRPC services.

``from vantage_client import VantageClient, AsyncVantageClient``: the same surface, synchronous (``grpc``) and
asyncio (``grpc.aio``). Results are dataclasses (:mod:`vantage_client.types`), failures
:class:`~vantage_client.VantageError` subclasses (:mod:`vantage_client.errors`). The generated stubs are vendored
under ``vantage_client._pb`` (``clients/python/scripts/gen.py``).
"""

from vantage_client._core import IDEMPOTENT_RPCS, Connection, Deadlines, service_config
from vantage_client.aio import AsyncVantageClient
from vantage_client.client import VantageClient
from vantage_client.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    VantageError,
)
from vantage_client.types import (
    Completion,
    Extraction,
    Report,
    Route,
    Run,
    RunCounts,
    RunDiff,
    RunEvent,
    RunItem,
    RunKind,
    RunStatus,
    SearchResponse,
)

__version__ = "0.1.0"

__all__ = [
    "IDEMPOTENT_RPCS",
    "AsyncVantageClient",
    "Completion",
    "Connection",
    "DeadlineExceeded",
    "Deadlines",
    "Extraction",
    "FailedPrecondition",
    "FieldViolation",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "Report",
    "ResourceExhausted",
    "Route",
    "Run",
    "RunCounts",
    "RunDiff",
    "RunEvent",
    "RunItem",
    "RunKind",
    "RunStatus",
    "SearchResponse",
    "Unauthenticated",
    "Unavailable",
    "VantageClient",
    "VantageError",
    "service_config",
]
