"""gRPC servicer of ``vantage.extraction.v1.ExtractionService`` and its ``build(settings)``.

Thin: translate protobuf ↔ the pure cores (:mod:`.classification`, :mod:`.core`), raise
:mod:`shared.errors` for bad input (the interceptor turns them into INVALID_ARGUMENT with ``BadRequest``
field violations). Extraction is CPU-bound pure Python: a long answer (over :data:`INLINE_MAX_CHARS`) runs in a
worker thread (``asyncio.to_thread``) so the event loop stays free for health checks and other calls while it is
read; a typical answer (a few KB, well under a millisecond of work) runs inline, because the thread hop alone
costs about as much CPU as the analysis itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import grpc

from services.extraction import classification, core
from services.extraction.citations import Citation
from shared.config import Settings
from shared.grpc_server import Mount
from vantage.common.v1 import common_pb2
from vantage.extraction.v1 import extraction_pb2 as pb
from vantage.extraction.v1 import extraction_pb2_grpc as pb_grpc

SERVICE_NAME = "vantage.extraction.v1.ExtractionService"
#: Longest answer (characters) analysed on the event loop itself; longer ones go to a worker thread.
INLINE_MAX_CHARS = 5_000


def _org_eval_pb(e: core.OrgEval) -> pb.OrgEval:
    return pb.OrgEval(
        mentioned=e.mentioned,
        mention_count=e.mention_count,
        rank=e.rank,
        first_offset=e.first_offset,
        sentiment=pb.OrgEval.Sentiment.Value(e.sentiment),
        evidence=e.evidence,
        owned_citation_count=e.owned_citation_count,
    )


def _citation_pb(c: Citation) -> pb.ExtractedCitation:
    return pb.ExtractedCitation(
        url=c.url,
        domain=c.domain,
        title=c.title,
        position=c.position,
        source=pb.ExtractedCitation.Source.Value(c.source),
        owned=c.owned,
        competitor=c.competitor,
        competitor_name=c.competitor_name,
    )


class ExtractionServicer(pb_grpc.ExtractionServiceServicer):
    """Classification checks and answer extraction; stateless."""

    def __init__(self, settings: Settings) -> None:
        self._categories = list(settings.categories)
        self._cfg = core.ExtractionConfig.from_settings(settings)
        self._schema_json = json.dumps(classification.classification_schema(self._categories))
        self._prompt = classification.system_prompt(self._categories)

    async def GetClassificationSchema(
        self, request: pb.GetClassificationSchemaRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetClassificationSchemaResponse:
        return pb.GetClassificationSchemaResponse(
            json_schema=self._schema_json, categories=self._categories, system_prompt=self._prompt
        )

    async def ParseClassification(
        self, request: pb.ParseClassificationRequest, context: grpc.aio.ServicerContext
    ) -> pb.ParseClassificationResponse:
        c = classification.parse_classification(
            request.classification_json,
            list(request.search_result_urls),
            self._categories,
            company=request.company,
        )
        return pb.ParseClassificationResponse(
            tier=common_pb2.Tier.Value(c.tier),
            score=c.score,
            category=c.category,
            rationale=c.rationale,
            evidence_urls=c.evidence_urls,
        )

    async def _analyze(self, request: pb.ExtractRequest) -> core.Analysis:
        org = core.Org(
            name=request.org.name, domain=request.org.domain, variations=tuple(request.org.name_variations)
        )
        provider = [(c.url, c.title) for c in request.provider_citations]
        answer = request.answer_markdown
        known = list(request.known_competitors)
        if len(answer) <= INLINE_MAX_CHARS:
            return core.analyze(answer, org, known, provider, self._cfg)
        core.check(answer, org, self._cfg)  # fail fast, before taking a thread
        return await asyncio.to_thread(core.analyze, answer, org, known, provider, self._cfg)

    async def Extract(
        self, request: pb.ExtractRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExtractResponse:
        a = await self._analyze(request)
        return pb.ExtractResponse(
            org_eval=_org_eval_pb(a.org_eval),
            competitors=[
                pb.Competitor(name=c.name, rank=c.rank, mention_count=c.mention_count) for c in a.competitors
            ],
            citations=[_citation_pb(c) for c in a.citations],
        )

    async def ExtractOrgEval(
        self, request: pb.ExtractRequest, context: grpc.aio.ServicerContext
    ) -> pb.OrgEval:
        return _org_eval_pb((await self._analyze(request)).org_eval)

    async def ExtractCompetitors(
        self, request: pb.ExtractRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExtractCompetitorsResponse:
        a = await self._analyze(request)
        return pb.ExtractCompetitorsResponse(
            competitors=[
                pb.Competitor(name=c.name, rank=c.rank, mention_count=c.mention_count) for c in a.competitors
            ]
        )

    async def ExtractCitations(
        self, request: pb.ExtractRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExtractCitationsResponse:
        a = await self._analyze(request)
        return pb.ExtractCitationsResponse(citations=[_citation_pb(c) for c in a.citations])


@contextlib.asynccontextmanager
async def build(settings: Settings) -> AsyncIterator[list[Mount]]:
    """The extraction service's mounts. No clients to open: the word list and suffix list are loaded up front."""
    await asyncio.to_thread(core.warm_up)
    yield [Mount(ExtractionServicer(settings), pb_grpc.add_ExtractionServiceServicer_to_server, SERVICE_NAME)]
