"""Server bootstrap shared by every Vantage gRPC service.

One function, :func:`serving`, starts a ``grpc.aio`` server with our servicers plus the standard health service
(``grpc.health.v1``) and server reflection, explicit message-size limits and ``maximum_concurrent_rpcs``, and the
:class:`ContextInterceptor` (request/run/item ids in structlog contextvars, one canonical log line per RPC, domain
errors → rich gRPC statuses, never ``UNKNOWN``; RPC counters and latency histograms in :mod:`shared.metrics`).
Security comes from :mod:`shared.security`: TLS or mTLS on the port when certificates are configured, and the
bearer-token interceptor when ``auth_token`` is set. :func:`run_service` adds the process lifecycle: SIGTERM/SIGINT →
health NOT_SERVING → ``server.stop(grace)`` so in-flight calls finish (grpc_health ``enter_graceful_shutdown``;
``grpc.aio.Server.stop`` docstring), and the Prometheus ``/metrics`` endpoint when ``metrics_port`` is set.

A service plugs in with a *builder*: an async context manager that takes its settings model (a
:class:`~shared.config.BaseServiceSettings`, e.g. :class:`~shared.config.SearchSettings`) and yields
a list of :class:`Mount` (servicer, its ``add_*_to_server`` function, its full service name), closing its own clients
on exit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import ctypes.util
import functools
import inspect
import json
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from shared import metrics, security
from shared.concurrency import background
from shared.config import BaseServiceSettings
from shared.errors import (
    RETRY_PUSHBACK_KEY,
    Cancelled,
    DeadlineExceeded,
    InvalidArgument,
    ResourceExhausted,
    Unimplemented,
    VantageError,
    public_message,
    to_status,
)
from shared.resilience import current_caller, is_timeout

log = structlog.get_logger("vantage.grpc")

#: Metadata keys carried from call to call (lower case, as gRPC requires).
REQUEST_ID_KEY = "x-request-id"
RUN_ID_KEY = "x-run-id"
ITEM_ID_KEY = "x-item-id"
_CONTEXT_KEYS = {REQUEST_ID_KEY: "request_id", RUN_ID_KEY: "run_id", ITEM_ID_KEY: "item_id"}
#: Methods the ContextInterceptor passes through untouched (probes and tools: not logged, not counted).
_UNOBSERVED_PREFIXES = ("/grpc.health.", "/grpc.reflection.")
#: Seconds left on the caller's deadline at or below which a provider timeout is answered DEADLINE_EXCEEDED: calls
#: made for it got the time left minus 0.05 s (shared.grpc_client.forward_timeout), so they time out just before.
CLIENT_DEADLINE_SLACK = 0.1


def without_client_retry(status: grpc.Status) -> grpc.Status:
    """``status`` (from :func:`shared.errors.to_status`) plus ``grpc-retry-pushback-ms: -1``: gRPC clients whose
    service config retries the method (:func:`shared.grpc_client.retry_service_config`) will not send it again.

    Every UNAVAILABLE this error boundary sends gets it: the service behind it has already spent its own retries on
    the dependency that is down (the provider guard, :class:`shared.resilience.ProviderGuard`) or fails fast on
    purpose (an open circuit), so a retry at the hop above would multiply the attempts (gRFC A6 "Pushback"). An
    UNAVAILABLE that gRPC itself produces — the server unreachable, restarting, shutting down — has no pushback
    and is retried."""
    metadata = (*(status.trailing_metadata or ()), (RETRY_PUSHBACK_KEY, "-1"))
    return _PushedBack(status.code, status.details, metadata)


class _PushedBack(collections.namedtuple("_PushedBack", ("code", "details", "trailing_metadata")), grpc.Status):
    """A ``grpc.Status`` built the way ``grpc_status.rpc_status`` builds its own."""


@dataclass(frozen=True)
class Mount:
    """One servicer to add to a server."""

    servicer: Any
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    service_name: str


#: The settings model a builder takes (each service its own: shared.config.SERVICE_SETTINGS).
S = TypeVar("S", bound=BaseServiceSettings)
Builder = Callable[[S], AbstractAsyncContextManager[list[Mount]]]


def server_options(settings: BaseServiceSettings) -> list[tuple[str, Any]]:
    """Channel args of every server: explicit message limits, keepalive that tolerates multi-minute polls,
    and no SO_REUSEPORT (a second server on the same port must fail, not steal traffic: grpc/grpc#16920)."""
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


class Undecodable:
    """What a request deserializer wrapped by :func:`tolerant_deserializer` returns for bytes that are not a valid
    message (protobuf ``DecodeError``: invalid UTF-8 in a string field, a truncated varint, a wrong wire type, nesting
    past protobuf's recursion limit…). The handler wrapper turns it into ``INVALID_ARGUMENT``: grpc.aio itself
    reports a deserializer's exception as ``UNKNOWN`` ("Unexpected <class 'DecodeError'>"), and a deserializer has
    no context to abort with."""

    __slots__ = ("error", "message_type")

    def __init__(self, message_type: str, error: str) -> None:
        self.message_type = message_type
        self.error = error

    def to_error(self, index: int | None = None) -> InvalidArgument:
        which = "the request" if index is None else f"request message #{index}"
        return InvalidArgument(
            f"{which} is not a valid {self.message_type} message ({self.error})",
            field="request", reason="MALFORMED_REQUEST",
        )


def tolerant_deserializer(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """``deserializer`` that returns an :class:`Undecodable` instead of raising (None stays None: raw bytes).

    The message type is named from the generated ``FromString`` classmethod's class (``DESCRIPTOR.full_name``).
    """
    if deserializer is None:
        return None
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    message_type = getattr(descriptor, "full_name", "") or "request"

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as e:  # any failure to parse is the client's bytes, never our bug
            return Undecodable(message_type, type(e).__name__)

    return deserialize


async def decoded_requests(requests: Any, *, pass_undecodable: bool = False) -> AsyncIterator[Any]:
    """The messages of a client stream; an undecodable one ends the stream with ``INVALID_ARGUMENT`` (its index),
    raised where the servicer reads it so the servicer's own error handling applies — unless the servicer method
    is marked :func:`reads_undecodable`, which then receives the :class:`Undecodable` itself and goes on reading."""
    index = 0
    async for request in requests:
        if type(request) is Undecodable and not pass_undecodable:
            raise request.to_error(index)
        index += 1
        yield request


F = TypeVar("F", bound=Callable[..., Any])


def reads_undecodable(fn: F) -> F:
    """Marks a client- or bidi-streaming servicer method that handles an :class:`Undecodable` message itself (e.g.
    reports it as one failed item and keeps serving the stream's other messages) instead of the stream ending with
    ``INVALID_ARGUMENT`` at the corrupt message."""
    fn.reads_undecodable = True  # type: ignore[attr-defined]
    return fn


def _domain_error(exc: BaseException) -> VantageError | None:
    """The :class:`VantageError` an exception stands for: itself; the first one inside an exception group (a
    ``TaskGroup`` wraps the error of the task that failed); ``MemoryError`` as ``RESOURCE_EXHAUSTED``; else None."""
    if isinstance(exc, VantageError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _domain_error(inner)
            if found is not None:
                return found
        return None
    if isinstance(exc, MemoryError):
        return ResourceExhausted("the request needs more memory than the server can give it", reason="MEMORY")
    return None


def _status_name(context: grpc.aio.ServicerContext, default: str = "OK") -> str:
    """Name of the status the call ends with: the code set by ``abort``/``set_code``, else ``default``."""
    code = context.code()
    if code is None:
        return default
    if isinstance(code, grpc.StatusCode):
        return code.name
    # Some grpcio versions keep the raw integer; map it back (grpc.StatusCode values are (int, str) pairs).
    return next((c.name for c in grpc.StatusCode if c.value[0] == code), str(code))


class ContextInterceptor(grpc.aio.ServerInterceptor):
    """Binds request/run/item ids to structlog contextvars, logs one line per RPC (method, code, duration ms),
    maps :class:`VantageError` (and any unexpected exception) to a gRPC status with rich details, and feeds the
    go-grpc-prometheus RPC metrics (started, handled by code, handling seconds) of :mod:`shared.metrics`.

    It must be the outermost interceptor so that calls refused by an inner one (e.g. a missing token →
    UNAUTHENTICATED) are still logged and counted. Health and reflection calls are neither logged nor counted:
    probes every few seconds would drown the signal.
    """

    #: Wrapped handlers kept per (method, handler); cleared past this size, a guard against an inner interceptor
    #: that returns a new handler object on every call (ours return stable ones).
    MAX_CACHED_HANDLERS = 1024

    def __init__(self, service: str) -> None:
        self._service = service
        self._log = log.bind()
        self._cache: dict[tuple[str, int], tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        if method.startswith(_UNOBSERVED_PREFIXES):
            return handler
        # The wrapper is built once per method and reused: it reads the call's ids from its context when it runs.
        # Building a handler per call (three closures + a namedtuple) was a measurable share of a trivial RPC.
        key = (method, id(handler))
        hit = self._cache.get(key)
        if hit is not None and hit[0] is handler:
            return hit[1]
        wrapped = self._wrap_handler(handler, method)
        if len(self._cache) >= self.MAX_CACHED_HANDLERS:
            self._cache.clear()
        self._cache[key] = (handler, wrapped)
        return wrapped

    def _wrap_handler(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        wrap = self._wrap
        # Requests are parsed by a deserializer that never raises (see Undecodable): corrupt bytes → INVALID_ARGUMENT.
        deserializer = tolerant_deserializer(handler.request_deserializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                wrap(handler.unary_unary, method, metrics.rpc_observer("unary", method), stream_out=False),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                wrap(handler.unary_stream, method, metrics.rpc_observer("server_stream", method), stream_out=True),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                wrap(handler.stream_unary, method, metrics.rpc_observer("client_stream", method), stream_out=False,
                     stream_in=True),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            wrap(handler.stream_stream, method, metrics.rpc_observer("bidi_stream", method), stream_out=True,
                 stream_in=True),
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )

    def _wrap(
        self, fn: Callable[..., Any], method: str, obs: metrics.RpcObserver, *, stream_out: bool,
        stream_in: bool = False,
    ) -> Callable[..., Any]:
        logger = self._log
        # A streaming handler may be an async generator or a coroutine using the reader/writer API (context.write;
        # e.g. the token check's deny handler): grpc.aio accepts both, so must the wrapper (`async for` over a
        # coroutine is a TypeError).
        coroutine_stream = stream_out and inspect.iscoroutinefunction(fn)
        pass_undecodable = bool(getattr(fn, "reads_undecodable", False))
        # structlog's filtering loggers fix their level at configure time (before servers start); a logger without
        # the method (another wrapper class) is treated as DEBUG-enabled.
        is_enabled = getattr(logger, "is_enabled_for", None)
        debug = is_enabled(logging.DEBUG) if is_enabled else True

        def call_context(context: grpc.aio.ServicerContext) -> dict[str, str]:
            """Log context of one call: its correlation ids from metadata (a fresh request id when absent)."""
            ctx: dict[str, str] = {}
            for k, v in context.invocation_metadata() or ():
                name = _CONTEXT_KEYS.get(k)
                if name is not None:
                    ctx[name] = v
            if "request_id" not in ctx:
                ctx["request_id"] = os.urandom(8).hex()  # 16 hex chars, as uuid4().hex[:16] was, 4x cheaper
            ctx["rpc"] = method
            return ctx

        def fail(
            context: grpc.aio.ServicerContext, exc: BaseException, start: float, ctx: dict[str, str]
        ) -> grpc.Status:
            """Log and count the failed call and return the status to abort it with (CancelledError re-raised).

            The caller aborts *after* its ``except`` block, never inside it: ``abort_with_status`` raises an
            ``AbortError`` that grpc.aio keeps on the call's state (``RPCState.abort_exception``), and the
            exception's traceback reaches that state again through the frames' ``context`` — a reference cycle.
            Raised inside the ``except`` block the AbortError would also chain ``exc`` (``__context__``) and with it
            the servicer's frames and the request they hold, so every refused request (the fuzz's MB-sized
            strings, their upb arenas) lived until a full gc pass: the extraction service at 2x its warm RSS
            after the large RPC fuzz (issue 11 item 8; memray leaks report + gc.DEBUG_SAVEALL)."""
            domain = _domain_error(exc)
            if domain is not None:
                err = domain
            elif isinstance(exc, asyncio.CancelledError):
                err = Cancelled("call cancelled")
            elif isinstance(exc, NotImplementedError):
                err = Unimplemented(str(exc) or "method not implemented")
            else:
                logger.exception("rpc_internal_error", **ctx)
                err = VantageError(f"internal error: {type(exc).__name__}")
            if is_timeout(err):
                left = context.time_remaining()
                if left is not None and left <= CLIENT_DEADLINE_SLACK:
                    # The caller's own deadline ran out: say so (DEADLINE_EXCEEDED), not "the provider is down".
                    err = DeadlineExceeded(f"the call's deadline passed: {err.message}", provider=err.provider,
                                           reason="DEADLINE")
            # VantageError messages are meant to be secret-free; still, a provider's error text can quote a key
            # (a URL with ?api_key=…) and a message can echo a huge client field, and the message travels to the
            # client: one function masks and bounds it (shared.errors.public_message), field violations too.
            safe = public_message(err.message)
            if safe != err.message:
                err.message = safe
            if isinstance(err, InvalidArgument) and err.violations:  # only InvalidArgument carries violations
                err.violations = [(public_message(f, 200), public_message(d)) for f, d in err.violations]
            elapsed = time.perf_counter() - start
            obs.done(err.code.name, elapsed)
            logger.info("rpc", code=err.code.name, error=err.message, ms=round(elapsed * 1000, 2), **ctx)
            if isinstance(exc, asyncio.CancelledError):
                raise exc
            status = to_status(err)
            if err.code is grpc.StatusCode.UNAVAILABLE:
                status = without_client_retry(status)
            return status

        def aborted(context: grpc.aio.ServicerContext, start: float, ctx: dict[str, str]) -> None:
            # The handler (or an inner interceptor, e.g. the token check) called context.abort(...): the status is
            # already on the context.
            elapsed = time.perf_counter() - start
            code = _status_name(context, "UNKNOWN")
            obs.done(code, elapsed)
            logger.info("rpc", code=code, ms=round(elapsed * 1000, 2), **ctx)

        if stream_out:

            async def stream_handler(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                start = time.perf_counter()
                obs.started.inc()
                ctx = call_context(context)
                tokens = structlog.contextvars.bind_contextvars(**ctx)
                caller = current_caller.set(context.peer() or "")
                try:
                    if stream_in:
                        request = decoded_requests(request, pass_undecodable=pass_undecodable)
                    elif type(request) is Undecodable:
                        raise request.to_error()
                    if coroutine_stream:
                        await fn(request, context)
                    else:
                        async for item in fn(request, context):
                            yield item
                    elapsed = time.perf_counter() - start
                    code = _status_name(context)
                    obs.done(code, elapsed)
                    logger.info("rpc", code=code, ms=round(elapsed * 1000, 2), **ctx)
                    return
                except grpc.aio.AbortError as e:
                    aborted(context, start, ctx)
                    request = None  # the AbortError is in a cycle (see fail): keep the request out of it
                    raise e.with_traceback(None) from None
                except BaseException as exc:
                    if isinstance(exc, GeneratorExit):
                        raise
                    status = fail(context, exc, start, ctx)
                finally:
                    with contextlib.suppress(ValueError):  # a generator finalised in another context
                        current_caller.reset(caller)
                    structlog.contextvars.reset_contextvars(**tokens)
                request = None  # only a failed call gets here (see fail: abort outside the except block)
                await context.abort_with_status(status)

            return stream_handler

        async def unary_handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = time.perf_counter()
            obs.started.inc()
            ctx = call_context(context)
            tokens = structlog.contextvars.bind_contextvars(**ctx)
            # Fair share of provider budgets is per caller: the peer connection (never the token).
            caller = current_caller.set(context.peer() or "")
            try:
                if stream_in:
                    request = decoded_requests(request, pass_undecodable=pass_undecodable)
                elif type(request) is Undecodable:
                    raise request.to_error()
                response = await fn(request, context)
                elapsed = time.perf_counter() - start
                code = _status_name(context)
                obs.done(code, elapsed)
                if debug:  # the OK line of a unary call is DEBUG: skip building it when it would be dropped
                    logger.debug("rpc", code=code, ms=round(elapsed * 1000, 2), **ctx)
                return response
            except grpc.aio.AbortError as e:
                aborted(context, start, ctx)
                request = None  # the AbortError is in a cycle (see fail): keep the request out of it
                raise e.with_traceback(None) from None
            except BaseException as exc:
                status = fail(context, exc, start, ctx)
            finally:
                current_caller.reset(caller)
                structlog.contextvars.reset_contextvars(**tokens)
            request = None  # only a failed call gets here (see fail: abort outside the except block)
            await context.abort_with_status(status)

        return unary_handler


@functools.cache
def _libc_malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None where there is none (musl, macOS)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_memory() -> bool:
    """Give the heap pages freed since the last call back to the OS (glibc ``malloc_trim(0)``, which since glibc 2.8
    trims every arena and the free pages inside the heap, man 3 malloc_trim). False where it is not available.

    Why: a burst of large requests (multi-MB answers parsed in worker threads, each with its own malloc arena)
    leaves hundreds of MB freed but kept by glibc — measured in the extraction service after a fuzz run: RSS 793 MB,
    285 MB after one trim, the caches holding ~20 MB of it."""
    trim = _libc_malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


async def _release_memory_every(seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        await asyncio.to_thread(release_memory)


@dataclass
class RunningServer:
    """A started server: its bound port, the server and its health servicer."""

    name: str
    host: str
    port: int
    server: grpc.aio.Server
    health: HealthServicer
    service_names: list[str] = field(default_factory=list)
    tls: bool = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def shutdown(self, grace: float | None) -> None:
        """Health → NOT_SERVING, refuse new calls, let in-flight calls finish within ``grace`` seconds."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


@contextlib.asynccontextmanager
async def serving(
    name: str,
    builder: Builder[S],
    settings: S,
    *,
    host: str | None = None,
    port: int = 0,
    interceptors: list[grpc.aio.ServerInterceptor] | None = None,
) -> AsyncIterator[RunningServer]:
    """Start service ``name`` on ``host:port`` (port 0 = any free port) and yield it; stop it on exit.

    TLS (mTLS with a client CA) when ``settings`` names a certificate, the bearer-token check when it has a token
    (:mod:`shared.security`); ``interceptors`` run inside those. Raises ``OSError`` when the port cannot be bound
    and :class:`shared.security.TLSConfigError` for unusable TLS settings, both before the builder runs.
    """
    host = host or settings.host
    security.register_settings_secrets(settings)
    credentials = security.server_credentials(settings)
    async with builder(settings) as mounts:
        server = grpc.aio.server(
            options=server_options(settings),
            interceptors=[ContextInterceptor(name), *security.server_interceptors(settings), *(interceptors or [])],
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        )
        for m in mounts:
            m.add_to_server(m.servicer, server)
        health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        names = [m.service_name for m in mounts]
        reflection.enable_server_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
        )
        try:
            if credentials is not None:
                bound = server.add_secure_port(f"{host}:{port}", credentials)
            else:
                bound = server.add_insecure_port(f"{host}:{port}")
        except RuntimeError as e:  # grpcio raises RuntimeError when the bind fails
            raise OSError(f"{name}: cannot bind {host}:{port}: address in use or not available") from e
        if bound == 0:
            raise OSError(f"{name}: cannot bind {host}:{port}")
        await server.start()
        for n in ["", *names]:
            await health.set(n, health_pb2.HealthCheckResponse.SERVING)
        running = RunningServer(name, host, bound, server, health, names, tls=credentials is not None)
        try:
            yield running
        finally:
            await running.shutdown(settings.grace_seconds)


async def run_service(
    name: str,
    builder: Builder[S],
    settings: S,
    *,
    host: str | None = None,
    port: int | None = None,
    ready_file: str | os.PathLike[str] | None = None,
) -> None:
    """Run service ``name`` until SIGTERM/SIGINT, then shut down gracefully.

    When ``ready_file`` is given, ``{"name", "address", "port", "pid"}`` is written to it (atomically) once the
    server is SERVING, so a parent process can wait for readiness by polling the file. With ``metrics_port`` set,
    Prometheus metrics are served at ``http://host:<metrics_port + offset>/metrics`` (:mod:`shared.metrics`);
    ``"metrics_port"`` is then in the ready file too. Every ``memory_release_interval_seconds`` the freed heap goes
    back to the OS (:func:`release_memory`).
    """
    port = getattr(settings, f"{name}_port") if port is None else port
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    interval = float(getattr(settings, "memory_release_interval_seconds", 0) or 0)
    async with contextlib.AsyncExitStack() as stack:
        metrics_server = metrics.start_metrics_server(settings, name, host=host)
        if metrics_server is not None:
            stack.callback(metrics_server.close)
        if interval > 0:  # the heap trimmer lives exactly as long as the server (closed before the metrics)
            await stack.enter_async_context(background(_release_memory_every(interval)))
        async with serving(name, builder, settings, host=host, port=port) as running:
            log.info(
                "serving", address=running.address, services=running.service_names, tls=running.tls, pid=os.getpid()
            )
            if ready_file:
                info: dict[str, Any] = {"name": name, "address": running.address, "port": running.port}
                if metrics_server is not None:
                    info["metrics_port"] = metrics_server.port
                write_ready_file(ready_file, info)
            await stop.wait()
            log.info("shutting_down", grace_seconds=settings.grace_seconds)
    log.info("stopped")


def write_ready_file(path: str | os.PathLike[str], info: dict[str, Any]) -> None:
    """Write ``info`` (+ pid) as JSON to ``path`` atomically (write a temp file, then rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps({**info, "pid": os.getpid()}))
    tmp.replace(p)
