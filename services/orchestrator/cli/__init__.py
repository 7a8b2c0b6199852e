"""The ``vantage`` command line (:mod:`services.orchestrator.cli.root` declares the commands).

``from services.orchestrator.cli import app, main`` and ``python -m services.orchestrator.cli`` stay the public entry
points; the console script ``vantage`` is :func:`main`.
"""

from services.orchestrator.cli.root import app, main

__all__ = ["app", "main"]
