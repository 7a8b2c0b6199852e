"""The sandbox FastAPI application: every emulator router plus the admin endpoints.

Admin (not counted in stats, never faulted):

- ``GET /healthz`` → ``{"status": "ok"}``
- ``GET /_sandbox/stats`` → counters, see :mod:`.stats` for the shape
- ``POST /_sandbox/reset`` → zero counters, drop Bright Data snapshots, re-seed RNGs
- ``GET /_sandbox/config`` → current knobs (:class:`.config.Knobs`)
- ``POST /_sandbox/config`` → JSON merge-patch of the knobs; 400 with pydantic errors if invalid
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from . import anthropic_api, brightdata, openai_api, perplexity_api, responses_api, tavily
from .config import SandboxSettings
from .faults import SandboxMiddleware
from .state import SandboxState

log = structlog.get_logger("sandbox")


def create_app(settings: SandboxSettings | None = None) -> FastAPI:
    """Build a sandbox app with its own state (``app.state.sandbox``)."""
    settings = settings or SandboxSettings()
    state = SandboxState(settings)
    app = FastAPI(
        title="Vantage provider sandbox",
        description="Offline emulators of the Tavily, OpenAI, Anthropic, Bright Data and Perplexity APIs.",
        docs_url="/_sandbox/docs",
        openapi_url="/_sandbox/openapi.json",
        redoc_url=None,
    )
    app.state.sandbox = state
    app.add_middleware(SandboxMiddleware, state=state)
    for module in (tavily, openai_api, responses_api, anthropic_api, perplexity_api, brightdata):
        app.include_router(module.router)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Handlers parse bodies themselves; this only catches path/query type errors.
        return JSONResponse({"error": "invalid request", "detail": exc.errors()}, status_code=400)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/_sandbox/stats")
    async def stats() -> dict[str, Any]:
        out = state.stats.snapshot(running=state.snapshots.running_by_dataset())
        out["brightdata"]["rate_limited"] = state.snapshots.block_stats()  # 429s sent, the IP block
        return out

    @app.post("/_sandbox/reset")
    async def reset() -> dict[str, Any]:
        state.reset()
        log.info("sandbox_reset")
        return {"status": "reset"}

    @app.get("/_sandbox/config")
    async def get_config() -> dict[str, Any]:
        return state.knobs.model_dump()

    @app.post("/_sandbox/config")
    async def set_config(request: Request) -> Any:
        try:
            patch = await request.json()
        except ValueError:
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        if not isinstance(patch, dict):
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        try:
            knobs = state.update_knobs(patch)
        except ValidationError as e:
            return JSONResponse(
                {"error": "invalid config", "detail": e.errors(include_url=False)}, status_code=400
            )
        log.info("sandbox_config_changed", keys=sorted(patch))
        return knobs.model_dump()

    return app
