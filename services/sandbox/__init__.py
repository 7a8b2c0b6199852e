"""Offline HTTP emulators of the Tavily, OpenAI, Anthropic, Bright Data and Perplexity APIs.

One server, one port, a path prefix per provider — hand :func:`base_urls` of the server root
to each official SDK. See ``app.py`` for the admin endpoints and ``config.py`` for the knobs.
"""

from .config import CHATGPT_DATASET_ID, PERPLEXITY_DATASET_ID, SandboxSettings, base_urls

__all__ = [
    "CHATGPT_DATASET_ID",
    "PERPLEXITY_DATASET_ID",
    "SandboxSettings",
    "base_urls",
    "create_app",
    "serve",
]


def __getattr__(name: str):  # lazy: importing the package must not pull in FastAPI/uvicorn
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "serve":
        from .server import serve

        return serve
    raise AttributeError(name)
