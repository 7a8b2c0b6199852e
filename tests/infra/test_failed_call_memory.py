"""A refused call frees its request at once (issue 11 item 8): the error boundary (``shared.grpc_server``'s
ContextInterceptor) aborts outside its ``except`` block, so the ``AbortError`` that grpc.aio keeps in a reference
cycle with the call's state does not chain the servicer's exception, its frames and the request they hold.

Before, every INVALID_ARGUMENT request (with its protobuf arena) lived until a full gc pass, which in the
extraction service (gc.freeze'd word lists, rare full passes) kept ~150 MB of fuzzed requests: 2x its warm RSS.
The check: with gc disabled, a failed call leaves no request of the server's in the cyclic garbage.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

import grpc
import pytest

from shared.config import Settings
from shared.errors import InvalidArgument
from shared.grpc_server import Mount, serving
from vantage.search.v1 import search_pb2, search_pb2_grpc


class _Refuses(search_pb2_grpc.SearchServiceServicer):
    """Refuses every request the way a servicer's validation does: raising a domain error deep in a helper
    whose frame holds the request (as ``ExtractionServicer._analyze`` → ``core.check``)."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def _check(self, request: search_pb2.SearchRequest, query: str) -> None:
        raise InvalidArgument(f"query has {len(query)} characters", field="query")

    async def Search(self, request, context):
        self.seen.add(id(request))
        query = request.query  # a local copy of the big field, as the servicers make
        self._check(request, query)


def _builder(servicer: _Refuses):
    @contextlib.asynccontextmanager
    async def build(_settings):
        yield [Mount(servicer, search_pb2_grpc.add_SearchServiceServicer_to_server, "vantage.search.v1.SearchService")]

    return build


@contextlib.contextmanager
def _gc_disabled() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _cyclic_garbage() -> list[object]:
    """Objects only a gc pass would free (collected with DEBUG_SAVEALL, then released)."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    return found


@pytest.mark.parametrize("auth", [False, True], ids=["invalid-argument", "unauthenticated"])
async def test_a_refused_request_is_freed_without_a_gc_pass(auth: bool) -> None:
    servicer = _Refuses()
    token = "t-" + "x" * 20
    settings = Settings(grace_seconds=1.0, auth_token=token if auth else "")
    sent = [search_pb2.SearchRequest(query=f"{i}" + "q" * 200_000) for i in range(3)]  # kept: ids stay unique
    async with serving("search", _builder(servicer), settings) as srv:
        async with grpc.aio.insecure_channel(srv.address) as ch:
            stub = search_pb2_grpc.SearchServiceStub(ch)
            with _gc_disabled():
                for req in sent:
                    with pytest.raises(grpc.aio.AioRpcError) as e:
                        await stub.Search(req, timeout=10)
                    expected = grpc.StatusCode.UNAUTHENTICATED if auth else grpc.StatusCode.INVALID_ARGUMENT
                    assert e.value.code() is expected
                garbage = _cyclic_garbage()
    kept = [o for o in garbage if isinstance(o, search_pb2.SearchRequest) and id(o) in servicer.seen]
    big = [o for o in garbage if isinstance(o, str | bytes) and len(o) > 100_000]
    chained = [o for o in garbage if isinstance(o, InvalidArgument)]
    assert len(kept) == 0, "refused requests held by reference cycles"
    assert (len(big), len(chained)) == (0, 0)
