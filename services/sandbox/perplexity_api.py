"""Perplexity Sonar emulator: ``POST /perplexity/chat/completions`` (providers.md §5.1).

OpenAI-compatible (the OpenAI SDK works with ``base_url=<root>/perplexity``), plus top-level
``citations`` (URLs) and ``search_results`` (``{title, url, date, last_updated, snippet,
source}``); the answer text carries ``[n]`` markers indexing ``citations`` (1-based).
``web_search_options.user_location.country`` seeds the answer. ``response_format`` json_schema
returns the analyst's classification. Usage adds ``search_context_size``, ``citation_tokens``,
``num_search_queries`` and a ``cost`` breakdown (Sonar list prices, §5.2).
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from . import analyst, answers
from .common import bearer_token, estimate_tokens, new_id
from .errors import context_length_message, error_response
from .openai_api import auth_error, prompt_tokens_for, split_messages, validate_chat_body
from .state import SandboxState

router = APIRouter()

# model → (input $/1M, output $/1M, request fee $/1K at low context)
MODELS = {
    "sonar": (1.0, 1.0, 5.0),
    "sonar-pro": (3.0, 15.0, 6.0),
    "sonar-reasoning": (1.0, 5.0, 5.0),
    "sonar-reasoning-pro": (2.0, 8.0, 6.0),
    "sonar-deep-research": (2.0, 8.0, 5.0),
}


@router.post("/perplexity/chat/completions")
@router.post("/perplexity/v1/chat/completions", include_in_schema=False)
async def chat_completions(request: Request) -> Any:
    state: SandboxState = request.app.state.sandbox
    if state.knobs.require_auth and not bearer_token(request):
        return auth_error("perplexity")
    try:
        body = await request.json()
    except ValueError:
        return error_response("perplexity", 400, "Invalid JSON body")
    if (bad := validate_chat_body("perplexity", body)) is not None:
        return bad
    model: str = body["model"]
    if model not in MODELS:
        return error_response(
            "perplexity",
            400,
            f"Invalid model '{model}'. Permitted models can be found in the documentation.",
            code="invalid_model",
            param="model",
        )
    _, user, _ = split_messages(body["messages"])
    texts = [analyst.message_text(m.get("content")) for m in body["messages"]]
    prompt_tokens = prompt_tokens_for(texts)
    limit = state.knobs.perplexity_max_input_tokens
    if prompt_tokens > limit:
        return error_response(
            "perplexity", 400, context_length_message(limit, prompt_tokens), code="context_length_exceeded"
        )
    opts = body.get("web_search_options") or {}
    location = (opts.get("user_location") or {}).get("country")
    context_size = opts.get("search_context_size", "low")
    rf = body.get("response_format") or {}
    citations: list[str] = []
    search_results: list[dict[str, Any]] = []
    if rf.get("type") == "json_schema":
        cls = analyst.classify(user, state.corpus)
        content = json.dumps(analyst.conform_to_schema(cls, (rf.get("json_schema") or {}).get("schema")))
        queries = 0
    else:
        question = analyst.message_text(
            next((m.get("content") for m in reversed(body["messages"]) if m.get("role") == "user"), user)
        )
        ans = answers.generate(state.corpus, question, model, location)
        content, cited = ans.render_numbered()
        citations = [p.url for p in cited]
        search_results = [
            {
                "title": p.title,
                "url": p.url,
                "date": p.date,
                "last_updated": p.date,
                "snippet": p.snippet,
                "source": "web",
            }
            for p in [*cited, *[r for r in ans.search_results if r not in cited]]
        ]
        queries = len(ans.queries)
    completion_tokens = estimate_tokens(content)
    citation_tokens = sum(estimate_tokens(r["snippet"]) for r in search_results)
    in_price, out_price, fee = MODELS[model]
    cost_in = prompt_tokens * in_price / 1e6
    cost_out = completion_tokens * out_price / 1e6
    request_cost = fee / 1000 if queries else 0.0
    state.stats.bill(
        "perplexity", requests=1, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
    )
    return JSONResponse(
        {
            "id": new_id("", 32),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "finish_reason": "stop",
                    "delta": {"role": "assistant", "content": ""},
                }
            ],
            "citations": citations,
            "search_results": search_results,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "search_context_size": context_size,
                "citation_tokens": citation_tokens,
                "num_search_queries": queries,
                "reasoning_tokens": 0,
                "cost": {
                    "input_tokens_cost": round(cost_in, 6),
                    "output_tokens_cost": round(cost_out, 6),
                    "request_cost": round(request_cost, 6),
                    "total_cost": round(cost_in + cost_out + request_cost, 6),
                },
            },
        }
    )
