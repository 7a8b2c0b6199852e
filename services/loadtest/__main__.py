"""``python -m services.loadtest ADDRESS METHOD …``: the same command as ``vantage loadtest``."""

from services.loadtest.cli import main

if __name__ == "__main__":
    main()
