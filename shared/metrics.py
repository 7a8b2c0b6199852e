"""Prometheus metrics of every Vantage process, and the helpers services call to feed them.

Exposition: :func:`start_metrics_server` serves the default registry at ``http://<host>:<port>/metrics``
(``prometheus_client.start_http_server``, a daemon thread). ``VANTAGE_METRICS_PORT`` is a base port, 0 = off (the
default, so tests and the demo never collide); each process adds its :data:`PORT_OFFSETS` entry, mirroring the
gRPC port layout (orchestrator 50050 → +0, search 50051 → +1, …).

Metric families (names and labels of go-grpc-prometheus, so existing Grafana dashboards work):

============================================  =========  ============================================================
name                                           type       labels
============================================  =========  ============================================================
``grpc_server_started_total``                  counter    grpc_type, grpc_service, grpc_method
``grpc_server_handled_total``                  counter    grpc_type, grpc_service, grpc_method, grpc_code
``grpc_server_handling_seconds``               histogram  grpc_type, grpc_service, grpc_method
``provider_calls_total``                       counter    provider, outcome (ok, cancelled, or a lower-case gRPC code)
``provider_call_seconds``                      histogram  provider
``cost_usd_total``                             counter    provider (USD)
``budget_in_use`` / ``budget_waiting``         gauge      budget (calls holding / waiting for a concurrency slot)
============================================  =========  ============================================================

``grpc_service`` is the full proto service (``vantage.search.v1.SearchService``), ``grpc_method`` the bare method
(``Search``), ``grpc_code`` the status name (``OK``, ``UNAUTHENTICATED``, …). The RPC families are fed by
:class:`shared.grpc_server.ContextInterceptor` through :func:`rpc_observer`, which caches the labelled children of
each method so that one RPC costs two dictionary look-ups and three child updates (see
``tests/ops/test_ops_metrics.py`` for the measured cost).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

from shared.config import BaseServiceSettings
from shared.errors import VantageError

log = structlog.get_logger("vantage.metrics")

#: Added to ``metrics_port`` per process, in the order of the default gRPC ports (50050..50053), then the worker.
PORT_OFFSETS: dict[str, int] = {"orchestrator": 0, "search": 1, "inference": 2, "extraction": 3, "worker": 4}

#: Seconds. go-grpc-prometheus uses Prometheus' DefBuckets (5 ms .. 10 s); our RPCs wait on LLMs and scrapers for
#: up to minutes, so the tail is extended to 5 min and one sub-5 ms bucket is added for cache hits.
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

GRPC_STARTED = Counter(
    "grpc_server_started_total",
    "RPCs started on the server.",
    ["grpc_type", "grpc_service", "grpc_method"],
)
GRPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, by status code.",
    ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
)
GRPC_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Seconds from the start of an RPC to its status, on the server.",
    ["grpc_type", "grpc_service", "grpc_method"],
    buckets=LATENCY_BUCKETS,
)
PROVIDER_CALLS = Counter("provider_calls_total", "Calls to external providers, by outcome.", ["provider", "outcome"])
PROVIDER_SECONDS = Histogram(
    "provider_call_seconds", "Seconds of one external provider call.", ["provider"], buckets=LATENCY_BUCKETS
)
COST_USD = Counter("cost_usd_total", "USD spent at external providers.", ["provider"])
BUDGET_IN_USE = Gauge("budget_in_use", "Calls holding a slot of a concurrency budget.", ["budget"])
BUDGET_WAITING = Gauge("budget_waiting", "Calls waiting for a slot of a concurrency budget.", ["budget"])


# --- RPC metrics (fed by the server interceptor) --------------------------------------------------------------


class RpcObserver:
    """Pre-resolved metric children of one method; :meth:`done` records one finished RPC."""

    __slots__ = ("_handled", "_labels", "seconds", "started")

    def __init__(self, grpc_type: str, service: str, method: str) -> None:
        self._labels = (grpc_type, service, method)
        self.started = GRPC_STARTED.labels(*self._labels)
        self.seconds = GRPC_SECONDS.labels(*self._labels)
        self._handled: dict[str, Any] = {}

    def done(self, code: str, seconds: float) -> None:
        """Count one RPC that ended with status ``code`` (e.g. ``"OK"``) after ``seconds``."""
        child = self._handled.get(code)
        if child is None:
            child = self._handled[code] = GRPC_HANDLED.labels(*self._labels, code)
        child.inc()
        self.seconds.observe(seconds)


_observers: dict[tuple[str, str], RpcObserver] = {}
_observers_lock = threading.Lock()


def split_method(full_method: str) -> tuple[str, str]:
    """``"/pkg.Service/Method"`` → ``("pkg.Service", "Method")``."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service or "unknown", method


def rpc_observer(grpc_type: str, full_method: str) -> RpcObserver:
    """The cached :class:`RpcObserver` of ``full_method`` (``/pkg.Service/Method``) and ``grpc_type``
    (``unary``, ``server_stream``, ``client_stream`` or ``bidi_stream``)."""
    key = (grpc_type, full_method)
    obs = _observers.get(key)
    if obs is None:
        with _observers_lock:
            obs = _observers.get(key)
            if obs is None:
                obs = _observers[key] = RpcObserver(grpc_type, *split_method(full_method))
    return obs


# --- provider calls, cost and budgets (called by the services) -----------------------------------------------


