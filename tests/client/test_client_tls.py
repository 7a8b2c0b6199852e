"""TLS, mTLS and the bearer token as call credentials: the client against an inference service that listens with
TLS, requires a client certificate from its CA (shared/security.py) and a bearer token."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_kit import ROOT, TOKEN
from vantage_client import AsyncVantageClient, Unauthenticated, Unavailable, VantageClient

from shared.procs import start_child, stop_child

sys.path.insert(0, str(ROOT / "tests" / "ops"))
from ops_testkit import INTERNAL_NAME, Pki, make_pki

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls_inference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Pki]]:
    d = tmp_path_factory.mktemp("client-tls")
    pki = make_pki(d / "pki")
    child = start_child("inference", env={
        "VANTAGE_LOG_LEVEL": "WARNING", "VANTAGE_DATABASE_URL": f"sqlite:///{d / 'inference.db'}",
        "VANTAGE_TLS_CERT_FILE": str(pki.server_cert), "VANTAGE_TLS_KEY_FILE": str(pki.server_key),
        "VANTAGE_TLS_CA_FILE": str(pki.ca), "VANTAGE_AUTH_TOKEN": TOKEN,
    }, log_dir=d)
    yield child.address, pki
    stop_child(child, grace=5)


def test_mtls_with_token(tls_inference: tuple[str, Pki]) -> None:
    addr, pki = tls_inference
    # The certificate names localhost, 127.0.0.1 and INTERNAL_NAME; server_name checks the last one.
    with VantageClient(inference_target=addr, ca_cert=pki.ca, client_cert=pki.client_cert,
                       client_key=pki.client_key.read_bytes(), server_name=INTERNAL_NAME, token=TOKEN) as client:
        assert client.route("gpt-5.5").provider == "openai"
    with VantageClient(inference_target=addr, ca_cert=pki.ca, client_cert=pki.client_cert,
                       client_key=pki.client_key) as no_token, pytest.raises(Unauthenticated):
        no_token.route("gpt-5.5")


def test_mtls_refuses_a_foreign_client_certificate(tls_inference: tuple[str, Pki]) -> None:
    addr, pki = tls_inference
    with VantageClient(inference_target=addr, ca_cert=pki.ca, client_cert=pki.rogue_client_cert,
                       client_key=pki.rogue_client_key, token=TOKEN) as rogue, pytest.raises(Unavailable):
        rogue.route("gpt-5.5", timeout=10)
    with VantageClient(inference_target=addr, token=TOKEN) as plaintext, pytest.raises(Unavailable):
        plaintext.route("gpt-5.5", timeout=10)


async def test_async_mtls(tls_inference: tuple[str, Pki]) -> None:
    addr, pki = tls_inference
    async with AsyncVantageClient(inference_target=addr, tls=True, ca_cert=pki.ca, client_cert=pki.client_cert,
                                  client_key=pki.client_key, token=TOKEN) as client:
        assert (await client.route("claude-sonnet-5")).provider == "anthropic"


def test_unreadable_certificate_is_a_value_error(tmp_path: Path) -> None:
    client = VantageClient(inference_target="127.0.0.1:1", ca_cert=tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="ca_cert: cannot read"):
        client.route("gpt-5.5")
