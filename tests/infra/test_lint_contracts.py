"""The boundaries `make lint` checks (issue 12 item 6): the import contracts of ``.importlinter`` hold for the tree
and do catch a cross-service import, a service imported by ``shared``, the sandbox importing the product and a new
import cycle; ``buf lint`` (``protos/buf.yaml``) passes and still applies its rules to a new file; ``buf breaking``
passes against the last landing and catches a renumbered field; ``gen/vantage`` is marked typed (PEP 561)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SERVICES = ("search", "inference", "extraction", "orchestrator", "sandbox", "loadtest")


def _check_protos():
    spec = importlib.util.spec_from_file_location("check_protos", ROOT / "scripts" / "check_protos.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = BIN / "lint-imports"
    assert exe.exists(), "import-linter is a dev dependency: pip install -e '.[dev]'"
    return subprocess.run([str(exe), "--no-cache", str(ROOT / ".importlinter")], cwd=cwd,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cwd)}, capture_output=True, text=True,
                          timeout=300)


def _buf() -> str:
    buf = _check_protos().buf_binary()
    assert buf, "buf-bin is a dev dependency: pip install -e '.[dev]'"
    return buf


def test_the_import_contracts_hold_for_the_tree() -> None:
    out = _lint_imports(ROOT)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "BROKEN" not in out.stdout and re.search(r"Contracts: ([6-9]|\d\d+) kept, 0 broken\.", out.stdout)


def _package(root: Path, dotted: str, body: str = "") -> None:
    path = root.joinpath(*dotted.split("."))
    path.mkdir(parents=True, exist_ok=True)
    (path / "__init__.py").write_text(body)


@pytest.mark.parametrize(
    ("module", "body", "broken"),
    [
        ("services.search.leak", "import services.inference.core\n", "Services are independent"),
        ("services.orchestrator.lazy", "def f():\n    from services.extraction import x\n", "Services are independent"),
        ("shared.helper", "from services.orchestrator import store\n", "shared/ imports no service"),
        ("services.sandbox.peek", "import shared.config\n", "The provider sandbox imports nothing of the product"),
        ("services.search.fake", "import services.sandbox.openai\n", "The product imports nothing of the sandbox"),
        ("shared.a", "from shared import b\n", "No import cycles"),
        ("services.orchestrator.store.peek", "from services.orchestrator.app import runs\n",
         "The orchestrator's layers point one way"),
    ],
)
def test_the_import_contracts_catch_a_violation(tmp_path: Path, module: str, body: str, broken: str) -> None:
    # A skeleton of the tree's root packages (same names as the real ones), plus one offending module.
    for name in ("shared", "vantage", "services", *(f"services.{s}" for s in SERVICES)):
        _package(tmp_path, name)
    for name in ("services.inference.core", "services.extraction.x", "services.sandbox.openai", "shared.config",
                 *(f"services.orchestrator.{layer}" for layer in ("cli", "api", "reports", "app", "app.runs",
                                                                   "clients", "store", "domain"))):
        _package(tmp_path, name)
    _package(tmp_path, "shared.b", "from shared import a\n")
    clean = _lint_imports(tmp_path)
    assert clean.returncode == 0, clean.stdout[-3000:]
    if module == "shared.a":
        _package(tmp_path, module, body)
    else:
        target = tmp_path.joinpath(*module.split(".")).with_suffix(".py")
        target.write_text(body)
    out = _lint_imports(tmp_path)
    assert out.returncode != 0, out.stdout[-3000:]
    assert re.search(rf"^{re.escape(broken)}.* BROKEN\b", out.stdout, re.M), out.stdout


def test_buf_lint_and_buf_breaking_pass() -> None:
    cp = _check_protos()
    if cp.baseline() is None:
        pytest.skip(f"no baseline commit (origin/main, {cp.LAST_LANDING}) in this clone: shallow?")
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_protos.py")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_buf_lint_applies_the_standard_rules_to_a_new_file(tmp_path: Path) -> None:
    protos = tmp_path / "protos"
    shutil.copytree(ROOT / "protos", protos)
    new = protos / "vantage" / "common" / "v1" / "extra.proto"
    new.write_text('syntax = "proto3";\n\npackage vantage.common.v1;\n\nenum Colour {\n  RED = 0;\n}\n')
    out = subprocess.run([_buf(), "lint", "protos"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "extra.proto" in out.stdout and "RED" in out.stdout  # ENUM_VALUE_PREFIX / ENUM_ZERO_VALUE_SUFFIX


def test_buf_breaking_catches_a_renumbered_field(tmp_path: Path) -> None:
    protos = tmp_path / "protos"
    shutil.copytree(ROOT / "protos", protos)
    path = protos / "vantage" / "inference" / "v1" / "inference.proto"
    text = path.read_text()
    assert text.count("  string model = 1;\n") >= 1
    path.write_text(text.replace("  string model = 1;\n", "  string model = 99;\n", 1))
    out = subprocess.run([_buf(), "breaking", str(protos), "--against", str(ROOT / "protos")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0, out.stdout
    assert "inference.proto" in out.stdout


def test_gen_is_marked_typed() -> None:
    assert (ROOT / "gen" / "vantage" / "py.typed").is_file()
