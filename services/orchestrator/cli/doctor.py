"""``vantage doctor``: is this installation ready to run? One table, one exit code.

Checks, all read-only and run concurrently, each bounded by ``timeout`` seconds:

- **settings**: they load (an invalid variable is named, its value never shown), the TLS files are readable and
  consistent, whether a bearer token is configured, whether metrics are on;
- **database**: reachable at ``database_url`` (password hidden), and its Alembic revision against the head this code
  ships (:mod:`services.orchestrator.store.db`). A SQLite file that does not exist yet is a warning, not a failure:
  the first run creates it — and the doctor must not create it as a side effect of connecting;
- **services**: ``grpc.health.v1.Health/Check`` on search, inference, extraction and orchestrator at
  ``settings.addr(...)``, through the same channels (TLS, token) the CLI uses;
- **sandbox**: ``GET /healthz`` when ``sandbox_url`` is set;
- **provider keys**: ``set`` / ``missing`` / ``not needed (sandbox)`` per provider — never the key, nor a prefix of it.

Exit codes (the CLI's): 0 every check passed (warnings allowed); 3 something is unavailable or misconfigured
(settings that do not load included: nothing can run).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from shared import security
from shared.config import Settings
from shared.exitcodes import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from shared.logging import redact_text, register_secret

Status = Literal["ok", "warn", "fail"]
PROVIDERS: tuple[tuple[str, str], ...] = (
    ("tavily", "TAVILY_API_KEY"),
    ("openai", "OPENAI_API_KEY"),
    ("anthropic", "ANTHROPIC_API_KEY"),
    ("brightdata", "BRIGHTDATA_API_TOKEN"),
    ("perplexity", "PERPLEXITY_API_KEY"),
)
SERVICES = ("search", "inference", "extraction", "orchestrator")


@dataclass(frozen=True)
class Check:
    """One row of the report. ``detail`` never holds a secret (it is passed through redaction anyway)."""

    group: str
    name: str
    status: Status
    detail: str


def _strip_userinfo(url: str) -> str:
    """``scheme://user:pass@host/…`` → ``scheme://host/…``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host.rsplit('@', 1)[-1]}{slash}{path}"


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return f"{type(e).__name__}: {text}"[:240]


def settings_checks(settings: Settings) -> list[Check]:
    """Static checks: TLS files, token, metrics (no I/O beyond reading the PEM files)."""
    out = [Check("settings", "load", "ok", "settings loaded")]
    try:
        server = security.server_credentials(settings) is not None
        client = security.channel_credentials(settings) is not None
    except security.TLSConfigError as e:
        out.append(Check("settings", "tls", "fail", str(e)))
    else:
        mtls = server and bool(settings.tls_ca_file) and settings.tls_client_auth
        mode = "mTLS" if mtls else ("TLS" if server else "off")
        out.append(Check("settings", "tls", "ok", f"servers: {mode}; clients: {'TLS' if client else 'plaintext'}"))
    token = security.auth_token(settings)
    out.append(Check("settings", "auth token", "ok", "set" if token else "not set (no per-call auth)"))
    port = settings.metrics_port
    out.append(Check("settings", "metrics", "ok", f"base port {port}" if port else "off (VANTAGE_METRICS_PORT=0)"))
    return out


def key_checks(settings: Settings) -> list[Check]:
    """Which provider keys are present — by presence only."""
    out = []
    for provider, env in PROVIDERS:
        key = getattr(settings, f"{provider}_api_key")
        if key is not None and key.get_secret_value():
            out.append(Check("provider keys", provider, "ok", f"{env}: set"))
        elif settings.sandbox_url and not getattr(settings, f"{provider}_base_url"):
            out.append(Check("provider keys", provider, "ok", f"{env}: not needed (sandbox)"))
        else:
            out.append(Check("provider keys", provider, "warn", f"{env}: missing"))
    return out


async def database_check(settings: Settings) -> Check:
    """Reachability and schema revision of ``database_url``."""
    try:
        from sqlalchemy.engine import make_url

        from services.orchestrator.store import db
    except ImportError as e:  # pragma: no cover - the store ships with the orchestrator
        return Check("database", "schema", "fail", f"store unavailable: {_one_line(e)}")
    url = settings.database_url
    try:
        shown = db.display_url(url)
        register_secret(make_url(db.normalise_url(url)).password)
    except Exception as e:  # an unparsable URL
        return Check("database", "connect", "fail", f"bad database_url: {_one_line(e)}")
    if db.is_sqlite(url):
        path = make_url(db.normalise_url(url)).database or ""
        if path and path != ":memory:" and not await asyncio.to_thread(Path(path).exists):
            return Check("database", "connect", "warn", f"{shown}: no file yet (the first run creates it)")
    engine = db.create_engine(url, pool_size=1)
    try:
        current = await db.current_revision(engine)
        head = db.head_revision()
    except Exception as e:
        return Check("database", "connect", "fail", f"{shown}: {_one_line(e)}")
    finally:
        await engine.dispose()
    if current == head:
        return Check("database", "schema", "ok", f"{shown}: revision {current} (head)")
    if current is None:
        return Check("database", "schema", "warn", f"{shown}: reachable, no schema yet (created on first run)")
    return Check("database", "schema", "fail", f"{shown}: revision {current}, code needs {head}: run `vantage db upgrade`")


def _short_reason(text: str) -> str:
    """The useful end of a gRPC connection error (``…; last error: …: Connection refused`` → ``connection refused``)."""
    low = text.lower()
    for needle, short in (
        ("connection refused", "connection refused"),
        ("handshake", "TLS handshake failed"),
        ("ssl", "TLS error"),
        ("deadline", "no answer in time"),
        ("dns", "name not resolved"),
    ):
        if needle in low:
            return short
    return text[:100]


