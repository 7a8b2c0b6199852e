"""What a provider call costs, in USD.

- Tokens: ``input_tokens × in_price / 1e6 + output_tokens × out_price / 1e6`` with ``settings.token_prices(model)``
  (USD per 1M tokens; exact model name, else the longest matching prefix, else the default). List prices:
  providers.md §3.5 (OpenAI), §4.4 (Anthropic), §5.2 (Perplexity).
- Web searches billed by the provider's search tool: ``calls × settings.web_search_call_usd`` ($10 / 1K calls for
  OpenAI's ``web_search`` and Anthropic's ``web_search_20250305``, providers.md §3.5, §4.4).
- Bright Data scraped records: ``records × settings.brightdata_record_usd`` ($1.50 / 1K records, providers.md §2.8).

The formulas are written once here so that a test can recompute a cost bit for bit.
"""

from __future__ import annotations

from shared.config import Settings


def token_cost_usd(settings: Settings, model: str, input_tokens: int, output_tokens: int) -> float:
    """USD for ``input_tokens`` prompt tokens and ``output_tokens`` completion tokens of ``model``.

    Priced by the model name the caller asked for (the one an operator configures prices for), not by the dated
    snapshot a provider reports (``gpt-4.1-2025-04-14`` would resolve to the same prefix anyway).
    """
    in_price, out_price = settings.token_prices(model)
    return input_tokens * in_price / 1e6 + output_tokens * out_price / 1e6


def web_search_cost_usd(settings: Settings, calls: int) -> float:
    """USD for ``calls`` web-search tool calls."""
    return calls * settings.web_search_call_usd


def record_cost_usd(settings: Settings, records: int) -> float:
    """USD for ``records`` successfully scraped Bright Data records (error records are not billed)."""
    return records * settings.brightdata_record_usd
