"""The README's configuration table is the one rendered from the Settings class, and every setting is documented."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_config_table():
    """``scripts/config_table.py`` as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("vantage_config_table", ROOT / "scripts" / "config_table.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("vantage_config_table", module)
    spec.loader.exec_module(module)
    return module


ct = load_config_table()


def test_every_setting_has_a_description():
    assert ct.missing_descriptions() == [], "add description=… to these Settings fields"


def test_readme_configuration_table_matches_the_settings_class():
    readme = (ROOT / "README.md").read_text()
    current = ct.current_block(readme)
    assert current is not None, f"README.md lacks the {ct.START} … {ct.END} markers"
    assert current == ct.block(ct.render()), f"README.md's configuration table is stale: run `{ct.WRITE_HINT}`"


def test_table_lists_every_env_name_and_hides_secret_defaults(monkeypatch):
    # Even with secrets in the environment, the table is the same: it is rendered from the class, not an instance.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-CANARYtable0123456789")
    monkeypatch.setenv("VANTAGE_AUTH_TOKEN", "table-token-canary")
    table = ct.render()
    for env in ct.env_names():
        assert f"`{env}`" in table
    assert "CANARY" not in table and "table-token-canary" not in table
    row = next(line for line in table.splitlines() if "`VANTAGE_AUTH_TOKEN`" in line)
    assert "| — |" in row
    assert "`TAVILY_API_KEY` / `VANTAGE_TAVILY_API_KEY`" in table
    assert "`VANTAGE_DATABASE_URL` / `DATABASE_URL`" in table


def test_write_then_check_round_trip(tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_text("# X\n\nintro\n")
    assert ct.main(["--check", str(readme)]) == 1
    assert ct.write(readme) is True
    assert "## Configuration" in readme.read_text()
    assert ct.main(["--check", str(readme)]) == 0
    assert ct.write(readme) is False
