"""The model catalogue through the real inference service (loopback gRPC, sandbox providers): ListModels returns it;
a retired model is FAILED_PRECONDITION naming its successor; a deprecated one answers with a dated warning; an
unknown one answers with its cost flagged as estimated (single calls and batches)."""

from __future__ import annotations

import grpc
import pytest
from google.rpc.error_details_pb2 import ErrorInfo
from grpc_status import rpc_status

from shared.catalogue import load_catalogue
from shared.config import Settings
from shared.errors import from_rpc_error
from vantage.inference.v1 import inference_pb2 as pb
from vantage.inference.v1 import inference_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration


def _req(model: str) -> pb.CompleteRequest:
    return pb.CompleteRequest(model=model, messages=[pb.Message(role="user", content="Name three GPU clouds.")],
                              no_cache=True)


async def test_list_models_returns_the_catalogue_with_the_binding_fields(stub: pb_grpc.InferenceServiceStub) -> None:
    resp = await stub.ListModels(pb.ListModelsRequest(), timeout=10)
    got = {m.model: m for m in resp.models}
    assert list(got) == [m.id for m in load_catalogue().models]
    opus45 = got["claude-opus-4-5"]
    assert (opus45.input_usd_per_million_tokens, opus45.output_usd_per_million_tokens) == (5.0, 25.0)
    assert (opus45.status, opus45.shutdown_date, opus45.checked_on) == ("active", "", "2026-12-02")
    assert opus45.source_url.startswith("https://") and opus45.web_search_usd_per_call == pytest.approx(0.01)
    gpt5 = load_catalogue().lookup("gpt-5")  # deprecated, shuts down 2026-12-11: then ListModels says "retired"
    assert (got["gpt-5"].status, got["gpt-5"].shutdown_date, got["gpt-5"].successor) == (
        gpt5.effective_status(), "2026-12-11", "gpt-5.5")


async def test_retired_model_is_failed_precondition_naming_the_successor(stub: pb_grpc.InferenceServiceStub) -> None:
    for call in (stub.Complete(_req("claude-sonnet-4"), timeout=10),
                 stub.Route(pb.RouteRequest(model="claude-sonnet-4-0"), timeout=10)):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        err = from_rpc_error(info.value)
        assert err.reason == "MODEL_RETIRED" and "use claude-sonnet-5" in err.message
        (detail,) = [d for d in rpc_status.from_call(info.value).details if d.Is(ErrorInfo.DESCRIPTOR)]
        ei = ErrorInfo()
        detail.Unpack(ei)
        assert dict(ei.metadata) == {"model": "claude-sonnet-4", "successor": "claude-sonnet-5",
                                     "shutdown_date": "2026-06-15"}


async def test_deprecated_model_answers_with_its_shutdown_date(stub: pb_grpc.InferenceServiceStub) -> None:
    # The catalogue is dated: which OpenAI models are deprecated (not yet past their shutdown) depends on the day.
    deprecated = [m for m in load_catalogue().models if m.provider == "openai" and m.effective_status() == "deprecated"]
    if not deprecated:
        pytest.skip("no OpenAI model of the catalogue is deprecated (and not yet shut down) today")
    m = deprecated[0]
    r = await stub.Complete(_req(m.id), timeout=30)
    assert r.text and not r.cost_estimated
    assert r.model_warning == f"{m.id} is deprecated: it shuts down on {m.shutdown_date.isoformat()}; use {m.successor}"
    active = await stub.Complete(_req("gpt-5.5"), timeout=30)
    assert active.model_warning == "" and not active.cost_estimated


async def test_unknown_model_answers_with_an_estimated_cost(
    stub: pb_grpc.InferenceServiceStub, settings: Settings
) -> None:
    r = await stub.Complete(_req("gpt-house-tuned"), timeout=30)
    assert r.text and r.cost_estimated and r.model_warning == ""
    pin, pout = settings.default_token_prices
    assert r.cost_usd == pytest.approx((r.usage.input_tokens * pin + r.usage.output_tokens * pout) / 1e6)
    batch = await stub.CompleteBatch(pb.CompleteBatchRequest(items=[
        pb.BatchItem(id="known", request=_req("gpt-5.5")), pb.BatchItem(id="unknown", request=_req("gpt-house-tuned")),
    ]), timeout=60)
    flags = {it.id: it.response.cost_estimated for it in batch.results}
    assert flags == {"known": False, "unknown": True} and batch.cost_estimated
    only_known = await stub.CompleteBatch(pb.CompleteBatchRequest(items=[
        pb.BatchItem(id="known", request=_req("gpt-5.5"))]), timeout=60)
    assert not only_known.cost_estimated
