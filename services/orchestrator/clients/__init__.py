"""Ports to the downstream services: the stubs of search, inference and extraction over this process's shared
channels (:class:`shared.grpc_client.Channels`: one channel per target, ``round_robin`` over its addresses, the
service config's retry policy for idempotent methods), and their health check.

The jobs (:mod:`services.orchestrator.app.jobs`) call the services only through a :class:`Clients`; nothing above
``app/`` opens a channel of its own.
"""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shared.config import OrchestratorSettings
from shared.errors import Unavailable
from shared.grpc_client import Channels
from vantage.extraction.v1 import extraction_pb2_grpc
from vantage.inference.v1 import inference_pb2_grpc
from vantage.search.v1 import search_pb2_grpc

__all__ = ["Clients"]


class Clients:
    """Stubs of the three downstream services over shared channels (one channel per target per process)."""

    def __init__(self, channels: Channels, settings: OrchestratorSettings) -> None:
        self.settings = settings
        self.channels = channels
        self.search = search_pb2_grpc.SearchServiceStub(channels.for_service("search"))
        self.inference = inference_pb2_grpc.InferenceServiceStub(channels.for_service("inference"))
        self.extraction = extraction_pb2_grpc.ExtractionServiceStub(channels.for_service("extraction"))

    async def check(self, rpc_timeout: float = 5.0) -> None:
        """Health-check search, inference and extraction at once; raise :class:`Unavailable` naming the first one
        that is not SERVING (e.g. ``"search service not reachable at 127.0.0.1:50051 (UNAVAILABLE)"``)."""

        async def one(name: str) -> str | None:
            addr = self.settings.addr(name)
            stub = health_pb2_grpc.HealthStub(self.channels.for_service(name))
            try:
                r = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=rpc_timeout)
            except grpc.aio.AioRpcError as e:
                what = "timed out" if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED else e.code().name
                return f"{name} service not reachable at {addr} ({what})"
            if r.status != health_pb2.HealthCheckResponse.SERVING:
                return f"{name} service at {addr} is not serving"
            return None

        problems = [p for p in await asyncio.gather(one("search"), one("inference"), one("extraction")) if p]
        if problems:
            raise Unavailable("; ".join(problems))
