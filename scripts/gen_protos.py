"""Generate the Python protobuf and gRPC stubs from ``protos/`` into ``gen/``.

``protoc -I protos`` makes imports absolute (``from vantage.common.v1 import common_pb2``), so ``gen/`` is a
package root (declared in pyproject.toml) and no generated file is edited afterwards. ``gen/vantage/py.typed`` marks
the package as typed (PEP 561), so mypy reads the generated ``.pyi`` stubs.

Usage: ``python scripts/gen_protos.py [--out DIR]`` (default ``gen``). The test suite generates into a temporary
directory and compares, so a stale ``gen/`` fails the tests.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"


def generate(out: Path) -> list[Path]:
    """Run grpc_tools.protoc over every .proto; returns the files written. Raises RuntimeError on failure."""
    import grpc_tools
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    protos = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    well_known = str(Path(grpc_tools.__file__).parent / "_proto")
    rc = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *protos,
        ]
    )
    if rc != 0:
        raise RuntimeError(f"protoc failed with exit code {rc}")
    for d in [out / "vantage", *(p for p in (out / "vantage").rglob("*") if p.is_dir())]:
        (d / "__init__.py").touch()
    # PEP 561: the stubs (.pyi) are part of the package, so type checkers read them (https://peps.python.org/pep-0561/).
    (out / "vantage" / "py.typed").touch()
    return sorted(p for p in out.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "gen")
    args = parser.parse_args()
    files = generate(args.out)
    print(f"generated {len(files)} files into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
