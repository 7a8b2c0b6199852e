"""Fixtures of the packing and response-cache tests: the inference service on a loopback port (against the session
sandbox, with its own fresh SQLite database, hence an empty cache), a stub, and the sandbox's admin API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from services.inference.server import build
from shared.config import Settings
from shared.grpc_server import RunningServer, serving
from vantage.inference.v1 import inference_pb2_grpc as pb_grpc


@pytest.fixture
def pack_settings(settings: Settings) -> Settings:
    """The suite's settings with one attempt per provider call and no circuit breaker, so that the calls counted at
    the sandbox are exactly the calls the packer makes (provider-level retries are the resilience layer's, tested
    there)."""
    return settings.model_copy(update={"provider_max_attempts": 1, "circuit_failure_threshold": 0})


@pytest.fixture
async def inference(pack_settings: Settings) -> AsyncIterator[RunningServer]:
    async with serving("inference", build, pack_settings) as srv:
        yield srv


@pytest.fixture
async def stub(inference: RunningServer) -> AsyncIterator[pb_grpc.InferenceServiceStub]:
    async with grpc.aio.insecure_channel(inference.address) as channel:
        yield pb_grpc.InferenceServiceStub(channel)
