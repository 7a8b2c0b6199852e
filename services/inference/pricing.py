"""What a provider call costs, in USD, and what the model catalogue says about the model — the one pricing path.

Prices and lifecycle come from the dated model catalogue (:mod:`shared.catalogue`, ``shared/model_catalogue.toml``;
``VANTAGE_MODEL_CATALOGUE_PATH`` replaces it), matched by exact id, explicit alias or dated snapshot, never by prefix.

- Tokens: ``input_tokens × in_price / 1e6 + output_tokens × out_price / 1e6`` (USD per 1M tokens, the catalogue's
  ``input_usd_per_million_tokens`` / ``output_usd_per_million_tokens``). A model missing from the catalogue is
  priced at ``settings.default_token_prices`` — an estimate, flagged by :func:`answer_notes` (never silently).
- Web searches billed by the provider's search tool: ``calls × web_search_usd_per_call`` of the model ($10 / 1K
  calls for OpenAI's ``web_search`` and Anthropic's ``web_search_20250305``, $5 / 1K for Perplexity's, per
  providers-2026-12.md), ``settings.web_search_call_usd`` for a model the catalogue does not list.
- Bright Data scraped records: ``records × settings.brightdata_record_usd`` (an estimate: no official per-record
  price was found, providers-2026-12.md).

Lifecycle: :func:`check_lifecycle` refuses a retired model (``FailedPrecondition`` reason ``MODEL_RETIRED`` naming
its successor) and logs a deprecated one (``model_deprecated``, once per model and process); :func:`answer_notes`
gives the ``cost_estimated`` flag and the ``model_warning`` an answer carries back to the caller.

The formulas are written once here so that a test can recompute a cost bit for bit.
"""

from __future__ import annotations

import datetime as dt

import structlog

from shared.catalogue import ModelInfo, load_catalogue
from shared.config import InferenceSettings, settings_of
from shared.errors import FailedPrecondition
from vantage.inference.v1 import inference_pb2 as pb

log = structlog.get_logger("vantage.inference.pricing")

_warned: set[str] = set()


def model_info(settings: InferenceSettings, model: str) -> ModelInfo | None:
    """The catalogue entry of ``model`` (exact id, alias or dated snapshot), or None when it is unknown."""
    return load_catalogue(settings.model_catalogue_path).lookup(model)


def token_cost_usd(settings: InferenceSettings, model: str, input_tokens: int, output_tokens: int) -> float:
    """USD for ``input_tokens`` prompt tokens and ``output_tokens`` completion tokens of ``model``.

    Priced by the model name the caller asked for; a dated snapshot a provider reports (``gpt-4.1-2025-04-14``)
    resolves to the same entry. Unknown models: ``settings.default_token_prices`` (an estimate)."""
    in_price, out_price = settings.token_prices(model)
    return input_tokens * in_price / 1e6 + output_tokens * out_price / 1e6


def web_search_cost_usd(settings: InferenceSettings, calls: int, model: str = "") -> float:
    """USD for ``calls`` web-search tool calls of ``model`` (its catalogue fee; ``settings.web_search_call_usd``
    when no model is given or it is unknown)."""
    info = model_info(settings, model) if model else None
    fee = info.web_search_usd_per_call if info is not None else settings.web_search_call_usd
    return calls * fee


def record_cost_usd(settings: InferenceSettings, records: int) -> float:
    """USD for ``records`` successfully scraped Bright Data records (error records are not billed)."""
    return records * settings.brightdata_record_usd


def check_lifecycle(settings: InferenceSettings, model: str, today: dt.date | None = None) -> ModelInfo | None:
    """The catalogue entry of ``model`` (None when unknown), after refusing a retired one.

    Raises ``FailedPrecondition`` (reason ``MODEL_RETIRED``, metadata ``model``, ``successor``, ``shutdown_date``)
    for a retired model — or a deprecated one past its shutdown date (``today``: the local date by default). A
    deprecated model logs ``model_deprecated`` (warning, with its shutdown date and successor) the first time this
    process sees it."""
    info = model_info(settings, model)
    if info is None:
        return None
    status = info.effective_status(today)
    if status == "retired":
        raise FailedPrecondition(
            f"model {model!r}: {info.lifecycle_message(today)} (model catalogue, checked "
            f"{info.checked_on.isoformat()})",
            reason="MODEL_RETIRED",
            metadata={"model": info.id, "successor": info.successor,
                      "shutdown_date": info.shutdown_date.isoformat() if info.shutdown_date else ""},
        )
    if status == "deprecated" and info.id not in _warned:
        _warned.add(info.id)
        log.warning("model_deprecated", model=info.id, shutdown_date=str(info.shutdown_date or ""),
                    successor=info.successor, message=info.lifecycle_message(today))
    return info


def answer_notes(
    provider: str, model: str, settings: InferenceSettings | None = None, today: dt.date | None = None
) -> tuple[bool, str]:
    """``(cost_estimated, model_warning)`` of an answer that ``provider`` gave as ``model``.

    ``cost_estimated``: the model is missing from the catalogue, so its tokens were priced at
    ``default_token_prices``. ``model_warning``: the lifecycle line of a deprecated model (its shutdown date and
    successor), "" otherwise. Bright Data answers are priced per record whatever model the scraped assistant
    reports: never flagged. A ``provider/model`` id (Perplexity Agent API) is also looked up by its model part."""
    if provider.startswith("brightdata") or not model:
        return False, ""
    cat = load_catalogue((settings or settings_of(InferenceSettings)).model_catalogue_path)
    info = cat.lookup(model)
    if info is None and "/" in model:
        info = cat.lookup(model.split("/", 1)[1])
    if info is None:
        return True, ""
    return False, info.lifecycle_message(today)


def catalogue_to_proto(settings: InferenceSettings) -> list[pb.ModelInfo]:
    """The catalogue as ``ListModelsResponse.models`` (status is the effective one: a deprecated model past its
    shutdown date shows ``retired``; dates as ISO ``YYYY-MM-DD``, "" when none)."""
    return [
        pb.ModelInfo(
            model=m.id, provider=m.provider, aliases=list(m.aliases),
            input_usd_per_million_tokens=m.input_usd_per_million_tokens,
            output_usd_per_million_tokens=m.output_usd_per_million_tokens,
            web_search_usd_per_call=m.web_search_usd_per_call,
            status=m.effective_status(), shutdown_date=m.shutdown_date.isoformat() if m.shutdown_date else "",
            successor=m.successor, source_url=m.source_url, checked_on=m.checked_on.isoformat(), note=m.note,
        )
        for m in load_catalogue(settings.model_catalogue_path).models
    ]
