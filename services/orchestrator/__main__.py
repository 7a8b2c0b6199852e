"""`python -m services.orchestrator [--host H] [--port P] [--ready-file F]`: run the orchestrator service until SIGTERM.

A database whose schema is behind the code stops the process with one line (exit 3) instead of a traceback.
"""

import sys

from services.orchestrator.api.server import build
from services.orchestrator.store import SchemaOutOfDate
from shared.service_main import main

if __name__ == "__main__":
    try:
        main("orchestrator", build)
    except SchemaOutOfDate as e:
        print(f"error: {e.message}", file=sys.stderr)
        sys.exit(3)
