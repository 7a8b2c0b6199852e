"""``python tests/ops/ops_echo_service.py --ready-file F``: the test echo servicer (``ops_testkit.Echo``) run as a
real process through :func:`shared.service_main.run` — settings from the environment, structlog JSON logs on
stderr, SIGTERM handling, the /metrics endpoint when ``VANTAGE_METRICS_PORT`` is set.

Extra behaviour for the secret-hygiene tests: at start-up it logs the configured provider keys and token the
careless ways code might (as values under innocent keys, inside free text), to prove the redaction processor masks
them in the rendered output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import structlog
from ops_testkit import echo_builder

from shared.config import get_settings
from shared.service_main import run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--leak-secrets", action="store_true", help="log the secrets carelessly (canary test)")
    args = parser.parse_args()
    build = echo_builder()
    if args.leak_secrets:
        inner = build

        def build(settings):  # type: ignore[no-redef]
            s = settings
            log = structlog.get_logger("careless")
            keys = [k.get_secret_value() for k in (s.tavily_api_key, s.openai_api_key, s.auth_token) if k]
            log.warning("careless_logging", note=f"about to call with {' and '.join(keys)}", values=keys)
            log.warning("careless_headers", headers={"Authorization": f"Bearer {keys[-1]}", "X-Api-Key": keys[0]})
            return inner(settings)

    # The service name picks the metrics port offset: search → VANTAGE_METRICS_PORT + 1.
    get_settings()
    run("search", build, host="127.0.0.1", port=args.port, ready_file=args.ready_file)


if __name__ == "__main__":
    main()
