"""`python -m services.inference [--host H] [--port P] [--ready-file F]`: run the inference service until SIGTERM.

`python -m services.inference prune-cache [--older-than S]` / `db-upgrade`: maintenance of the service's own tables
(:mod:`services.inference.admin`). Both read only :class:`shared.config.InferenceSettings` (no Tavily key)."""

import sys

from services.inference.admin import COMMANDS

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
        from services.inference.admin import main as admin_main

        sys.exit(admin_main(sys.argv[1:]))
    # Imported only to serve: the maintenance commands do not pay for the providers and the gRPC server.
    from services.inference.server import build
    from shared.config import InferenceSettings
    from shared.service_main import main

    main("inference", build, InferenceSettings)
