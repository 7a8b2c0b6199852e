"""Render the README's configuration table from :class:`shared.config.Settings` and the per-service models.

    python scripts/config_table.py                  # print the table (markdown)
    python scripts/config_table.py --write README.md  # replace the block between the markers in README.md
    python scripts/config_table.py --check README.md  # exit 1 when README.md's block is stale

One row per setting: its environment name(s) (``VANTAGE_<FIELD>`` unless the field declares vendor aliases such as
``TAVILY_API_KEY`` or ``DATABASE_URL``), which services read it (the models of :data:`shared.config.SERVICE_SETTINGS`
that hold it; "all" = every service), its default (secrets show "—"; JSON for lists and dicts), and its meaning
(the field's ``description``). Rows come grouped by the model part that declares them (:data:`PARTS`). ``tests/ops/test_ops_config_table.py`` fails when the README's block differs, and when
a field has no description.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from shared import config  # noqa: E402
from shared.config import SERVICE_SETTINGS, Settings, readers  # noqa: E402

#: The parts of :class:`Settings`, in table order; each row sits under the part that declares its field.
PARTS: tuple[type, ...] = (
    config.BaseServiceSettings, config.DatabaseSettings, config.ProviderSettings, config.ClientSettings,
    config.SharedSearchSettings, config.SearchSettings, config.SharedInferenceSettings, config.InferenceSettings,
    config.ExtractionSettings, config.OrchestratorSettings, Settings,
)

START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"
WRITE_HINT = "python scripts/config_table.py --write README.md"


def env_names_of(name: str, field: FieldInfo, prefix: str) -> list[str]:
    """Environment names that set field ``name``: its validation aliases when it has any, else prefix + NAME."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(c) for c in alias.choices if isinstance(c, str)]
    if isinstance(alias, str):
        return [alias]
    return [f"{prefix}{name}".upper()]


def env_names(settings_cls: type = Settings) -> dict[str, str]:
    """Every environment name ``settings_cls`` reads → the field it sets (upper-case names)."""
    prefix = settings_cls.model_config.get("env_prefix", "")
    out: dict[str, str] = {}
    for name, field in settings_cls.model_fields.items():
        for env in env_names_of(name, field, prefix):
            out[env.upper()] = name
    return out


def _is_secret(field: FieldInfo) -> bool:
    return "SecretStr" in repr(field.annotation)


def default_text(field: FieldInfo) -> str:
    """The default as shown in the table: "—" for secrets and None, JSON for containers, ``str`` otherwise."""
    if _is_secret(field):
        return "—"
    if field.default is not PydanticUndefined:
        value: Any = field.default
    elif field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    else:
        return "(required)"
    if value is None:
        return "—"
    if isinstance(value, SecretStr):
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list | tuple):
        text = json.dumps(value, separators=(", ", ": "))
        return text if len(text) <= 60 else f"{text[:57]}…"
    if value == "":
        return '""'
    return str(value)


def _cell(text: str) -> str:
    """Escape for a markdown table cell (pipes, newlines)."""
    return text.replace("|", "\\|").replace("\n", " ")


def field_order(settings_cls: type = Settings) -> list[str]:
    """The fields of ``settings_cls``: those of :data:`PARTS` first, part by part in declaration order (for
    :class:`Settings`: all of them), then any other in the class's own order."""
    ordered: list[str] = []
    for part in PARTS:
        for name in vars(part).get("__annotations__", {}):
            if name in settings_cls.model_fields and name not in ordered:
                ordered.append(name)
    return ordered + [n for n in settings_cls.model_fields if n not in ordered]


def read_by(name: str) -> str:
    """Who reads setting ``name``: "all" services, a comma-separated list, or "CLI" (only the command line)."""
    who = readers(name)
    if len(who) == len(SERVICE_SETTINGS):
        return "all"
    return ", ".join(who) or "CLI"


def render(settings_cls: type = Settings) -> str:
    """The markdown table of every field of ``settings_cls``, grouped by the part that declares it."""
    prefix = settings_cls.model_config.get("env_prefix", "")
    lines = ["| Environment | Read by | Default | Meaning |", "|---|---|---|---|"]
    for name in field_order(settings_cls):
        field = settings_cls.model_fields[name]
        envs = " / ".join(f"`{e}`" for e in env_names_of(name, field, prefix))
        default = default_text(field)
        default = default if default == "—" else f"`{_cell(default)}`"
        lines.append(f"| {envs} | {read_by(name)} | {default} | {_cell(field.description or '')} |")
    return "\n".join(lines) + "\n"


def missing_descriptions(settings_cls: type = Settings) -> list[str]:
    """Fields without a description (the table would have an empty meaning)."""
    return [n for n, f in settings_cls.model_fields.items() if not (f.description or "").strip()]


def block(table: str) -> str:
    """The README block: markers, a note that it is generated, the table."""
    return f"{START}\n<!-- generated by `{WRITE_HINT}`; do not edit by hand -->\n\n{table}\n{END}"


def current_block(readme: str) -> str | None:
    """The marked block of ``readme`` (markers included), or None when the markers are missing."""
    i, j = readme.find(START), readme.find(END)
    if i < 0 or j < i:
        return None
    return readme[i : j + len(END)]


def write(readme_path: Path) -> bool:
    """Replace the block in ``readme_path`` (append it under "## Configuration" when absent). True if changed."""
    text = readme_path.read_text()
    new = block(render())
    old = current_block(text)
    if old is None:
        updated = text.rstrip("\n") + "\n\n## Configuration\n\n" + new + "\n"
    else:
        updated = text.replace(old, new)
    if updated == text:
        return False
    readme_path.write_text(updated)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="README", type=Path, help="update the marked block of this file")
    group.add_argument("--check", metavar="README", type=Path, help="exit 1 when this file's block is stale")
    args = parser.parse_args(argv)
    if args.write:
        changed = write(args.write)
        print(f"{args.write}: {'updated' if changed else 'already current'}", file=sys.stderr)
        return 0
    if args.check:
        if current_block(args.check.read_text()) != block(render()):
            print(f"{args.check}: configuration table is stale; run `{WRITE_HINT}`", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
