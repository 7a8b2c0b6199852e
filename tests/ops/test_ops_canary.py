"""Secret hygiene: fake provider keys and a bearer token ("canaries") must appear nowhere — not in log lines (the
captured event dicts in-process, the rendered JSON on a real service's stderr, tracebacks included), not in the
status messages and trailers that failing calls return to clients.

Anchor: reference/performance.md §6 ("a canary secret that must not appear anywhere in captured output (also check
exceptions/tracebacks)").
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import structlog
from ops_testkit import echo_builder

from shared.config import Settings
from shared.grpc_client import Channels
from shared.grpc_server import serving
from vantage.search.v1 import search_pb2, search_pb2_grpc

HERE = Path(__file__).parent
TAVILY = "tvly-CANARY7f3a9c2e5b1d4f6a"
OPENAI = "sk-CANARY4b8e1f0a9d3c7e2b"
TOKEN = "CANARYtoken5d2f8a1c9e7b3f0a"
CANARIES = (TAVILY, OPENAI, TOKEN)


def assert_clean(text: str, where: str) -> None:
    for c in CANARIES:
        assert c not in text, f"secret {c[:10]}… leaked into {where}"
        assert c[6:] not in text, f"a fragment of {c[:10]}… leaked into {where}"


async def failing_calls(address: str, *, channels: Channels) -> list[str]:
    """Every way a call can fail while secrets are around; returns what the clients saw (details + trailers)."""
    seen: list[str] = []

    async def attempt(stub, query: str, metadata=None) -> None:
        try:
            await stub.Search(search_pb2.SearchRequest(query=query), metadata=metadata, timeout=5)
        except grpc.aio.AioRpcError as e:
            seen.append(f"{e.code().name} {e.details()} {e.trailing_metadata()} {e.debug_error_string()}")

    async with grpc.aio.insecure_channel(address) as plain:
        stub = search_pb2_grpc.SearchServiceStub(plain)
        await attempt(stub, "ok")  # no token
        await attempt(stub, "ok", (("authorization", f"Bearer {TOKEN}x"),))  # wrong token that contains the real one
        await attempt(stub, "ok", (("authorization", f"Bearer {OPENAI}"),))  # a provider key offered as the token
    good = search_pb2_grpc.SearchServiceStub(channels.get(address))
    await attempt(good, f"unavailable:upstream refused key={OPENAI} for {TAVILY}")  # a provider error quoting keys
    await attempt(good, f"boom:crashed with {TAVILY} and Bearer {TOKEN}")  # an unexpected exception quoting them
    await attempt(good, "invalid")
    assert len(seen) == 6, seen
    return seen


@pytest.fixture
def canary_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"TAVILY_API_KEY": TAVILY, "OPENAI_API_KEY": OPENAI, "VANTAGE_AUTH_TOKEN": TOKEN}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


async def test_canaries_absent_from_captured_log_events_and_client_errors(canary_env):
    settings = Settings()
    assert settings.api_key("tavily") == TAVILY and settings.auth_token is not None
    with structlog.testing.capture_logs([structlog.contextvars.merge_contextvars]) as events:
        async with serving("search", echo_builder(), settings) as srv:
            channels = Channels(settings)
            try:
                seen = await failing_calls(srv.address, channels=channels)
            finally:
                await channels.close()
    assert any(e.get("code") == "UNAUTHENTICATED" for e in events), "the refused calls were logged"
    assert any(e.get("code") == "INTERNAL" for e in events)
    assert_clean(repr(events), "captured log events")
    assert_clean("\n".join(seen), "client-visible errors")
    assert any("[REDACTED]" in s for s in seen), "the provider error was masked, not dropped"


def test_canaries_absent_from_a_real_service_process_stderr(tmp_path: Path, canary_env):
    """A real process (JSON logs at DEBUG, the production processor chain) that even logs its secrets carelessly at
    start-up, then serves the failing calls: its whole stderr, tracebacks included, carries none of them."""
    ready = tmp_path / "ready.json"
    env = {**os.environ, **canary_env, "VANTAGE_LOG_LEVEL": "DEBUG", "VANTAGE_LOG_FORMAT": "json"}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "ops_echo_service.py"), "--ready-file", str(ready), "--leak-secrets"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None, "service died"
            assert time.monotonic() < deadline, "service not ready"
            time.sleep(0.02)
        address = json.loads(ready.read_text())["address"]

        async def drive() -> list[str]:
            channels = Channels(Settings())
            try:
                return await failing_calls(address, channels=channels)
            finally:
                await channels.close()

        seen = asyncio.run(drive())
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    stderr = err.decode()
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(e.get("event") == "careless_logging" for e in lines), stderr[-2000:]
    assert any(e.get("event") == "rpc_internal_error" and "Traceback" in e.get("exception", "") for e in lines)
    assert any(e.get("code") == "UNAUTHENTICATED" for e in lines)
    assert "[REDACTED]" in stderr
    assert_clean(stderr + out.decode(), "the service's output")
    assert_clean("\n".join(seen), "client-visible errors")


def test_database_password_and_every_secret_setting_are_registered_for_redaction():
    from shared.logging import redact_text
    from shared.security import register_settings_secrets

    register_settings_secrets(
        Settings(database_url="postgresql://vantage:CANARY%2Fdb-pass-91@db/vantage", perplexity_api_key="plain-key-CANARY-77")
    )
    text = redact_text("login CANARY/db-pass-91 with plain-key-CANARY-77")
    assert "CANARY/db-pass-91" not in text and "plain-key-CANARY-77" not in text
