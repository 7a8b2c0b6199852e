"""`python -m services.extraction [--host H] [--port P] [--ready-file F]`: run the extraction service until SIGTERM."""

from services.extraction.server import build
from shared.service_main import main

if __name__ == "__main__":
    main("extraction", build)
