"""`python -m services.search [--host H] [--port P] [--ready-file F]`: run the search service until SIGTERM.

It reads only :class:`shared.config.SearchSettings` (no provider key but Tavily's)."""

from services.search.server import build
from shared.config import SearchSettings
from shared.service_main import main

if __name__ == "__main__":
    main("search", build, SearchSettings)
