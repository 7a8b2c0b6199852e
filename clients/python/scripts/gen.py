"""Vendor the generated protobuf / gRPC stubs of ``protos/`` into the ``vantage_client`` package.

The stubs live under ``vantage_client._pb`` (``vantage_client/_pb/vantage/<service>/v1/*_pb2*.py``) so that the
wheel never ships a top-level ``vantage`` package that would clash with the services' own ``gen/vantage``. protoc
has no Python import-prefix option, so the absolute imports it writes (``from vantage.common.v1 import …``) are
rewritten to the package namespace; nothing else of the generated text changes. The ``.proto`` file names stay
``vantage/…/*.proto``, so the serialized descriptors are byte-identical to ``gen/``'s and both sets of stubs can be
imported in one process (protobuf accepts a second registration of an identical file, and refuses a different
one: "duplicate file name" — so a process that imports both needs them generated from the same protos/).

Usage: ``python clients/python/scripts/gen.py [--out DIR]`` (default: the package's ``_pb``; ``make proto`` runs it
after ``scripts/gen_protos.py``). ``tests/client``
generates into a temporary directory and compares, so stale vendored stubs fail the tests.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[1]
REPO = CLIENT.parents[1]
PROTOS = REPO / "protos"
PACKAGE_PB = CLIENT / "src" / "vantage_client" / "_pb"
PREFIX = "vantage_client._pb"

_IMPORT = re.compile(r"^(from|import) vantage\.", re.MULTILINE)


def generate(out: Path, protos: Path = PROTOS) -> list[Path]:
    """Run grpc_tools.protoc over every .proto of ``protos`` into ``out`` (replaced), rewrite the imports, add the
    ``__init__.py`` files; returns the files written. Raises RuntimeError when protoc fails."""
    import grpc_tools
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp)
        files = sorted(str(p.relative_to(protos)) for p in protos.rglob("*.proto"))
        well_known = str(Path(grpc_tools.__file__).parent / "_proto")
        rc = protoc.main(["grpc_tools.protoc", f"-I{protos}", f"-I{well_known}", f"--python_out={raw}",
                          f"--pyi_out={raw}", f"--grpc_python_out={raw}", *files])
        if rc != 0:
            raise RuntimeError(f"protoc failed with exit code {rc}")
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        for src in sorted(raw.rglob("*")):
            if not src.is_file():
                continue
            dst = out / src.relative_to(raw)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(_IMPORT.sub(rf"\1 {PREFIX}.vantage.", src.read_text()))
    for d in [out, *(p for p in out.rglob("*") if p.is_dir())]:
        (d / "__init__.py").touch()
    return sorted(p for p in out.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=PACKAGE_PB)
    args = parser.parse_args()
    files = generate(args.out)
    print(f"generated {len(files)} files into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
