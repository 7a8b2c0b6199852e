"""Helpers of the operations tests: a throw-away PKI made with ``cryptography`` and a tiny echo servicer.

The PKI (:func:`make_pki`) is one CA, a server certificate for ``localhost`` / ``127.0.0.1`` and a second name used
through ``tls_server_name``, a client certificate from the same CA, and a client certificate from an unrelated CA
(to prove that mTLS checks the issuer, not just the presence of a certificate). Keys are EC P-256 (fast to make);
certificates are valid for one day.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.errors import InvalidArgument, Unavailable
from shared.grpc_server import Mount
from vantage.search.v1 import search_pb2, search_pb2_grpc

SERVICE_NAME = "vantage.search.v1.SearchService"
#: A name that only the server certificate's SAN carries (dialled via tls_server_name).
INTERNAL_NAME = "search.vantage.internal"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], cn: str, *, server: bool
) -> tuple[bytes, bytes]:
    """(key PEM, cert PEM) signed by ``ca``; server certs carry DNS/IP SANs, client certs the clientAuth EKU."""
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    )
    if server:
        b = b.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName(INTERNAL_NAME),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
    cert = b.sign(ca_key, hashes.SHA256())
    return _pem_key(key), cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files of one test PKI."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_ca: Path
    rogue_client_cert: Path
    rogue_client_key: Path


def make_pki(directory: Path) -> Pki:
    """Write a CA, a server pair, a client pair and a rogue CA + client pair under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca("Vantage test CA")
    rogue = _ca("Rogue CA")
    files: dict[str, bytes] = {"ca.pem": ca[1].public_bytes(serialization.Encoding.PEM)}
    files["server.key"], files["server.pem"] = _leaf(ca, "localhost", server=True)
    files["client.key"], files["client.pem"] = _leaf(ca, "vantage-client", server=False)
    files["rogue-ca.pem"] = rogue[1].public_bytes(serialization.Encoding.PEM)
    files["rogue-client.key"], files["rogue-client.pem"] = _leaf(rogue, "intruder", server=False)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    (directory / "server.key").chmod(0o600)
    d = directory
    return Pki(
        d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key",
        d / "rogue-ca.pem", d / "rogue-client.pem", d / "rogue-client.key",
    )


class Echo(search_pb2_grpc.SearchServiceServicer):
    """``Search`` echoes the query; a few magic queries fail in the ways a real service can.

    - ``"invalid"`` → INVALID_ARGUMENT; ``"unavailable:<text>"`` → UNAVAILABLE with ``<text>`` in the message;
    - ``"boom:<text>"`` → an unexpected ``RuntimeError(<text>)`` (→ INTERNAL);
    - ``"sleep:<s>"`` → waits ``s`` seconds first.
    """

    async def Search(self, request, context):
        q = request.query
        if q == "invalid":
            raise InvalidArgument("query is not valid", field="query")
        if q.startswith("unavailable:"):
            raise Unavailable(f"provider failed: {q.split(':', 1)[1]}", retry_after=0.01, provider="tavily")
        if q.startswith("boom:"):
            raise RuntimeError(q.split(":", 1)[1])
        if q.startswith("sleep:"):
            await asyncio.sleep(float(q.split(":", 1)[1]))
        return search_pb2.SearchResponse(query=q)


def echo_builder(servicer: Echo | None = None):
    """A builder (see :func:`shared.grpc_server.serving`) that mounts ``servicer`` (a new :class:`Echo` if None)."""
    servicer = servicer or Echo()

    @contextlib.asynccontextmanager
    async def build(_settings):
        yield [Mount(servicer, search_pb2_grpc.add_SearchServiceServicer_to_server, SERVICE_NAME)]

    return build
