"""`python -m services.search [--host H] [--port P] [--ready-file F]`: run the search service until SIGTERM."""

from services.search.server import build
from shared.service_main import main

if __name__ == "__main__":
    main("search", build)