async def service_check(settings: Settings, service: str, wait_seconds: float) -> Check:
    """gRPC health of ``service`` at its configured address."""
    from shared.healthcheck import check

    addr = settings.addr(service)
    try:
        r = await check(settings, addr, wait_seconds=wait_seconds)
    except security.TLSConfigError as e:
        return Check("services", service, "fail", f"{addr}: {e}")
    detail = f"{addr}: {r.status}" + (f" ({_short_reason(r.detail)})" if r.detail and not r.ok else "")
    return Check("services", service, "ok" if r.ok else "fail", detail)


async def sandbox_check(settings: Settings, wait_seconds: float) -> Check | None:
    """``GET {sandbox_url}/healthz`` when a sandbox is configured."""
    if not settings.sandbox_url:
        return None
    import httpx

    url = settings.sandbox_url.rstrip("/") + "/healthz"
    shown = _strip_userinfo(settings.sandbox_url)
    try:
        async with httpx.AsyncClient(timeout=wait_seconds) as http:
            resp = await http.get(url)
    except httpx.HTTPError as e:
        return Check("sandbox", "http", "fail", f"{shown}: {_one_line(e)}")
    ok = resp.status_code == 200
    return Check("sandbox", "http", "ok" if ok else "fail", f"{shown}: HTTP {resp.status_code}")


async def run_checks(settings: Settings, *, wait_seconds: float = 3.0) -> list[Check]:
    """Every check, in report order. Network checks run concurrently; each is bounded by ``wait_seconds``."""
    security.register_settings_secrets(settings)
    checks = settings_checks(settings)

    async def bounded(name: tuple[str, str], coro: Awaitable[Check | None]) -> Check | None:
        try:
            return await asyncio.wait_for(coro, wait_seconds + 1.0)
        except TimeoutError:
            return Check(name[0], name[1], "fail", f"no answer within {wait_seconds:g} s")

    tasks: list[asyncio.Task[Check | None]] = []
    async with asyncio.TaskGroup() as tg:
        tasks.append(tg.create_task(bounded(("database", "connect"), database_check(settings))))
        for s in SERVICES:
            tasks.append(tg.create_task(bounded(("services", s), service_check(settings, s, wait_seconds))))
        tasks.append(tg.create_task(bounded(("sandbox", "http"), sandbox_check(settings, wait_seconds))))
    checks += [c for t in tasks if (c := t.result()) is not None]
    checks += key_checks(settings)
    # Belt and braces: whatever an exception text quoted, no registered secret leaves this function.
    return [Check(c.group, c.name, c.status, redact_text(c.detail)) for c in checks]


def exit_code(checks: list[Check]) -> int:
    """0 when nothing failed (warnings allowed), else 3 (infrastructure unavailable)."""
    return EXIT_UNAVAILABLE if any(c.status == "fail" for c in checks) else EXIT_OK


_STYLE = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]"}


def render(checks: list[Check], output: str = "table", console: Console | None = None) -> None:
    """Print the report: a rich table (``table``; colours only on a terminal) or a JSON document (``json``)."""
    console = console or Console()
    if output == "json":
        doc = {"ok": exit_code(checks) == EXIT_OK, "checks": [asdict(c) for c in checks]}
        console.print_json(json.dumps(doc))
        return
    table = Table(title="vantage doctor", title_justify="left")
    for col in ("group", "check", "status", "detail"):
        table.add_column(col, overflow="fold")
    for c in checks:
        table.add_row(c.group, c.name, _STYLE[c.status], c.detail)
    console.print(table)
    failed = sum(c.status == "fail" for c in checks)
    console.print("all good" if not failed else f"{failed} check(s) failed")


def doctor(settings: Settings, *, timeout: float = 3.0, output: str = "table", console: Console | None = None) -> int:
    """Run every check, print the report, return the exit code."""
    checks = asyncio.run(run_checks(settings, wait_seconds=timeout))
    render(checks, output, console)
    return exit_code(checks)


def settings_error_report(error: Exception, output: str = "table", console: Console | None = None) -> int:
    """The report when the settings themselves do not load: which variables are wrong, never their values
    (pydantic's message quotes the input value, so only locations and reasons are kept)."""
    errors = getattr(error, "errors", None)
    rows = []
    if callable(errors):
        for e in errors(include_input=False, include_url=False):
            loc = ".".join(str(x) for x in e.get("loc", ())) or "settings"
            rows.append(Check("settings", loc, "fail", str(e.get("msg", "invalid"))))
    if not rows:
        rows.append(Check("settings", "load", "fail", type(error).__name__))
    render(rows, output, console)
    return EXIT_UNAVAILABLE


def register(app: typer.Typer) -> None:
    """Add the ``doctor`` command to the ``vantage`` typer app."""

    @app.command("doctor")
    def doctor_command(
        output: Annotated[str, typer.Option("--output", "-o", help="table | json")] = "table",
        timeout: Annotated[float, typer.Option(help="Seconds each network check may take.")] = 3.0,
    ) -> None:
        """Check settings, the database and its schema, each service's gRPC health, the sandbox, and which
        provider keys are set (never their values). Exit 0 when all is well (warnings allowed), 3 when something
        is unavailable or misconfigured.

        Example: vantage doctor --output json
        """
        from pydantic import ValidationError

        from shared.config import get_settings

        out = output.lower()
        if out not in ("table", "json"):
            typer.secho(f"error: --output must be table or json (got {output!r})", err=True, fg=typer.colors.RED)
            raise typer.Exit(EXIT_USAGE)
        try:
            settings = get_settings()
        except ValidationError as e:
            raise typer.Exit(settings_error_report(e, out)) from None
        raise typer.Exit(doctor(settings, timeout=timeout, output=out))
