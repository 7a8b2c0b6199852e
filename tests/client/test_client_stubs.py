"""The stubs vendored into ``vantage_client._pb`` are what ``clients/python/scripts/gen.py`` makes of ``protos/``
now: a proto change without ``python clients/python/scripts/gen.py`` fails here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from client_kit import ROOT

CLIENT = ROOT / "clients" / "python"
VENDORED = CLIENT / "src" / "vantage_client" / "_pb"


def _gen_module():
    spec = importlib.util.spec_from_file_location("vantage_client_gen", CLIENT / "scripts" / "gen.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def test_vendored_stubs_are_current(tmp_path: Path) -> None:
    fresh = tmp_path / "_pb"
    _gen_module().generate(fresh)
    want, have = _tree(fresh), _tree(VENDORED)
    assert sorted(want) == sorted(have), "vendored stubs stale: run python clients/python/scripts/gen.py"
    stale = [name for name in want if want[name] != have[name]]
    assert not stale, f"vendored stubs stale ({', '.join(stale)}): run python clients/python/scripts/gen.py"


def test_stubs_import_only_from_the_package_namespace() -> None:
    for p in VENDORED.rglob("*.py"):
        for line in p.read_text().splitlines():
            assert not line.startswith(("from vantage.", "import vantage.")), f"{p}: {line}"


def test_both_stub_sets_share_one_descriptor() -> None:
    """The services' gen/ stubs and the client's register the same .proto files: one process can load both."""
    from vantage_client._pb.vantage.orchestrator.v1 import orchestrator_pb2 as client_pb

    from vantage.orchestrator.v1 import orchestrator_pb2 as services_pb

    assert client_pb.Run.DESCRIPTOR is services_pb.Run.DESCRIPTOR
    assert client_pb.Run.FromString(services_pb.Run(run_id="r").SerializeToString()).run_id == "r"
