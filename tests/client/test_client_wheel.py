"""``vantage-client`` as its users get it: ``python -m build`` makes a wheel of ``clients/python`` (offline:
``--no-isolation``, the build backend setuptools from this venv), the wheel is installed with ``pip --no-deps
--no-index`` into a fresh ``python -m venv``, and there — with only grpcio, grpcio-status, protobuf and their own
dependencies (googleapis-common-protos, typing-extensions) importable, linked from this venv's site-packages into a
directory on PYTHONPATH, since no package index is reachable offline — ``vantage_client`` imports without any of the
services' packages, and the quickstart example runs against the real stack."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from client_kit import ROOT

pytestmark = pytest.mark.integration

CLIENT = ROOT / "clients" / "python"
#: What the wheel's metadata requires, and what those require in turn.
RUNTIME_DISTS = ("grpcio", "grpcio-status", "protobuf", "googleapis-common-protos", "typing-extensions")


def _link_dists(dest: Path) -> None:
    """Symlink the top-level modules / packages of RUNTIME_DISTS (from this venv) into ``dest``."""
    dest.mkdir()
    for name in RUNTIME_DISTS:
        dist = importlib.metadata.distribution(name)
        tops = {Path(str(f)).parts[0] for f in dist.files or () if not str(f).startswith("..")}
        for top in sorted(tops):
            src = Path(str(dist.locate_file(top)))
            if top.endswith((".dist-info", "__pycache__")) or not src.exists() or (dest / top).exists():
                continue
            (dest / top).symlink_to(src)


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    tmp = tmp_path_factory.mktemp("client-wheel")
    tree = tmp / "tree"  # build from a copy: setuptools writes build/ and *.egg-info next to the sources
    shutil.copytree(CLIENT, tree, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info", "dist"))
    p = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp / "dist"),
                        str(tree)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    (wheel,) = (tmp / "dist").glob("vantage_client-*.whl")

    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(tmp / "venv")], check=True, timeout=300)
    py = tmp / "venv" / "bin" / "python"
    p = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    _link_dists(tmp / "deps")
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(tmp / "deps"), "HOME": str(tmp)}
    return py, env


def test_wheel_installs_and_imports_without_the_services(wheel_venv: tuple[Path, dict[str, str]],
                                                         tmp_path: Path) -> None:
    py, env = wheel_venv
    code = (
        "import importlib.util, vantage_client\n"
        "from vantage_client import VantageClient, AsyncVantageClient\n"
        "from vantage_client._pb.vantage.orchestrator.v1 import orchestrator_pb2\n"
        "import importlib.metadata as md\n"
        "print(vantage_client.__file__)\n"
        "print(sorted(r.split(';')[0].split('>')[0].split('<')[0].strip() for r in md.requires('vantage-client')))\n"
        "print([m for m in ('shared', 'services', 'vantage', 'pydantic', 'httpx', 'sqlalchemy', 'grpc_tools')\n"
        "       if importlib.util.find_spec(m) is not None])\n"
        "import pathlib; print(pathlib.Path(vantage_client.__file__).with_name('py.typed').exists())\n"
    )
    p = subprocess.run([str(py), "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    where, requires, services, typed = p.stdout.splitlines()
    assert where.startswith(str(py.parents[1])), where  # the installed wheel, not the source tree
    assert requires == "['grpcio', 'grpcio-status', 'protobuf']"
    assert services == "[]"  # none of the services' packages is importable there
    assert typed == "True"


def test_quickstart_runs_from_the_wheel(wheel_venv: tuple[Path, dict[str, str]], addrs: dict[str, str],
                                        tmp_path: Path) -> None:
    py, env = wheel_venv
    env = env | {"VANTAGE_ORCHESTRATOR_ADDR": addrs["orchestrator"]}
    p = subprocess.run([str(py), str(ROOT / "examples" / "client_quickstart.py")], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "COMPLETED" in p.stdout and "visibility" in p.stdout and "key,domain,status" in p.stdout
