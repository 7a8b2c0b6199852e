"""gRPC servicer of ``vantage.extraction.v1.ExtractionService`` and its ``build(settings)``.

Thin: translate protobuf ↔ the pure cores (:mod:`.classification`, :mod:`.core`, :mod:`.identity`), raise
:mod:`shared.errors` for bad input (the interceptor turns them into INVALID_ARGUMENT with ``BadRequest``
field violations; every field's bound is in :mod:`.limits`). Extraction is CPU-bound pure Python: a large
request (its :func:`work` over :data:`INLINE_MAX_WORK`: a long answer, many names or citations, a large
classification or merge) runs in a recycled worker process (:mod:`.offload`), so the event loop stays free for
health checks and other calls while it is read (the GIL is not shared), and the heap a large request fragments is
the worker's, given back to the OS when the worker is replaced. A typical request (a few KB, about a millisecond
of work) runs inline, because the process hop (pickling both ways) costs a good part of that.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc

from services.extraction import classification, core, identity, limits, memo
from services.extraction.citations import Citation
from services.extraction.offload import Offload
from services.extraction.urls import domain_stem
from shared.config import ExtractionSettings
from shared.errors import InvalidArgument
from shared.grpc_server import Mount
from vantage.common.v1 import common_pb2
from vantage.extraction.v1 import extraction_pb2 as pb
from vantage.extraction.v1 import extraction_pb2_grpc as pb_grpc

SERVICE_NAME = "vantage.extraction.v1.ExtractionService"
T = TypeVar("T")
#: Largest :func:`work` done on the event loop itself; larger requests go to a worker process.
INLINE_MAX_WORK = 5_000


def work(request: pb.ExtractRequest) -> int:
    """A request's size in "answer characters": the answer, plus 50 per name or citation to look for."""
    names = (
        len(request.known_competitors)
        + len(request.org.name_variations)
        + len(request.org.known_products)
        + len(request.provider_citations)
    )
    return len(request.answer_markdown) + 50 * names


#: Enum names → numbers, read once from the descriptors (``EnumTypeWrapper.Value`` is a Python call per value).
_SENTIMENT = {v.name: v.number for v in pb.OrgEval.Sentiment.DESCRIPTOR.values}
_SOURCE = {v.name: v.number for v in pb.ExtractedCitation.Source.DESCRIPTOR.values}


def _fill_org_eval(o: pb.OrgEval, e: core.OrgEval) -> pb.OrgEval:
    """Write ``e`` into the (empty) message ``o`` in place and return it: the response is built once, each nested
    message made by its parent's ``add`` rather than built apart and copied in (``ExtractResponse(org_eval=...)``
    copies the sub-message)."""
    o.mentioned = e.mentioned
    o.mention_count = e.mention_count
    o.rank = e.rank
    o.first_offset = e.first_offset
    o.sentiment = _SENTIMENT[e.sentiment]
    o.evidence = e.evidence
    o.owned_citation_count = e.owned_citation_count
    o.language = e.language
    mentions = o.mentions
    for m in e.mentions:
        evidence = mentions.add(offset=m.offset, sentiment=_SENTIMENT[m.sentiment]).evidence
        for v in m.evidence:
            evidence.add(start=v.start, end=v.end, text=v.text, polarity=v.polarity)
    return o


def _org_eval_pb(e: core.OrgEval) -> pb.OrgEval:
    return _fill_org_eval(pb.OrgEval(), e)


def _add_competitors(out: Any, competitors: list[core.Competitor]) -> None:
    for c in competitors:
        out.add(name=c.name, rank=c.rank, mention_count=c.mention_count)


def _add_citations(out: Any, citations: list[Citation]) -> None:
    """Append ``citations`` to the repeated field ``out`` (``ExtractedCitation`` messages)."""
    for c in citations:
        out.add(
            url=c.url,
            domain=c.domain,
            title=c.title,
            position=c.position,
            source=_SOURCE[c.source],
            owned=c.owned,
            competitor=c.competitor,
            competitor_name=c.competitor_name,
        )


