"""Fixtures of the provider contract suite (see README.md here).

- ``documented_server``: a :class:`contract_kit.DocumentedServer` (loopback, port 0) for "way 1": point our real
  provider client at it, ``serve(fx)`` a documented response, check what the client parsed (and what it sent).
- ``sandbox_url`` (from ``tests/conftest.py``: the sandbox as a real HTTP process on a free port, once per
  session) and ``sandbox_http``: an ``httpx.AsyncClient`` on it, for "way 2": send the documented request to the
  emulator and validate its answer against the same fixture (:func:`contract_kit.assert_matches_fixture`).
- ``sandbox_base``: provider → the base URL an official SDK is given for the sandbox (``shared.config``
  ``SANDBOX_PREFIXES``), e.g. ``sandbox_base("tavily")`` → ``http://127.0.0.1:PORT/tavily``.

``sandbox_knobs`` (tests/conftest.py) patches the session sandbox's knobs for one test and restores them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from contract_kit import DocumentedServer

from shared.config import SANDBOX_PREFIXES


@pytest.fixture
def documented_server() -> Iterator[DocumentedServer]:
    """A loopback HTTP server answering documented responses (stopped after the test)."""
    with DocumentedServer() as server:
        yield server


@pytest.fixture
async def sandbox_http(sandbox_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client for sending documented requests to the sandbox (no SDK in between)."""
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@pytest.fixture
def sandbox_base(sandbox_url: str) -> Callable[[str], str]:
    """provider → its sandbox base URL (what the official SDK is given as base URL)."""

    def base(provider: str) -> str:
        return sandbox_url.rstrip("/") + SANDBOX_PREFIXES[provider]

    return base
