"""The committed stubs in gen/ are what `make proto` would generate from protos/ now."""

from __future__ import annotations

import filecmp
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_stubs_are_current(tmp_path: Path) -> None:
    _load_generator().generate(tmp_path)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(
        p.relative_to(ROOT / "gen") for p in (ROOT / "gen").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    assert fresh == committed, "gen/ has missing or extra files: run `make proto` and commit gen/"
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, ROOT / "gen" / p, shallow=False)]
    assert not stale, f"stale generated files (run `make proto` and commit gen/): {stale}"
