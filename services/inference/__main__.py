"""`python -m services.inference [--host H] [--port P] [--ready-file F]`: run the inference service until SIGTERM."""

from services.inference.server import build
from shared.service_main import main

if __name__ == "__main__":
    main("inference", build)
