"""The dated model catalogue: each model's prices, lifecycle status, shutdown date and successor, with the source
and the date the facts were checked (data: ``shared/model_catalogue.toml``, read with stdlib ``tomllib``; an
operator may point ``VANTAGE_MODEL_CATALOGUE_PATH`` at a file of the same format instead).

Matching (:meth:`Catalogue.lookup`) is by lower-cased exact id, by an explicit alias, or by a *dated snapshot* of
a listed id — the id followed by ``-YYYY-MM-DD`` (OpenAI, e.g. ``gpt-5.5-2026-04-23``) or ``-YYYYMMDD``
(Anthropic, e.g. ``claude-opus-4-5-20251101``). Never by a broad prefix: ``claude-opus-4-5`` is not
``claude-opus-4`` ($5 / $25 per 1M tokens, not $15 / $75; providers-2026-12.md "Prices a ledger must not get
wrong"), ``o3-pro`` is not ``o3``. A name that matches nothing is *unknown*: it may run, but its cost is only an
estimate and is flagged as such (``CompleteResponse.cost_estimated``, ``cost_ledger.cost_estimated``).

Lifecycle (:meth:`ModelInfo.effective_status`): ``active``; ``deprecated`` (answers, shuts down on
``shutdown_date``: callers are warned); ``retired`` (refused with ``FAILED_PRECONDITION`` naming the successor). A
deprecated model whose shutdown date has passed counts as retired.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

BUILTIN_PATH = Path(__file__).with_name("model_catalogue.toml")
STATUSES = ("active", "deprecated", "retired")
PROVIDERS = ("openai", "anthropic", "perplexity", "brightdata")
_DATED = re.compile(r"^(?P<base>.+?)-(?:\d{4}-\d{2}-\d{2}|\d{8})$")


class CatalogueError(ValueError):
    """A catalogue file that cannot be used (unreadable TOML, a missing or ill-typed field, a duplicate name)."""


@dataclass(frozen=True)
class ModelInfo:
    """One catalogue entry. Prices in USD: per 1M input / output tokens, per billed web-search call."""

    id: str
    provider: str
    input_usd_per_million_tokens: float
    output_usd_per_million_tokens: float
    web_search_usd_per_call: float
    status: str
    source_url: str
    checked_on: dt.date
    shutdown_date: dt.date | None = None
    successor: str = ""
    aliases: tuple[str, ...] = ()
    note: str = ""

    def effective_status(self, today: dt.date | None = None) -> str:
        """``status``, except that a deprecated model past its shutdown date is ``retired``."""
        today = today or dt.date.today()
        if self.status == "deprecated" and self.shutdown_date is not None and self.shutdown_date <= today:
            return "retired"
        return self.status

    def lifecycle_message(self, today: dt.date | None = None) -> str:
        """A one-line warning for a deprecated or retired model ("" when active), e.g. ``gpt-4.1 is deprecated: it
        shuts down on 2027-01-14; use gpt-5.5``."""
        status = self.effective_status(today)
        if status == "active":
            return ""
        when = self.shutdown_date.isoformat() if self.shutdown_date else "an unannounced date"
        instead = f"; use {self.successor}" if self.successor else ""
        if status == "retired":
            return f"{self.id} was retired on {when}{instead}"
        return f"{self.id} is deprecated: it shuts down on {when}{instead}"


@dataclass(frozen=True)
class Catalogue:
    """The models of one catalogue file, in file order, with an index of every id and alias."""

    models: tuple[ModelInfo, ...]
    path: str = ""
    _index: dict[str, ModelInfo] = field(default_factory=dict, repr=False, compare=False)

    def lookup(self, model: str) -> ModelInfo | None:
        """The entry of ``model`` (exact id, alias, or dated snapshot of either; case-insensitive), or None."""
        name = model.strip().lower()
        hit = self._index.get(name)
        if hit is None and (m := _DATED.match(name)):
            hit = self._index.get(m.group("base"))
        return hit


def _date(value: object, where: str, key: str) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise CatalogueError(f"{where}: {key} must be an ISO date (YYYY-MM-DD), not {value!r}")


def _price(entry: dict[str, object], key: str, where: str) -> float:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 10_000:
        raise CatalogueError(f"{where}: {key} must be a number of USD in 0..10000, not {value!r}")
    return float(value)


def parse_catalogue(text: str, path: str = "") -> Catalogue:
    """A :class:`Catalogue` from TOML ``text``; :class:`CatalogueError` naming the entry and field on any problem
    (unknown status or provider, missing price, successor missing for a deprecated/retired model, bad date, a name
    listed twice)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise CatalogueError(f"{path or 'catalogue'}: not valid TOML: {e}") from None
    entries = data.get("model")
    if not isinstance(entries, list) or not entries:
        raise CatalogueError(f"{path or 'catalogue'}: no [[model]] entries")
    models: list[ModelInfo] = []
    index: dict[str, ModelInfo] = {}
    for n, entry in enumerate(entries, 1):
        where = f"{path or 'catalogue'} model #{n}"
        mid = entry.get("id")
        if not isinstance(mid, str) or not mid.strip():
            raise CatalogueError(f"{where}: id is required")
        where = f"{where} ({mid})"
        status = entry.get("status")
        if status not in STATUSES:
            raise CatalogueError(f"{where}: status must be one of {', '.join(STATUSES)}, not {status!r}")
        provider = entry.get("provider")
        if provider not in PROVIDERS:
            raise CatalogueError(f"{where}: provider must be one of {', '.join(PROVIDERS)}, not {provider!r}")
        successor = str(entry.get("successor") or "")
        if status != "active" and not successor:
            raise CatalogueError(f"{where}: a {status} model needs a successor")
        source = entry.get("source_url")
        if not isinstance(source, str) or not source.startswith("https://"):
            raise CatalogueError(f"{where}: source_url must be an https URL")
        aliases = entry.get("aliases") or []
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
            raise CatalogueError(f"{where}: aliases must be a list of names")
        info = ModelInfo(
            id=mid.strip().lower(),
            provider=str(provider),
            input_usd_per_million_tokens=_price(entry, "input_usd_per_million_tokens", where),
            output_usd_per_million_tokens=_price(entry, "output_usd_per_million_tokens", where),
            web_search_usd_per_call=_price(entry, "web_search_usd_per_call", where),
            status=str(status),
            source_url=source,
            checked_on=_date(entry.get("checked_on"), where, "checked_on"),
            shutdown_date=_date(entry["shutdown_date"], where, "shutdown_date") if "shutdown_date" in entry else None,
            successor=successor.strip().lower(),
            aliases=tuple(a.strip().lower() for a in aliases),
            note=str(entry.get("note") or ""),
        )
        for name in (info.id, *info.aliases):
            if name in index:
                raise CatalogueError(f"{where}: {name!r} is already listed (as {index[name].id})")
            index[name] = info
        models.append(info)
    for info in models:
        if info.successor and info.successor not in index:
            raise CatalogueError(f"{path or 'catalogue'} ({info.id}): successor {info.successor!r} is not listed")
    return Catalogue(tuple(models), path, index)


@lru_cache(maxsize=8)
def load_catalogue(path: str = "") -> Catalogue:
    """The catalogue at ``path`` (empty: the built-in ``shared/model_catalogue.toml``), read once per process.
    Raises :class:`CatalogueError` (also for an unreadable file)."""
    file = Path(path) if path else BUILTIN_PATH
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as e:
        raise CatalogueError(f"cannot read the model catalogue {file}: {e.strerror or e}") from None
    return parse_catalogue(text, str(file))
