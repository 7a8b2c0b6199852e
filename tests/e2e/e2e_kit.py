"""Helpers of the CLI tests (imported by name: a module called ``conftest`` is ambiguous when several test
directories are collected together): the repository root, and a runner for the real ``vantage`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from shared.procs import Stack

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Cli:
    """Runs ``vantage …`` as a subprocess (``python -m services.orchestrator.cli``) with the stack's addresses."""

    env: dict[str, str]
    cwd: Path

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "services.orchestrator.cli", *args]

    def full_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("VANTAGE_")}
        return {**base, **self.env, **(extra or {})}

    def __call__(self, *args: str, extra_env: dict[str, str] | None = None, timeout: float = 120) -> Result:
        p = subprocess.run(
            self.command(*args), cwd=self.cwd, env=self.full_env(extra_env), capture_output=True, text=True,
            timeout=timeout,
        )
        return Result(p.returncode, p.stdout, p.stderr)

    def popen(self, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args), cwd=self.cwd, env=self.full_env(extra_env), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )


def cli_for(stack: Stack, cwd: Path) -> Cli:
    return Cli(
        env={**stack.env(), "VANTAGE_DATABASE_URL": f"sqlite:///{cwd / 'vantage.db'}",
             "VANTAGE_RETRY_INITIAL_SECONDS": "0.01", "VANTAGE_RETRY_MAX_SECONDS": "0.05"},
        cwd=cwd,
    )
