"""``vantage doctor`` and ``python -m shared.healthcheck`` against real servers on loopback, a real SQLite database
at the head revision, and the real sandbox; provider keys are canaries that must never be printed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from ops_testkit import echo_builder
from pydantic import SecretStr

from services.orchestrator.store import db
from shared.config import Settings
from shared.grpc_server import RunningServer, serving

SERVICES = ("search", "inference", "extraction", "orchestrator")
CANARIES = {"TAVILY_API_KEY": "tvly-CANARYdoctor0123456789", "OPENAI_API_KEY": "sk-CANARYdoctor0123456789abc"}


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any VANTAGE_* / provider variable, plus ``extra``."""
    drop = ("VANTAGE_", "TAVILY_", "OPENAI_", "ANTHROPIC_", "BRIGHTDATA_", "PERPLEXITY_", "DATABASE_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**env, "VANTAGE_LOG_LEVEL": "WARNING", **extra}


async def run(*cmd: str, env: dict[str, str], cwd: Path | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


@contextlib.asynccontextmanager
async def four_services(settings: Settings) -> AsyncIterator[dict[str, RunningServer]]:
    async with contextlib.AsyncExitStack() as stack:
        yield {name: await stack.enter_async_context(serving(name, echo_builder(), settings)) for name in SERVICES}


async def head_database(path: Path) -> str:
    url = f"sqlite+aiosqlite:///{path}"
    engine = db.create_engine(url)
    try:
        await db.ensure_schema(engine)
    finally:
        await engine.dispose()
    return url


async def test_doctor_all_good_exits_0_and_never_prints_keys(tmp_path: Path, sandbox_url: str):
    url = await head_database(tmp_path / "v.db")
    async with four_services(Settings()) as servers:
        env = clean_env(
            DATABASE_URL=url,
            VANTAGE_SANDBOX_URL=sandbox_url,
            **{f"VANTAGE_{n.upper()}_ADDR": s.address for n, s in servers.items()},
            **CANARIES,
        )
        rc, out, err = await run(
            sys.executable, "-c", "from services.orchestrator.cli import main; main()", "doctor", "--output", "json",
            env=env, cwd=tmp_path,
        )
    assert rc == 0, out + err
    report = json.loads(out)
    assert report["ok"] is True
    rows = {(c["group"], c["name"]): c for c in report["checks"]}
    assert all(rows[("services", n)]["status"] == "ok" for n in SERVICES)
    assert rows[("database", "schema")]["status"] == "ok" and db.head_revision() in rows[("database", "schema")]["detail"]
    assert rows[("sandbox", "http")]["status"] == "ok"
    assert rows[("provider keys", "tavily")]["detail"] == "TAVILY_API_KEY: set"
    assert rows[("provider keys", "anthropic")]["detail"] == "ANTHROPIC_API_KEY: not needed (sandbox)"
    for secret in CANARIES.values():
        assert secret not in out + err and secret[:12] not in out + err


async def test_doctor_reports_what_is_down_with_exit_3(tmp_path: Path):
    dead = unused_port()
    env = clean_env(
        VANTAGE_SEARCH_ADDR=f"127.0.0.1:{dead}",
        VANTAGE_HOST="127.0.0.1",
        VANTAGE_INFERENCE_PORT=str(dead),
        VANTAGE_EXTRACTION_PORT=str(dead),
        VANTAGE_ORCHESTRATOR_PORT=str(dead),
        DATABASE_URL="postgresql://vantage:hunter2-db-password@127.0.0.1:1/vantage",
        VANTAGE_AUTH_TOKEN="doctor-token-canary-42",
        **CANARIES,
    )
    rc, out, err = await run(
        sys.executable, "-c", "from services.orchestrator.cli import main; main()", "doctor", "--timeout", "1",
        env=env, cwd=tmp_path,
    )
    assert rc == 3, out + err
    assert "FAIL" in out and "connection refused" in out
    assert "auth token" in out and "set" in out
    for secret in [*CANARIES.values(), "hunter2-db-password", "doctor-token-canary-42"]:
        assert secret not in out + err


async def test_doctor_names_a_bad_setting_without_its_value(tmp_path: Path):
    env = clean_env(VANTAGE_GRACE_SECONDS="not-a-number-secretish")
    rc, out, err = await run(
        sys.executable, "-c", "from services.orchestrator.cli import main; main()", "doctor", env=env, cwd=tmp_path
    )
    assert rc == 3
    assert "grace_seconds" in out and "not-a-number-secretish" not in out + err


async def test_healthcheck_module_exit_codes(tmp_path: Path):
    token = "hc-token-0123456789"
    settings = Settings(auth_token=SecretStr(token), auth_allow_health=False)
    async with serving("search", echo_builder(), Settings()) as open_srv, serving(
        "search", echo_builder(), settings
    ) as closed_srv:
        env = clean_env()
        hc = (sys.executable, "-m", "shared.healthcheck")
        rc, out, _ = await run(*hc, open_srv.address, env=env)
        assert (rc, out.strip()) == (0, f"{open_srv.address}: SERVING")
        rc, _, _ = await run(*hc, open_srv.address, "--service", "vantage.search.v1.SearchService", env=env)
        assert rc == 0
        rc, _, err = await run(*hc, open_srv.address, "--service", "no.such.Service", env=env)
        assert rc == 3 and "NOT_FOUND" in err
        rc, _, err = await run(*hc, f"127.0.0.1:{unused_port()}", "--timeout", "1", env=env)
        assert rc == 2 and "UNAVAILABLE" in err
        rc, _, err = await run(*hc, closed_srv.address, env=env)
        assert rc == 3 and "UNAUTHENTICATED" in err and token not in err
        rc, _, _ = await run(*hc, closed_srv.address, env=clean_env(VANTAGE_AUTH_TOKEN=token))
        assert rc == 0
        # No address: every local Vantage port is tried; the one with a server answers.
        rc, _, _ = await run(*hc, env=clean_env(VANTAGE_SEARCH_PORT=str(open_srv.port)))
        assert rc == 0
