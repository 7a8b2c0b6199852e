"""The process exit codes of every Vantage command (``vantage …``, ``python -m services.inference prune-cache``,
``vantage loadtest``): one set, so a script can rely on them whichever command it runs.

- 0 ``EXIT_OK``: done.
- 1 ``EXIT_FAILED_ITEMS``: the command ran, but some items of the run failed (their reasons are stored).
- 2 ``EXIT_USAGE``: usage or input error (a bad option, an unknown run, a malformed input file); nothing was done.
- 3 ``EXIT_UNAVAILABLE``: infrastructure unavailable (a service or the database unreachable, schema out of date).
- 130 ``EXIT_INTERRUPTED``: interrupted by Ctrl-C / SIGTERM (128 + SIGINT, the shell convention); the run is
  resumable.
"""

from typing import Final

EXIT_OK: Final = 0
EXIT_FAILED_ITEMS: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNAVAILABLE: Final = 3
EXIT_INTERRUPTED: Final = 130
