"""Every contract fixture is well formed: required keys, a dated https source, and a documented body that validates
against its own schema (README.md here). A fixture that fails this would check nothing in the provider tests."""

from __future__ import annotations

import pytest
from contract_kit import FIXTURES_DIR, _load, shape_errors

FILES = sorted(FIXTURES_DIR.rglob("*.json"))


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(FIXTURES_DIR)) for p in FILES])
def test_fixture_is_well_formed_and_self_consistent(path):
    fx = _load(path)
    assert fx.provider == path.parent.name, f"{path.name} sits under {path.parent.name}/ but says {fx.provider}"
    assert fx.schema, f"{path.name}: response.schema missing (the documented shape both ways are checked against)"


def test_shape_errors_name_the_path_of_a_missing_field():
    schema = {"type": "object", "required": ["results"],
              "properties": {"results": {"type": "array", "items": {"type": "object", "required": ["score"]}}}}
    assert shape_errors({"results": [{"score": 1}]}, schema) == []
    assert shape_errors({"results": [{"relevance": 1}]}, schema) == ["$.results[0]: 'score' is a required property"]
