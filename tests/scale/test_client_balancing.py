"""Client-side load balancing of our channels (shared/grpc_client.py): two real servers on loopback behind one
``ipv4:`` target get the calls spread over both (round_robin from the service config), a replica whose health
turns NOT_SERVING stops getting calls (gRFC A17 ``healthCheckConfig``) and gets them again once SERVING, and a
``dns:///`` target works too. pick_first, gRPC's default, is the contrast: one replica gets everything."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter

import pytest
from grpc_health.v1 import health_pb2

from shared.config import Settings
from shared.grpc_client import Channels, channel_options
from shared.grpc_server import Mount, serving
from vantage.search.v1 import search_pb2, search_pb2_grpc

SERVICE_NAME = search_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name
DEADLINE_SECONDS = 30.0


class Counting(search_pb2_grpc.SearchServiceServicer):
    """Answers ``Search`` with its replica name in ``query`` and counts the calls it served."""

    def __init__(self, name: str, served: Counter) -> None:
        self.name, self.served = name, served

    async def Search(self, request, context):
        self.served[self.name] += 1
        return search_pb2.SearchResponse(query=self.name)


def builder(servicer: Counting):
    @contextlib.asynccontextmanager
    async def build(_settings):
        yield [Mount(servicer, search_pb2_grpc.add_SearchServiceServicer_to_server, SERVICE_NAME)]

    return build


@contextlib.asynccontextmanager
async def two_replicas(settings: Settings, served: Counter):
    async with (
        serving("search", builder(Counting("a", served)), settings, host="127.0.0.1", port=0) as a,
        serving("search", builder(Counting("b", served)), settings, host="127.0.0.1", port=0) as b,
    ):
        yield a, b


async def calls(stub, n: int) -> Counter:
    got: Counter = Counter()
    for _ in range(n):
        r = await stub.Search(search_pb2.SearchRequest(query="q"), timeout=10, wait_for_ready=True)
        got[r.query] += 1
    return got


async def until(predicate, what: str):
    """Poll ``predicate`` (an async callable) until true, at most DEADLINE_SECONDS."""
    end = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < end:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"not within {DEADLINE_SECONDS:.0f} s: {what}")


def test_channel_options_carry_round_robin_health_checking_and_idle_keepalive():
    opts = dict(channel_options(Settings()))
    assert '"round_robin"' in opts["grpc.service_config"] and '"healthCheckConfig"' in opts["grpc.service_config"]
    assert opts["grpc.keepalive_time_ms"] <= 240_000  # below the shortest common LB idle timeout (Azure, 4 min)
    assert opts["grpc.keepalive_permit_without_calls"] == 1 and opts["grpc.http2.max_pings_without_data"] == 0
    pick_first = dict(channel_options(Settings(grpc_lb_policy="pick_first")))["grpc.service_config"]
    assert "healthCheckConfig" not in pick_first


async def test_round_robin_spreads_calls_and_skips_a_not_serving_replica():
    settings = Settings(host="127.0.0.1", grace_seconds=0.5)
    served: Counter = Counter()
    async with two_replicas(settings, served) as (a, b):
        target = f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}"
        settings = Settings(host="127.0.0.1", search_addr=target)
        channels = Channels(settings)
        try:
            stub = search_pb2_grpc.SearchServiceStub(channels.for_service("search"))

            async def both_connected() -> bool:
                return set(await calls(stub, 10)) == {"a", "b"}

            await until(both_connected, "both replicas receive calls")
            spread = await calls(stub, 200)
            assert spread["a"] >= 60 and spread["b"] >= 60, spread  # ≥ 30 % each (round_robin alternates)

            await b.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)

            async def only_a() -> bool:
                return set(await calls(stub, 10)) == {"a"}

            await until(only_a, "the NOT_SERVING replica stops receiving calls")
            before = served["b"]
            assert await calls(stub, 100) == Counter(a=100)
            assert served["b"] == before

            await b.health.set("", health_pb2.HealthCheckResponse.SERVING)
            await until(both_connected, "the replica serving again receives calls again")
        finally:
            await channels.close()


async def test_pick_first_sends_everything_to_one_replica():
    # The contrast that makes the test above meaningful: gRPC's default policy pins one backend.
    served: Counter = Counter()
    async with two_replicas(Settings(host="127.0.0.1", grace_seconds=0.5), served) as (a, b):
        target = f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}"
        channels = Channels(Settings(search_addr=target, grpc_lb_policy="pick_first"))
        try:
            stub = search_pb2_grpc.SearchServiceStub(channels.for_service("search"))
            got = await calls(stub, 50)
            assert len(got) == 1 and sum(got.values()) == 50, got
        finally:
            await channels.close()


async def test_dns_target_uri_and_plain_host_port():
    served: Counter = Counter()
    async with two_replicas(Settings(host="127.0.0.1", grace_seconds=0.5), served) as (a, _b):
        for target in (f"dns:///127.0.0.1:{a.port}", f"127.0.0.1:{a.port}"):
            channels = Channels(Settings(search_addr=target))
            try:
                stub = search_pb2_grpc.SearchServiceStub(channels.for_service("search"))
                assert await calls(stub, 3) == Counter(a=3)
            finally:
                await channels.close()
