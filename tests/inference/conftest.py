"""Fixtures of the inference tests: the service on a loopback port (against the sandbox) and a stub to call it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from services.inference.server import build
from shared.config import Settings
from shared.grpc_server import RunningServer, serving
from vantage.inference.v1 import inference_pb2_grpc as pb_grpc


@pytest.fixture
async def inference(settings: Settings) -> AsyncIterator[RunningServer]:
    async with serving("inference", build, settings) as srv:
        yield srv


@pytest.fixture
async def stub(inference: RunningServer) -> AsyncIterator[pb_grpc.InferenceServiceStub]:
    async with grpc.aio.insecure_channel(inference.address) as channel:
        yield pb_grpc.InferenceServiceStub(channel)