class ExtractionServicer(pb_grpc.ExtractionServiceServicer):
    """Classification checks and answer extraction; stateless."""

    def __init__(self, settings: ExtractionSettings) -> None:
        self._cpu = Offload()
        self._categories = list(settings.categories)
        self._cfg = core.ExtractionConfig.from_settings(settings)
        memo.configure(settings.extraction_cache_max_bytes)
        self._schema_json = json.dumps(classification.classification_schema(self._categories))
        self._prompt = classification.system_prompt(self._categories)

    async def _off_loop(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in a worker process (``fn`` module-level, arguments picklable)."""
        return await self._cpu.run(fn, *args, **kwargs)

    def start_workers(self) -> None:
        """Start the worker process for large requests now (blocking, ~2 s; see :meth:`Offload.start`)."""
        self._cpu.start()

    def close(self) -> None:
        self._cpu.close()

    async def GetClassificationSchema(
        self, request: pb.GetClassificationSchemaRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetClassificationSchemaResponse:
        return pb.GetClassificationSchemaResponse(
            json_schema=self._schema_json, categories=self._categories, system_prompt=self._prompt
        )

    async def ParseClassification(
        self, request: pb.ParseClassificationRequest, context: grpc.aio.ServicerContext
    ) -> pb.ParseClassificationResponse:
        urls = list(request.search_result_urls)
        problems = limits.check_classification(request.classification_json, urls, request.company)
        if problems:
            raise InvalidArgument("; ".join(d for _, d in problems), violations=problems)
        args = (request.classification_json, urls, self._categories)
        if len(request.classification_json) <= INLINE_MAX_WORK:
            c = classification.parse_classification(*args, company=request.company)
        else:
            c = await self._off_loop(classification.parse_classification, *args, company=request.company)
        return pb.ParseClassificationResponse(
            tier=common_pb2.Tier.Value(c.tier),
            score=c.score,
            category=c.category,
            rationale=c.rationale,
            evidence_urls=c.evidence_urls,
        )

    async def _analyze(self, request: pb.ExtractRequest) -> core.Analysis:
        org = core.Org(
            name=request.org.name,
            domain=request.org.domain,
            variations=tuple(request.org.name_variations),
            products=tuple(request.org.known_products),
        )
        provider = [(c.url, c.title) for c in request.provider_citations]
        answer = request.answer_markdown
        known = list(request.known_competitors)
        if work(request) <= INLINE_MAX_WORK:
            return core.analyze(answer, org, known, provider, self._cfg)
        core.check(answer, org, self._cfg, known, provider)  # fail fast, before taking a worker
        return await self._off_loop(core.analyze, answer, org, known, provider, self._cfg)

    async def Extract(
        self, request: pb.ExtractRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExtractResponse:
        a = await self._analyze(request)
        response = pb.ExtractResponse()
        _fill_org_eval(response.org_eval, a.org_eval)
        _add_competitors(response.competitors, a.competitors)
        _add_citations(response.citations, a.citations)
        return response

    async def ExtractOrgEval(
        self, request: pb.ExtractRequest, context: grpc.aio.ServicerContext
    ) -> pb.OrgEval:
        return _org_eval_pb((await self._analyze(request)).org_eval)

    async def ExtractCompetitors(
        self, request: pb.ExtractRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExtractCompetitorsResponse:
        a = await self._analyze(request)
        response = pb.ExtractCompetitorsResponse()
        _add_competitors(response.competitors, a.competitors)
        return response

    async def ExtractCitations(
        self, request: pb.ExtractRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExtractCitationsResponse:
        a = await self._analyze(request)
        response = pb.ExtractCitationsResponse()
        _add_citations(response.citations, a.citations)
        return response


    async def NormalizeOrg(
        self, request: pb.NormalizeOrgRequest, context: grpc.aio.ServicerContext
    ) -> pb.NormalizeOrgResponse:
        o = request.org
        problems: limits.Problems = []
        limits.check_org(problems, "org.", o.name, o.domain, list(o.name_variations), list(o.known_products))
        name = " ".join(o.name.split())
        if not problems and not name:
            problems.append(("org.name", "org.name is required (the organisation being evaluated)"))
        domain = identity.normalize_domain(o.domain) if not problems else ""
        if not problems and o.domain.strip() and "." not in domain:
            problems.append(("org.domain", f"org.domain {o.domain[:100]!r} is not a domain name such as together.ai"))
        if problems:
            raise InvalidArgument("; ".join(d for _, d in problems), violations=problems)
        return pb.NormalizeOrgResponse(
            name=name,
            domain=domain,
            domain_stem=domain_stem(domain) if domain else "",
            name_variations=identity.name_variations(name, domain, o.name_variations),
            keys=sorted(identity.merge_keys(name)),
        )

    async def MergeCompetitors(
        self, request: pb.MergeCompetitorsRequest, context: grpc.aio.ServicerContext
    ) -> pb.MergeCompetitorsResponse:
        pairs = [(n.name, n.weight) for n in request.names]
        problems = limits.check_merge(pairs)
        if problems:
            raise InvalidArgument("; ".join(d for _, d in problems), violations=problems)
        weights: dict[str, int] = {}
        for name, weight in pairs:
            name = " ".join(name.split())
            weights[name] = weights.get(name, 0) + weight
        if len(weights) * 50 <= INLINE_MAX_WORK:
            merged = identity.merge_names(weights)
        else:
            merged = await self._off_loop(identity.merge_names, weights)
        return pb.MergeCompetitorsResponse(names=[pb.MergedName(name=n, canonical=c) for n, c in merged.items()])


@contextlib.asynccontextmanager
async def build(settings: ExtractionSettings) -> AsyncIterator[list[Mount]]:
    """The extraction service's mounts. No clients to open: the word list and suffix list are loaded up front."""
    await asyncio.to_thread(core.warm_up)
    # The word lists, language model and place names live as long as the process: keep them out of every full
    # collection (gc.freeze), so a gen-2 pass under load does not stall the event loop on objects that never die.
    gc.collect()
    gc.freeze()
    servicer = ExtractionServicer(settings)
    with contextlib.ExitStack() as stack:
        stack.callback(servicer.close)  # also when starting the workers fails part-way (a pool was made)
        await asyncio.to_thread(servicer.start_workers)
        yield [Mount(servicer, pb_grpc.add_ExtractionServiceServicer_to_server, SERVICE_NAME)]
