"""Constants and helpers of the client-library tests (imported by name: a module called ``conftest`` is ambiguous
when several test directories are collected together). Importing it puts ``clients/python/src`` on the path."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENT_SRC = ROOT / "clients" / "python" / "src"
if str(CLIENT_SRC) not in sys.path:
    sys.path.insert(0, str(CLIENT_SRC))


def vendored_stubs_stale() -> bool:
    """True when a ``*_pb2.py`` (the serialized descriptors) of clients/python/src/vantage_client/_pb differs from
    what scripts/gen.py makes of protos/ now (a comment-only change touches the ``_grpc.py`` docstrings only)."""
    import importlib.util
    import tempfile

    spec = importlib.util.spec_from_file_location("_vantage_client_gen", ROOT / "clients/python/scripts/gen.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    vendored = CLIENT_SRC / "vantage_client" / "_pb"

    def tree(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*_pb2.py")}

    with tempfile.TemporaryDirectory() as tmp:
        gen.generate(Path(tmp) / "_pb")
        return tree(Path(tmp) / "_pb") != tree(vendored)


#: The bearer token (VANTAGE_AUTH_TOKEN) of :func:`token_inference`.
TOKEN = "client-test-token-5f0c"
