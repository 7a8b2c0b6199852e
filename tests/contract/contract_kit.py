"""Helpers of the provider contract suite (imported by name: ``from contract_kit import ...``).

A *contract fixture* is one JSON file under ``tests/contract/fixtures/<provider>/`` that holds a request and the
response a provider documents for it, transcribed from the provider's docs page and/or its official SDK's types
(never from our emulator), plus a JSON Schema of that response's body. See ``tests/contract/README.md`` for the
format and the two ways each fixture is run.

- :func:`load_fixture` / :func:`fixtures_of` read fixtures (and check that they are well formed and cite a dated
  source).
- :func:`assert_shape` validates a body against a fixture's ``response.schema`` (jsonschema, Draft 2020-12) and
  fails with every violation listed, each with its JSON path.
- :class:`DocumentedServer` is a loopback HTTP server (stdlib ``http.server`` on port 0, in a thread) that answers
  a fixture's documented response, so that our real provider client (with its official SDK underneath) can be
  pointed at it and its parsing checked against the documents.
- :func:`send_to_sandbox` sends a fixture's documented request to the running sandbox over real HTTP.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from jsonschema import Draft202012Validator

FIXTURES_DIR = Path(__file__).parent / "fixtures"

#: Keys a fixture file must have (see README.md).
REQUIRED_KEYS = ("provider", "endpoint", "description", "sources", "request", "response")


@dataclass(frozen=True)
class ContractFixture:
    """One documented request/response pair. ``request``: ``{method, path, headers?, query?, json?}`` with ``path``
    relative to the base URL an official SDK is given; ``response``: ``{status, headers?, json? | text?, schema}``;
    ``sources``: ``[{url, checked_on (ISO date), what}]``; ``disagreements``: where docs and SDK differ (free text,
    one entry per difference; empty when they agree)."""

    path: Path
    provider: str
    endpoint: str
    description: str
    sources: list[dict[str, str]]
    request: dict[str, Any]
    response: dict[str, Any]
    disagreements: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def status(self) -> int:
        return int(self.response["status"])

    @property
    def body(self) -> Any:
        """The documented response body (parsed JSON, or the text when the provider answers text)."""
        return self.response["json"] if "json" in self.response else self.response.get("text", "")

    @property
    def schema(self) -> dict[str, Any]:
        return self.response.get("schema") or {}


def load_fixture(provider: str, name: str) -> ContractFixture:
    """``fixtures/<provider>/<name>.json``. Raises ``AssertionError`` if it lacks a key, a dated source, or if its
    documented body does not validate against its own schema (a fixture that contradicts itself checks nothing)."""
    return _load(FIXTURES_DIR / provider / f"{name}.json")


def fixtures_of(provider: str | None = None) -> list[ContractFixture]:
    """Every fixture of ``provider`` (or of all providers), sorted by path."""
    root = FIXTURES_DIR / provider if provider else FIXTURES_DIR
    return [_load(p) for p in sorted(root.rglob("*.json"))]


def _load(path: Path) -> ContractFixture:
    data = json.loads(path.read_text(encoding="utf-8"))
    missing = [k for k in REQUIRED_KEYS if k not in data]
    assert not missing, f"{path.name}: missing keys {missing}"
    assert data["sources"], f"{path.name}: no source cited"
    for src in data["sources"]:
        assert src.get("url", "").startswith("https://"), f"{path.name}: source without an https URL: {src}"
        assert len(src.get("checked_on", "")) == 10, f"{path.name}: source without checked_on (YYYY-MM-DD): {src}"
    for key in ("method", "path"):
        assert key in data["request"], f"{path.name}: request.{key} missing"
    assert "status" in data["response"], f"{path.name}: response.status missing"
    fx = ContractFixture(
        path=path,
        provider=data["provider"],
        endpoint=data["endpoint"],
        description=data["description"],
        sources=data["sources"],
        request=data["request"],
        response=data["response"],
        disagreements=list(data.get("disagreements") or []),
    )
    if fx.schema:
        assert_shape(fx.body, fx.schema, where=f"{path.name} (documented body)")
    return fx


def shape_errors(body: Any, schema: dict[str, Any]) -> list[str]:
    """Every violation of ``schema`` by ``body`` as ``"$.path: message"``, in document order (empty when valid)."""
    validator = Draft202012Validator(schema)
    out = []
    for err in sorted(validator.iter_errors(body), key=lambda e: [str(p).zfill(8) for p in e.absolute_path]):
        where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        out.append(f"{where}: {err.message}")
    return out


def assert_shape(body: Any, schema: dict[str, Any], *, where: str) -> None:
    """Fail with every way ``body`` departs from ``schema`` (``where`` names what was checked)."""
    errors = shape_errors(body, schema)
    assert not errors, f"{where} does not match the documented shape:\n  " + "\n  ".join(errors[:40])


def assert_matches_fixture(response: httpx.Response, fx: ContractFixture, *, where: str = "sandbox") -> Any:
    """The HTTP ``response`` has the fixture's documented status and its body validates against the fixture's
    schema; returns the parsed body."""
    assert response.status_code == fx.status, (
        f"{where} answered HTTP {response.status_code} to {fx.name}, documented {fx.status}: {response.text[:500]}"
    )
    if "json" in fx.response:
        body = response.json()
    else:
        body = response.text
    if fx.schema:
        assert_shape(body, fx.schema, where=f"{where}'s answer to {fx.provider}/{fx.name}")
    return body


@dataclass
class Received:
    """One request the :class:`DocumentedServer` got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class DocumentedServer:
    """A loopback HTTP/1.1 server on a free port that answers fixtures' documented responses.

    ``serve(fx)`` makes ``fx.request.method`` + ``prefix + fx.request.path`` answer ``fx.response`` (status, headers,
    body); anything else answers 404 ``{"error": "no documented response for ..."}`` so a client calling the wrong
    path fails loudly. ``received`` lists every request (method, path with query, headers lower-cased, raw body).
    ``url`` is ``http://127.0.0.1:<port>``. Use as a context manager (the ``documented_server`` fixture does).
    """

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], tuple[int, dict[str, str], bytes]] = {}
        self.received: list[Received] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path
                with server._lock:
                    server.received.append(
                        Received(self.command, path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    route = server.routes.get((self.command, path.split("?", 1)[0]))
                if route is None:
                    status, headers, payload = (
                        404,
                        {"content-type": "application/json"},
                        json.dumps({"error": f"no documented response for {self.command} {path}"}).encode(),
                    )
                else:
                    status, headers, payload = route
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="documented-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def serve(self, fx: ContractFixture, *, prefix: str = "") -> None:
        """Answer ``fx``'s documented response at ``prefix + fx.request["path"]`` (prefix: e.g. ``/v1``)."""
        headers = {k.lower(): v for k, v in (fx.response.get("headers") or {}).items()}
        if "json" in fx.response:
            payload = json.dumps(fx.response["json"]).encode()
            headers.setdefault("content-type", "application/json")
        else:
            payload = str(fx.response.get("text", "")).encode()
            headers.setdefault("content-type", "text/plain")
        with self._lock:
            self.routes[(fx.request["method"].upper(), prefix + fx.request["path"].split("?", 1)[0])] = (
                fx.status,
                headers,
                payload,
            )

    def __enter__(self) -> DocumentedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


async def send_to_sandbox(
    client: httpx.AsyncClient, base: str, fx: ContractFixture, *, headers: dict[str, str] | None = None,
    json_body: Any = None,
) -> httpx.Response:
    """Send ``fx``'s documented request to ``base + fx.request.path`` (``base``: the provider's sandbox base, e.g.
    ``shared.config`` ``SANDBOX_PREFIXES``) with its documented headers (``headers`` added/overriding) and its
    documented JSON body (or ``json_body``)."""
    req = fx.request
    all_headers = {**(req.get("headers") or {}), **(headers or {})}
    body = json_body if json_body is not None else req.get("json")
    return await client.request(
        req["method"], base.rstrip("/") + req["path"], headers=all_headers, params=req.get("query"),
        json=body if body is not None else None,
    )
