"""Perplexity Agent API emulator: ``POST /perplexity/v1/agent`` and its alias ``POST /perplexity/v1/responses``.

Sources (providers-2026-12.md, "Perplexity API"): the Agent API replaced Sonar Chat Completions, retired on
2026-09-27 (docs.perplexity.ai/docs/agent-api/migrate-from-sonar/overview); request and response types are the
official SDK's (perplexityai/perplexity-py 0.38.0, ``types/response_create_params.py``,
``types/response_create_response.py``, ``types/output_item.py``, ``types/responses_usage.py``). So the OpenAI SDK
works with ``base_url=<root>/perplexity/v1`` (``responses.create`` → ``/v1/responses``).

Request: ``input`` (a string or input items), ``instructions``, ``preset`` (``fast`` ``low`` ``medium`` ``high``
``xhigh`` ``wide-research``) or ``model`` (``provider/model``, e.g. ``perplexity/sonar``) or ``models``,
``max_output_tokens``, ``response_format`` ``{type: json_schema, json_schema: {name, schema}}``, ``tools``
(``web_search`` with ``filters``, ``user_location {country, ...}``, ``search_context_size``; ``fetch_url``) and
``tool_choice``. A bare legacy id (``sonar``, ``sonar-pro``) is a 400: legacy Sonar ids are not aliases on the Agent
API (vercel/ai PR #18991).

Search is not automatic: the model searches only when ``tool_choice`` forces the ``web_search`` tool
(``{"type": "web_search"}`` or ``"required"``); a tool that is merely offered gives an answer with no
``search_results`` item and no search charge — what theopenco/llmgateway PR #4146 saw live. The perplexity-py
0.38.0 request type has no ``tool_choice`` field; the emulator follows the gateway's live observation.

Response: ``{id, object: "response", created_at, model, status, output, usage}``. ``output`` holds one
``search_results`` item per search (``{type, queries, results: [{id, title, url, snippet, date, last_updated,
source}]}``; ids are global across the items) then one ``message`` whose ``output_text`` carries ``[n]`` markers
naming result ids. ``usage``: ``input_tokens``, ``output_tokens``, ``total_tokens``, ``tool_calls_details
{web_search: {invocation}}`` and ``cost {currency: "USD", input_cost, output_cost, tool_calls_cost, total_cost}``
(tokens at :data:`MODEL_PRICES`, searches at $5 / 1K calls: docs.perplexity.ai/docs/grounded-llm/responses/tools/
overview). A ``user_location.country`` seeds the answer (``ToolWebSearchToolUserLocation``).

The retired ``POST /perplexity/chat/completions`` (and ``/perplexity/v1/chat/completions``) answers ``410`` with an
OpenAI-style error body naming the retirement and the migration guide, and bills nothing. The retirement and its
date are documented (docs.perplexity.ai/docs/agent-api/migrate-from-sonar/overview); the status code and body a
retired endpoint returns are not, so ``410 Gone`` (RFC 9110 §15.5.11) is our choice: a client must meet a clear,
permanent error rather than a silent answer.
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
from .openai_api import auth_error
from .responses_api import input_texts
from .state import SandboxState

router = APIRouter()

#: Agent API presets (perplexity-py ``preset``; the list in hex/llm-perplexity PR #27 and maximhq/bifrost #7236).
PRESETS = ("fast", "low", "medium", "high", "xhigh", "wide-research")
#: The model a preset runs on in the sandbox. Perplexity picks (and may change) the model behind a preset; the
#: response's ``model`` names it (hex/llm-perplexity PR #27).
PRESET_MODEL = "perplexity/sonar"
#: USD per 1M tokens (input, output) by model; ``perplexity/sonar`` as theopenco/llmgateway lists it for the Agent
#: API ($0.25 / $2.50). Other ``provider/model`` ids get :data:`DEFAULT_PRICES`.
MODEL_PRICES: dict[str, tuple[float, float]] = {"perplexity/sonar": (0.25, 2.5)}
DEFAULT_PRICES = (1.0, 5.0)
#: USD per ``web_search`` call ($5.00 / 1,000 calls, docs.perplexity.ai/docs/grounded-llm/responses/tools/overview).
WEB_SEARCH_USD = 0.005
RETIRED_MESSAGE = (
    "The Sonar Chat Completions API (POST /chat/completions) was retired on 2026-09-27. Use the Agent API, "
    "POST /v1/agent (alias /v1/responses); migration guide: "
    "https://docs.perplexity.ai/docs/agent-api/migrate-from-sonar/overview"
)


@router.post("/perplexity/chat/completions")
@router.post("/perplexity/v1/chat/completions", include_in_schema=False)
async def retired_chat_completions(request: Request) -> Any:
    """The retired Sonar endpoint: 410 naming the retirement (nothing is billed)."""
    return error_response("perplexity", 410, RETIRED_MESSAGE, code="endpoint_retired")


def _forced_search(tool_choice: Any) -> bool:
    if tool_choice == "required":
        return True
    return isinstance(tool_choice, dict) and tool_choice.get("type") == "web_search"


@router.post("/perplexity/v1/agent")
@router.post("/perplexity/v1/responses")
async def agent(request: Request) -> Any:
    state: SandboxState = request.app.state.sandbox
    if state.knobs.require_auth and not bearer_token(request):
        return auth_error("perplexity")
    try:
        body = await request.json()
    except ValueError:
        return error_response("perplexity", 400, "Invalid JSON body")
    if not isinstance(body, dict):
        return error_response("perplexity", 400, "Request body must be a JSON object")
    if body.get("stream"):
        return error_response("perplexity", 400, "The sandbox does not emulate streaming.", param="stream")
    preset, model, models = body.get("preset"), body.get("model"), body.get("models")
    if isinstance(models, list) and models and all(isinstance(m, str) for m in models):
        model = models[0]
    if preset is not None and (not isinstance(preset, str) or preset not in PRESETS):
        return error_response("perplexity", 400, f"Invalid preset {preset!r}; valid presets: {', '.join(PRESETS)}",
                              code="invalid_preset", param="preset")
    if preset is None and not isinstance(model, str):
        return error_response("perplexity", 400, "One of 'model', 'models' or 'preset' is required.", param="model")
    if preset is None and isinstance(model, str) and "/" not in model:
        return error_response(
            "perplexity", 400,
            f"Invalid model '{model}': Agent API model ids are provider/model (e.g. perplexity/sonar) or a preset.",
            code="invalid_model", param="model",
        )
    served = model if isinstance(model, str) and preset is None else PRESET_MODEL
    texts, question = input_texts(body.get("input"))
    if not question:
        return error_response("perplexity", 400, "Missing required parameter: 'input'.", param="input")
    raw_instructions = body.get("instructions")
    instructions = raw_instructions if isinstance(raw_instructions, str) else ""
    input_tokens = sum(estimate_tokens(t) + 3 for t in [*texts, instructions])
    limit = state.knobs.perplexity_max_input_tokens
    if input_tokens > limit:
        return error_response("perplexity", 400, context_length_message(limit, input_tokens),
                              code="context_length_exceeded", param="input")
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    search_tool = next((t for t in tools if t.get("type") == "web_search"), None)
    searching = search_tool is not None and _forced_search(body.get("tool_choice"))
    location = ((search_tool or {}).get("user_location") or {}).get("country")
    raw_rf = body.get("response_format")
    rf: dict[str, Any] = raw_rf if isinstance(raw_rf, dict) else {}

    output: list[dict[str, Any]] = []
    searches = 0
    if rf.get("type") == "json_schema":
        cls = analyst.classify("\n\n".join(texts), state.corpus)
        text = json.dumps(analyst.conform_to_schema(cls, (rf.get("json_schema") or {}).get("schema")),
                          ensure_ascii=False)
    else:
        ans = answers.generate(state.corpus, question, served, location if searching else None, state.knobs.answer_mention_probability)
        if searching:
            text, cited = ans.render_numbered()
            retrieved = [*cited, *[p for p in ans.search_results if p not in cited]]
            queries = ans.queries or [question]
            searches = len(queries)
            # One search_results item per web_search invocation; result ids number every result of the response
            # (the [n] markers of the text name them), as the agentic loop returns them (last30days-skill PR #913).
            chunks = [retrieved[i::searches] for i in range(searches)]
            ids = {p.url: i for i, p in enumerate(retrieved, 1)}
            for q, pages in zip(queries, chunks, strict=True):
                output.append({
                    "type": "search_results",
                    "queries": [q],
                    "results": [
                        {"id": ids[p.url], "title": p.title, "url": p.url, "snippet": p.snippet, "date": p.date,
                         "last_updated": p.date, "source": "web"}
                        for p in pages
                    ],
                })
            input_tokens += sum(estimate_tokens(p.snippet) for p in retrieved)  # results enter the context
        else:
            text = ans.render_plain()
    output.append({
        "id": new_id("msg_", 32),
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    })
    output_tokens = estimate_tokens(text)
    in_price, out_price = MODEL_PRICES.get(served, DEFAULT_PRICES)
    input_cost = round(input_tokens * in_price / 1e6, 8)
    output_cost = round(output_tokens * out_price / 1e6, 8)
    tool_cost = round(searches * WEB_SEARCH_USD, 8)
    state.stats.bill("perplexity", requests=1, input_tokens=input_tokens, output_tokens=output_tokens,
                     web_search_requests=searches)
    usage: dict[str, Any] = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "input_tokens_details": {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        "cost": {
            "currency": "USD",
            "input_cost": input_cost,
            "output_cost": output_cost,
            "tool_calls_cost": tool_cost,
            "total_cost": round(input_cost + output_cost + tool_cost, 8),
        },
    }
    if searches:
        usage["tool_calls_details"] = {"web_search": {"invocation": searches}}
    return JSONResponse({
        "id": new_id("resp_", 32),
        "object": "response",
        "created_at": int(time.time()),
        "model": served,
        "status": "completed",
        "background": False,
        "error": None,
        "output": output,
        "usage": usage,
    })
