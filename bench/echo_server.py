"""``python -m bench.echo_server --ready-file F``: the trivial servicer of the gRPC-ceiling benchmark.

``vantage.search.v1.SearchService/Search`` answers ``SearchResponse(query=request.query)`` and does nothing else, but
it is served exactly like our services: :func:`shared.service_main.run` → :func:`shared.grpc_server.serving`
(ContextInterceptor, health, reflection, message limits, uvloop, SIGTERM handling). The gap between this server's
QPS and a real service's is therefore the cost of that service's own handler and messages, not of the bootstrap.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator

from shared.config import Settings
from shared.grpc_server import Mount
from shared.service_main import run
from vantage.search.v1 import search_pb2, search_pb2_grpc

SERVICE_NAME = "vantage.search.v1.SearchService"
#: What the bench calls on this server.
METHOD = f"{SERVICE_NAME}/Search"


class Echo(search_pb2_grpc.SearchServiceServicer):
    """``Search`` echoes the query back; with ``context_char_budget`` = n > 0 it also returns an ``llm_context`` of n
    characters (built once per size), so that a big answer costs only its transport, not its construction."""

    def __init__(self) -> None:
        self._padding: dict[int, str] = {}

    async def Search(self, request: search_pb2.SearchRequest, context: object) -> search_pb2.SearchResponse:
        n = request.context_char_budget
        if n <= 0:
            return search_pb2.SearchResponse(query=request.query)
        pad = self._padding.get(n)
        if pad is None:
            pad = self._padding[n] = ("lorem ipsum dolor sit amet " * (n // 27 + 1))[:n]
        return search_pb2.SearchResponse(query=request.query, llm_context=pad)


@contextlib.asynccontextmanager
async def build(_settings: Settings) -> AsyncIterator[list[Mount]]:
    yield [Mount(Echo(), search_pb2_grpc.add_SearchServiceServicer_to_server, SERVICE_NAME)]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.echo_server")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", required=True)
    args = parser.parse_args()
    # Named "search" so that the service's settings (port offset, metrics) are those of a real service.
    run("search", build, host="127.0.0.1", port=args.port, ready_file=args.ready_file)


if __name__ == "__main__":
    main()