def outcome_of(exc: BaseException | None) -> str:
    """Bounded outcome label: ``ok``, ``cancelled``, the lower-case gRPC code of a :class:`VantageError`
    (``unavailable`` for provider 5xx, ``resource_exhausted`` for 429, …) or ``error``."""
    if exc is None:
        return "ok"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, VantageError):
        return exc.code.name.lower()
    if isinstance(exc, TimeoutError):
        return "deadline_exceeded"
    return "error"


def observe_provider_call(provider: str, seconds: float, outcome: str = "ok", cost_usd: float = 0.0) -> None:
    """Record one finished provider call: its latency (s), outcome label, and cost (USD, added when > 0)."""
    PROVIDER_CALLS.labels(provider, outcome).inc()
    PROVIDER_SECONDS.labels(provider).observe(seconds)
    if cost_usd > 0:
        COST_USD.labels(provider).inc(cost_usd)


def add_cost(provider: str, usd: float) -> None:
    """Add ``usd`` to ``cost_usd_total{provider}`` (for costs known only after the call, e.g. a batch)."""
    if usd > 0:
        COST_USD.labels(provider).inc(usd)


@dataclass
class ProviderCall:
    """Handle yielded by :func:`provider_call`: set ``cost_usd`` once known; ``outcome`` overrides the label
    derived from the exception (e.g. ``"rate_limited"``)."""

    provider: str
    cost_usd: float = 0.0
    outcome: str | None = None


@contextlib.asynccontextmanager
async def provider_call(provider: str) -> AsyncIterator[ProviderCall]:
    """Time one provider call and record it (latency, outcome from the exception if any, cost).

    ``provider`` is also bound to the structlog context for the duration, so log lines inside carry it::

        async with metrics.provider_call("openai") as call:
            resp = await client.chat.completions.create(...)
            call.cost_usd = price(resp.usage)
    """
    call = ProviderCall(provider)
    start = time.perf_counter()
    error: BaseException | None = None
    with structlog.contextvars.bound_contextvars(provider=provider):
        try:
            yield call
        except BaseException as exc:
            error = exc
            raise
        finally:
            observe_provider_call(
                provider, time.perf_counter() - start, call.outcome or outcome_of(error), call.cost_usd
            )


def set_budget(budget: str, in_use: float, waiting: float) -> None:
    """Set the gauges of budget ``budget`` (calls holding a slot, calls waiting for one)."""
    BUDGET_IN_USE.labels(budget).set(in_use)
    BUDGET_WAITING.labels(budget).set(waiting)


def track_budget(budget: str, in_use: Callable[[], float], waiting: Callable[[], float]) -> None:
    """Make the gauges of ``budget`` read ``in_use()`` / ``waiting()`` at each scrape (no bookkeeping on the hot
    path), e.g. ``track_budget("search", lambda: lim.borrowed_tokens, lambda: lim.statistics().tasks_waiting)``
    for an anyio ``CapacityLimiter``. The callables run on the scrape thread: they must only read."""
    BUDGET_IN_USE.labels(budget).set_function(in_use)
    BUDGET_WAITING.labels(budget).set_function(waiting)


@contextlib.contextmanager
def budget_slot(budget: str) -> Iterator[None]:
    """Count the enclosed block as one call holding a slot of ``budget`` (for budgets not tracked by callables)."""
    g = BUDGET_IN_USE.labels(budget)
    g.inc()
    try:
        yield
    finally:
        g.dec()


# --- exposition -------------------------------------------------------------------------------------------------


@dataclass
class MetricsServer:
    """A running ``/metrics`` HTTP server (daemon thread)."""

    host: str
    port: int
    _httpd: Any

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def serve_metrics(port: int, host: str = "127.0.0.1") -> MetricsServer:
    """Serve the default registry on ``host:port`` (0 = any free port). Raises ``OSError`` when the bind fails."""
    httpd, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    return MetricsServer(host, int(httpd.server_port), httpd)


def metrics_port(settings: BaseServiceSettings, process: str) -> int:
    """The /metrics port of ``process`` under ``settings`` (0 = off)."""
    if settings.metrics_port <= 0:
        return 0
    return settings.metrics_port + PORT_OFFSETS.get(process, 0)


def start_metrics_server(settings: BaseServiceSettings, process: str, host: str | None = None) -> MetricsServer | None:
    """Start the /metrics endpoint of ``process`` when ``metrics_port`` is set; None when off.

    A bind failure is logged and ignored: metrics must never keep a service from serving (e.g. two processes of
    one host configured with the same base port).
    """
    port = metrics_port(settings, process)
    if not port:
        return None
    host = host or settings.host
    try:
        server = serve_metrics(port, host)
    except OSError as e:
        log.error("metrics_unavailable", host=host, port=port, error=str(e))
        return None
    log.info("metrics_serving", url=server.url)
    return server


__all__ = [
    "BUDGET_IN_USE",
    "BUDGET_WAITING",
    "COST_USD",
    "GRPC_HANDLED",
    "GRPC_SECONDS",
    "GRPC_STARTED",
    "PORT_OFFSETS",
    "PROVIDER_CALLS",
    "PROVIDER_SECONDS",
    "MetricsServer",
    "ProviderCall",
    "add_cost",
    "budget_slot",
    "metrics_port",
    "observe_provider_call",
    "outcome_of",
    "provider_call",
    "rpc_observer",
    "serve_metrics",
    "set_budget",
    "start_metrics_server",
    "track_budget",
]
