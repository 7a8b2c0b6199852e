"""ExtractionService through a real grpc.aio server on a free loopback port (no sandbox needed)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import jsonschema
import pytest

from services.extraction.server import build
from shared.config import Settings
from shared.errors import InvalidArgument, from_rpc_error
from shared.grpc_server import serving
from vantage.common.v1 import common_pb2
from vantage.extraction.v1 import extraction_pb2 as pb
from vantage.extraction.v1 import extraction_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

ANSWER = """Here are the leading GPU clouds:

1. **CoreWeave** – Largest independent GPU cloud ([coreweave.com](https://www.coreweave.com/?utm_source=openai)).
2. **Together AI** – Reliable, cost-effective inference. Details: https://docs.together.ai/docs/inference/.
3. **Lambda** – Simple on-demand H100s; capacity can be limited.

Keep the bill in line with your cash runway.
"""


@pytest.fixture
async def stub() -> AsyncIterator[pb_grpc.ExtractionServiceStub]:
    settings = Settings(grace_seconds=0.5, categories=["Frontier pre-training", "Fine-tuning or API wrapper"])
    async with serving("extraction", build, settings) as srv:
        async with grpc.aio.insecure_channel(srv.address) as channel:
            yield pb_grpc.ExtractionServiceStub(channel)


def _request(answer: str = ANSWER, **org: object) -> pb.ExtractRequest:
    return pb.ExtractRequest(
        answer_markdown=answer,
        org=pb.Org(
            **{"name": "Together AI", "domain": "together.ai", "name_variations": ["Together"], **org}
        ),
        known_competitors=["Lambda Labs"],
        provider_citations=[common_pb2.Citation(url="https://www.together.ai/pricing", title="Pricing")],
    )


async def test_extract(stub: pb_grpc.ExtractionServiceStub) -> None:
    r = await stub.Extract(_request(), timeout=10)
    e = r.org_eval
    assert (e.mentioned, e.rank, e.mention_count) == (True, 2, 1)
    assert e.first_offset == ANSWER.index("Together AI")
    assert e.sentiment == pb.OrgEval.POSITIVE  # "reliable, cost-effective"; "limited" is said of Lambda
    assert e.evidence.startswith("Together AI – Reliable")
    assert e.owned_citation_count == 2
    assert [(c.name, c.rank, c.mention_count) for c in r.competitors] == [
        ("CoreWeave", 1, 1),
        ("Lambda Labs", 3, 1),
    ]
    assert [(c.position, c.url, c.source, c.owned, c.competitor_name) for c in r.citations] == [
        (1, "https://www.together.ai/pricing", pb.ExtractedCitation.PROVIDER, True, ""),
        (2, "https://www.coreweave.com/", pb.ExtractedCitation.INLINE_LINK, False, "CoreWeave"),
        (3, "https://docs.together.ai/docs/inference", pb.ExtractedCitation.BARE_URL, True, ""),
    ]
    assert r.citations[2].domain == "together.ai"


async def test_partial_rpcs_agree_with_extract(stub: pb_grpc.ExtractionServiceStub) -> None:
    full = await stub.Extract(_request(), timeout=10)
    assert await stub.ExtractOrgEval(_request(), timeout=10) == full.org_eval
    assert list((await stub.ExtractCompetitors(_request(), timeout=10)).competitors) == list(full.competitors)
    assert list((await stub.ExtractCitations(_request(), timeout=10)).citations) == list(full.citations)


async def test_empty_answer_is_not_an_error(stub: pb_grpc.ExtractionServiceStub) -> None:
    r = await stub.Extract(_request(answer=""), timeout=10)
    assert not r.org_eval.mentioned
    assert (r.org_eval.rank, r.org_eval.first_offset, r.org_eval.sentiment) == (0, -1, pb.OrgEval.NEUTRAL)
    assert list(r.competitors) == []
    assert [c.url for c in r.citations] == [
        "https://www.together.ai/pricing"
    ]  # the provider's citation remains


async def test_missing_org_name_is_invalid_argument(stub: pb_grpc.ExtractionServiceStub) -> None:
    for rpc in (stub.Extract, stub.ExtractOrgEval, stub.ExtractCompetitors, stub.ExtractCitations):
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await rpc(_request(name="  "), timeout=10)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        err = from_rpc_error(ei.value)
        assert isinstance(err, InvalidArgument)
        assert [f for f, _ in err.violations] == ["org.name"]


async def test_several_request_problems_at_once(stub: pb_grpc.ExtractionServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await stub.Extract(_request(name="", domain="not a domain"), timeout=10)
    err = from_rpc_error(ei.value)
    assert [f for f, _ in err.violations] == ["org.name", "org.domain"]


async def test_schema_and_parse_classification(stub: pb_grpc.ExtractionServiceStub) -> None:
    s = await stub.GetClassificationSchema(pb.GetClassificationSchemaRequest(), timeout=10)
    assert list(s.categories) == ["Frontier pre-training", "Fine-tuning or API wrapper"]
    schema = json.loads(s.json_schema)
    assert schema["properties"]["category"]["enum"] == list(s.categories)
    assert "cite only URLs from the provided sources" in s.system_prompt
    doc = {
        "tier": "warm",
        "score": 64,
        "category": "fine-tuning or api wrapper",
        "rationale": "Fine-tunes open models on a rented 256-GPU cluster.",
        "evidence_urls": ["https://example.com/a/"],
    }
    jsonschema.validate({**doc, "tier": "WARM", "category": "Fine-tuning or API wrapper"}, schema)
    r = await stub.ParseClassification(
        pb.ParseClassificationRequest(
            classification_json=json.dumps(doc), search_result_urls=["https://example.com/a"], company="Acme"
        ),
        timeout=10,
    )
    assert (r.tier, r.score, r.category) == (common_pb2.WARM, 64, "Fine-tuning or API wrapper")
    assert list(r.evidence_urls) == ["https://example.com/a"]


async def test_parse_classification_violations_come_back_as_bad_request(
    stub: pb_grpc.ExtractionServiceStub,
) -> None:
    bad = {
        "tier": "LUKEWARM",
        "score": 55.5,
        "category": "Crypto",
        "rationale": "x",
        "evidence_urls": ["https://x.io"],
    }
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await stub.ParseClassification(
            pb.ParseClassificationRequest(
                classification_json=json.dumps(bad), search_result_urls=["https://a.io"]
            ),
            timeout=10,
        )
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    err = from_rpc_error(ei.value)
    assert isinstance(err, InvalidArgument)
    assert sorted(f for f, _ in err.violations) == ["category", "evidence_urls[0]", "score", "tier"]
    assert "score" in err.message and "55.5" in err.message


@pytest.mark.parametrize(
    ("request_", "field", "limit"),
    [
        (pb.ExtractRequest(answer_markdown="x", org=pb.Org(name="A"), known_competitors=["B"] * 501),
         "known_competitors", "500"),
        (pb.ExtractRequest(answer_markdown="x", org=pb.Org(name="A"), known_competitors=["B" * 201]),
         "known_competitors[0]", "200"),
        (pb.ExtractRequest(answer_markdown="x", org=pb.Org(name="A", name_variations=["v"] * 101)),
         "org.name_variations", "100"),
        (pb.ExtractRequest(answer_markdown="x", org=pb.Org(name="A", known_products=["p"] * 201)),
         "org.known_products", "200"),
        (pb.ExtractRequest(answer_markdown="x", org=pb.Org(name="A", domain="a" * 254 + ".com")),
         "org.domain", "253"),
        (pb.ExtractRequest(answer_markdown="x", org=pb.Org(name="A" * 201)), "org.name", "200"),
        (pb.ExtractRequest(answer_markdown="x", org=pb.Org(name="A"),
                           provider_citations=[common_pb2.Citation(url="https://a.io/" + "x" * 2100)]),
         "provider_citations[0].url", "2048"),
        (pb.ExtractRequest(answer_markdown="x", org=pb.Org(name="A"),
                           provider_citations=[common_pb2.Citation(url="https://a.io")] * 501),
         "provider_citations", "500"),
        (pb.ExtractRequest(answer_markdown="x" * 200_001, org=pb.Org(name="A")), "answer_markdown", "200000"),
    ],
    ids=["competitors", "competitor-length", "variations", "products", "domain", "name", "citation-url",
         "citations", "answer"],
)
async def test_every_extract_field_is_bounded(
    stub: pb_grpc.ExtractionServiceStub, request_: pb.ExtractRequest, field: str, limit: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await stub.Extract(request_, timeout=10)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    err = from_rpc_error(ei.value)
    assert isinstance(err, InvalidArgument)
    assert field in [f for f, _ in err.violations]
    assert limit in err.message


async def test_classification_size_and_depth_are_bounded(stub: pb_grpc.ExtractionServiceStub) -> None:
    for text, field in (("[" * 40 + "]" * 40, "classification_json"), ("x" * 100_001, "classification_json")):
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await stub.ParseClassification(pb.ParseClassificationRequest(classification_json=text), timeout=10)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [f for f, _ in from_rpc_error(ei.value).violations] == [field]  # type: ignore[attr-defined]
    req = pb.ParseClassificationRequest(classification_json="{}", search_result_urls=["https://a.io"] * 101)
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await stub.ParseClassification(req, timeout=10)
    assert "100" in ei.value.details()


async def test_health_answers_while_large_requests_are_read() -> None:
    """Large extraction requests run in worker threads: the health service answers on the event loop while they
    are in progress (the latencies are printed; speed itself is `make bench`'s business)."""
    import asyncio
    import time

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    settings = Settings(grace_seconds=0.5)
    big = ANSWER * 200  # ≈ 80 kB, well over the inline limit
    async with serving("extraction", build, settings) as srv:
        async with grpc.aio.insecure_channel(srv.address) as channel:
            stub = pb_grpc.ExtractionServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            calls = [asyncio.ensure_future(stub.Extract(_request(big), timeout=120)) for _ in range(4)]
            latencies = []
            answered_during = 0
            while not all(c.done() for c in calls):
                t0 = time.perf_counter()
                r = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
                latencies.append(time.perf_counter() - t0)
                assert r.status == health_pb2.HealthCheckResponse.SERVING
                answered_during += not all(c.done() for c in calls)
            results = await asyncio.gather(*calls)
    assert all(r.org_eval.mention_count == 200 for r in results)
    assert answered_during >= 2, "health checks were not answered while the large requests ran"
    print(f"health checks under load: {len(latencies)}, max {max(latencies) * 1000:.1f} ms")
