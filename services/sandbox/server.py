"""Run the sandbox in-process: pre-bound socket, uvicorn.Server, ready file, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import structlog
import uvicorn

from .app import create_app
from .config import SandboxSettings

log = structlog.get_logger("sandbox.server")


class _Server(uvicorn.Server):
    """uvicorn.Server that leaves signal handling to :func:`serve` (and to embedding tests)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind and listen on ``host:port`` (port 0 = any free port); IPv6 if ``host`` has a colon."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _write_ready_file(path: str | os.PathLike[str], port: int) -> None:
    # Write-then-rename so a poller never reads a half-written file.
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps({"port": port, "pid": os.getpid()}))
    tmp.replace(target)


async def _uvicorn(server: uvicorn.Server, sock: socket.socket) -> Exception | None:
    """``server.serve`` on ``sock``; its error returned, not raised (a task of :func:`serve`'s TaskGroup)."""
    try:
        await server.serve(sockets=[sock])
    except Exception as e:
        return e
    return None


async def serve(
    settings: SandboxSettings | None = None,
    host: str | None = None,
    port: int | None = None,
    ready_file: str | os.PathLike[str] | None = None,
    shutdown_event: asyncio.Event | None = None,
    started_event: asyncio.Event | None = None,
    handle_signals: bool | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (main thread only) or until ``shutdown_event`` is set.

    After startup, writes ``{"port": <bound port>, "pid": <pid>}`` to ``ready_file`` and sets
    ``started_event`` (whose waiter can read the port from the ready file or the returned
    socket via :func:`bind_socket` if it bound one itself).
    """
    settings = settings or SandboxSettings()
    host = host if host is not None else settings.host
    port = port if port is not None else settings.port
    sock = bind_socket(host, port)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings),
        log_level=settings.log_level.lower(),
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        # Keep-alive long enough that pooled SDK connections are reused across a test.
        timeout_keep_alive=30,
    )
    server = _Server(config)
    stop = shutdown_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[int] = []
    if handle_signals is None:
        handle_signals = shutdown_event is None
    if handle_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)

    # uvicorn and the stop signal are tasks of one TaskGroup; a failure of uvicorn (its start-up: the port, the app's
    # lifespan) is raised as it is, not wrapped in an ExceptionGroup.
    failure: BaseException | None = None
    try:
        async with asyncio.TaskGroup() as tg:
            serve_task = tg.create_task(_uvicorn(server, sock), name="sandbox-uvicorn")
            stop_task = tg.create_task(stop.wait(), name="sandbox-stop")
            try:
                while not server.started:
                    if serve_task.done():
                        raise serve_task.result() or RuntimeError("sandbox server exited during startup")
                    await asyncio.sleep(0.005)
                if ready_file is not None:
                    _write_ready_file(ready_file, bound_port)
                log.info("sandbox_started", host=host, port=bound_port, pid=os.getpid())
                if started_event is not None:
                    started_event.set()
                await asyncio.wait({serve_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            except Exception as e:
                failure = e
            finally:
                server.should_exit = True
                stop_task.cancel()
        if failure is None:
            failure = serve_task.result()
        if failure is not None:
            raise failure
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        sock.close()
        log.info("sandbox_stopped", port=bound_port)
