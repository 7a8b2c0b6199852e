"""``python -m services.orchestrator.cli …`` = ``vantage …``."""

from services.orchestrator.cli.root import main

main()
