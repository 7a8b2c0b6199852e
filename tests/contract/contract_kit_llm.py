"""Helpers of the LLM-provider contract tests (OpenAI, Anthropic, Perplexity; tests/contract/README.md).

:func:`provider_at` builds one of our real provider clients (official SDK underneath, no retries, no circuit
breaker) pointed at a loopback :class:`contract_kit.DocumentedServer`, so that "way 1" checks how our client parses
what the provider documents. :func:`user_request` turns a fixture's documented request into our
:class:`~services.inference.providers.CompletionRequest`.
"""

from __future__ import annotations

from typing import Any

from contract_kit import ContractFixture

from services.inference.providers import ChatMessage, CompletionRequest
from services.inference.providers.anthropic import AnthropicProvider
from services.inference.providers.openai import OpenAIProvider
from services.inference.providers.perplexity import PerplexityProvider
from shared.config import Settings

KEYS = {"openai": "sk-contract-test", "anthropic": "sk-ant-contract-test", "perplexity": "pplx-contract-test"}
CLASSES = {"openai": OpenAIProvider, "anthropic": AnthropicProvider, "perplexity": PerplexityProvider}


def provider_at(name: str, base_url: str, **settings: Any) -> Any:
    """Our ``name`` provider ("openai" | "anthropic" | "perplexity") with its API root at ``base_url`` (OpenAI's
    includes ``/v1``), one attempt per call (no retries), no circuit breaker."""
    s = Settings(**{f"{name}_base_url": base_url, f"{name}_api_key": KEYS[name]}, sandbox_url="",
                 provider_max_attempts=1, circuit_failure_threshold=0, adaptive_concurrency=False, **settings)
    return CLASSES[name].from_settings(s)


def user_request(fx: ContractFixture, **kw: Any) -> CompletionRequest:
    """A :class:`CompletionRequest` with the fixture request's model and its messages (``messages`` or ``input``
    items; a top-level ``system`` / ``instructions`` becomes a system message)."""
    body = fx.request["json"]
    msgs = [ChatMessage(m["role"], m["content"]) for m in body.get("messages") or body.get("input") or []]
    system = body.get("system") or body.get("instructions")
    if system:
        msgs.insert(0, ChatMessage("system", system))
    return CompletionRequest(model=kw.pop("model", body.get("model", "")), messages=msgs, **kw)
