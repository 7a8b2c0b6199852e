"""`python -m services.extraction [--host H] [--port P] [--ready-file F]`: run the extraction service until SIGTERM.

It reads only :class:`shared.config.ExtractionSettings` (no provider key, no database)."""

from services.extraction.server import build
from shared.config import ExtractionSettings
from shared.service_main import main

if __name__ == "__main__":
    main("extraction", build, ExtractionSettings)
