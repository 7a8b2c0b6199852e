"""`python -m services.orchestrator [--host H] [--port P] [--ready-file F]`: run the orchestrator service until SIGTERM.

It reads only :class:`shared.config.OrchestratorSettings` (no provider key). A database whose schema is behind the
code stops the process with one line (exit 3) instead of a traceback.
"""

import sys

from services.orchestrator.api.server import build
from services.orchestrator.store import SchemaOutOfDate
from shared.config import OrchestratorSettings
from shared.service_main import main

if __name__ == "__main__":
    try:
        main("orchestrator", build, OrchestratorSettings)
    except SchemaOutOfDate as e:
        print(f"error: {e.message}", file=sys.stderr)
        sys.exit(3)
