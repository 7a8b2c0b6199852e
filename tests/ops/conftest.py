"""Fixtures of the operations tests: a per-session test PKI (see ``ops_testkit.make_pki``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ops_testkit import Pki, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """CA, server, client and rogue-client certificates written once per session."""
    return make_pki(Path(tmp_path_factory.mktemp("pki")))
