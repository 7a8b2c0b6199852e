"""A private, throw-away PostgreSQL server for the crash suite's "PostgreSQL restarted mid-run" test.

Restarting the machine's shared server (``pg_ctlcluster 15 main restart``) would break every other test and session
using it at that moment, so the test gets a server of its own: ``initdb`` into a temporary directory, ``pg_ctl
start`` on a free loopback port (no Unix socket, ``fsync=off``: nothing here must survive the machine), ``pg_ctl
restart`` mid-run, ``pg_ctl stop`` at the end. As root the binaries run as the ``postgres`` user (``runuser``), as
PostgreSQL refuses to run as root. :func:`available` says why it cannot be done when it cannot (no binaries, root
without a ``postgres`` user); the test then falls back to ``pg_terminate_backend`` on the shared server.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _bindir() -> Path | None:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        if out and (Path(out) / "initdb").exists():
            return Path(out)
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(d) / "initdb").exists():
            return Path(d)
    return None


def available() -> str | None:
    """None when a private server can be started here, else the reason it cannot."""
    if _bindir() is None:
        return "no PostgreSQL server binaries (initdb) on this machine"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a 'postgres' user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root without runuser"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateCluster:
    """``initdb`` + ``pg_ctl`` on a temporary data directory; superuser ``postgres``, trust authentication."""

    def __init__(self) -> None:
        bindir = _bindir()
        assert bindir is not None, available()
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="vantage-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            os.chmod(self.root, 0o700)

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True, cwd=self.root)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")

    def _opts(self) -> str:
        return (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off "
                "-c max_connections=200 -c full_page_writes=off")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", self._opts(), "-w", "-t", "60", "start")

    def restart(self, mode: str = "fast") -> float:
        """``pg_ctl restart -m mode`` (fast: roll back and disconnect every session; immediate: crash-like, recovery
        at start). Returns the seconds the server was away."""
        t0 = time.monotonic()
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", self._opts(), "-m", mode, "-w", "-t",
                  "60", "restart")
        return time.monotonic() - t0

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
