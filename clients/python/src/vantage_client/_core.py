"""What the sync and the async client share: channel configuration, default deadlines, request building, the
client-side export and report. No I/O here."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from vantage_client._pb.vantage.extraction.v1 import extraction_pb2 as xpb
from vantage_client._pb.vantage.inference.v1 import inference_pb2 as ipb
from vantage_client._pb.vantage.orchestrator.v1 import orchestrator_pb2 as opb
from vantage_client._pb.vantage.search.v1 import search_pb2 as spb
from vantage_client.types import GroupVisibility, Report, Run, RunItem, RunKind

#: Metadata key and scheme of the bearer token the services require (``shared/security.py``:
#: ``authorization: Bearer <token>``, RFC 6750 §2.1).
AUTHORIZATION_KEY = "authorization"

#: Inputs up to this many UTF-8 bytes travel inline (``input_csv`` / ``questions_text``); larger ones through the
#: client-streaming ``UploadInput`` in chunks of :data:`UPLOAD_CHUNK_BYTES` (as ``vantage … --remote`` does).
INLINE_INPUT_BYTES = 1024 * 1024
#: Most samples per question × model × location StartRun accepts (StartRunRequest.samples 1-20).
MAX_SAMPLES = 20
UPLOAD_CHUNK_BYTES = 1024 * 1024

ORCH = "vantage.orchestrator.v1.OrchestratorService"
SEARCH = "vantage.search.v1.SearchService"
INFERENCE = "vantage.inference.v1.InferenceService"
EXTRACTION = "vantage.extraction.v1.ExtractionService"

#: RPCs safe to repeat after UNAVAILABLE (reads, and pure functions of their request). Not here: StartRun,
#: UploadInput, ResumeRun, RetryFailed, CancelRun (a repeated cancel of a cancelled run is FAILED_PRECONDITION),
#: Complete / CompleteStream / CompleteBatch (paid calls), CancelBatch.
IDEMPOTENT_RPCS: dict[str, tuple[str, ...]] = {
    ORCH: ("GetRun", "WatchRun", "ListRuns", "ListRunItems", "DiffRuns"),
    SEARCH: ("Search", "SearchCompany"),
    INFERENCE: ("Route", "ListModels"),
    EXTRACTION: ("ParseClassification", "GetClassificationSchema", "Extract", "ExtractOrgEval", "ExtractCompetitors",
                 "ExtractCitations", "NormalizeOrg", "MergeCompetitors"),
}


def service_config(max_attempts: int = 4) -> str:
    """The channel's service config (gRFC A6 retries, https://github.com/grpc/proposal/blob/master/A6-client-retries.md;
    ``round_robin`` over every address the name resolves to, with gRFC A17 client-side health checking —
    ``healthCheckConfig`` on the server-wide name "", as the services' own channels do (``shared/grpc_client.py``):
    a NOT_SERVING replica gets no calls): the idempotent RPCs are retried on UNAVAILABLE up to
    ``max_attempts`` (2..5, gRPC caps it at 5) with exponential back-off 0.1 s → 2 s, under retry throttling
    (10 tokens, ratio 0.1). A server-sent ``grpc-retry-pushback-ms`` is honoured by gRPC itself."""
    if not 2 <= max_attempts <= 5:
        raise ValueError(f"max_attempts must be 2..5 (gRFC A6 caps it at 5), got {max_attempts}")
    return json.dumps({
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": ""},
        "methodConfig": [{
            "name": [{"service": svc, "method": m} for svc, methods in IDEMPOTENT_RPCS.items() for m in methods],
            "retryPolicy": {"maxAttempts": max_attempts, "initialBackoff": "0.1s", "maxBackoff": "2s",
                            "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]},
        }],
        "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
    })


@dataclass(frozen=True)
class Deadlines:
    """Default deadline of each kind of call, in seconds (a method's ``timeout=`` overrides it). ``wait`` has no
    default: it follows a run for as long as it takes unless given ``timeout=``; each watch stream it opens is
    bounded by what remains of that."""

    read: float = 10.0  #: GetRun, ListRuns, ListRunItems, Route, CancelRun
    start: float = 60.0  #: StartRun, ResumeRun, RetryFailed (the whole input is stored before the answer)
    upload: float = 300.0  #: UploadInput
    search: float = 60.0  #: SearchCompany (Tavily search + page extraction)
    complete: float = 180.0  #: Complete (Bright Data snapshots take minutes)
    extract: float = 30.0  #: Extract


@dataclass(frozen=True)
class Connection:
    """How to reach one service: the target and the security options.

    ``target``: a gRPC target URI (``dns:///host:port``, ``host:port``, ``ipv4:127.0.0.1:50051``, ``unix:/path``;
    grpc/grpc ``doc/naming.md``). TLS when ``tls`` is true or any of ``ca_cert`` / ``client_cert`` is given:
    ``ca_cert`` the PEM roots (bytes, or a file path; None = system roots), ``client_cert`` + ``client_key`` the
    client's certificate for mTLS, ``server_name`` the name checked in the server certificate
    (``grpc.ssl_target_name_override``, e.g. when dialling an IP). ``token``: the bearer token, sent as
    ``authorization: Bearer <token>`` — as call credentials over TLS, as call metadata in plaintext (loopback only:
    gRPC refuses call credentials without TLS).
    """

    target: str
    tls: bool = False
    ca_cert: bytes | str | Path | None = None
    client_cert: bytes | str | Path | None = None
    client_key: bytes | str | Path | None = None
    server_name: str | None = None
    token: str | None = field(default=None, repr=False)
    max_message_bytes: int = 64 * 1024 * 1024
    max_attempts: int = 4

    def __post_init__(self) -> None:
        if not isinstance(self.target, str) or not self.target.strip():
            raise ValueError("target: give a gRPC target such as 'dns:///orchestrator:50050' or 'localhost:50050'")
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together (mTLS)")
        if self.token is not None and (not self.token or any(c in self.token for c in "\r\n")):
            raise ValueError("token: a non-empty bearer token without line breaks")

    @property
    def secure(self) -> bool:
        return bool(self.tls or self.ca_cert is not None or self.client_cert is not None)

    def options(self) -> list[tuple[str, Any]]:
        opts: list[tuple[str, Any]] = [
            ("grpc.service_config", service_config(self.max_attempts)),
            ("grpc.enable_retries", 1),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 20_000),
        ]
        if self.server_name and self.secure:
            opts.append(("grpc.ssl_target_name_override", self.server_name))
        return opts

    def credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials (with the token as call credentials), or None for plaintext."""
        if not self.secure:
            return None
        creds = grpc.ssl_channel_credentials(
            root_certificates=_pem(self.ca_cert, "ca_cert"), private_key=_pem(self.client_key, "client_key"),
            certificate_chain=_pem(self.client_cert, "client_cert"),
        )
        if self.token:
            creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(self.token))
        return creds

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Per-call metadata: the token on a plaintext channel (TLS channels carry it as call credentials)."""
        if self.token and not self.secure:
            return ((AUTHORIZATION_KEY, f"Bearer {self.token}"),)
        return ()


def _pem(value: bytes | str | Path | None, name: str) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    try:
        return Path(value).read_bytes()
    except OSError as e:
        raise ValueError(f"{name}: cannot read {value}: {e.strerror or e}") from None


# --- requests ----------------------------------------------------------------------------------------------------


def research_request(companies: Iterable[tuple[str, str] | Sequence[str]] | None, csv_text: str | None, *,
                     name: str, model: str, search_depth: str, min_score: float | None, context_char_budget: int,
                     no_cache: bool, detach: bool) -> tuple[opb.StartRunRequest, bytes | None]:
    """The StartRun request of a research run, and the bytes to upload first when the CSV is too big to go inline."""
    if (companies is None) == (csv_text is None):
        raise ValueError("research: give exactly one of companies=[(name, domain), …] or csv_text=")
    opts = opb.ResearchOptions(model=model, search_depth=search_depth, context_char_budget=context_char_budget)
    if min_score is not None:
        opts.min_score = min_score
    req = opb.StartRunRequest(kind=opb.RESEARCH, research_options=opts, name=name, no_cache=no_cache, detach=detach)
    if companies is not None:
        rows = []
        for i, c in enumerate(companies):
            if isinstance(c, str) or len(c) != 2:
                raise ValueError(f"companies[{i}]: a (name, domain) pair, got {c!r:.80}")
            rows.append(opb.Company(company=str(c[0]), domain=str(c[1] or "")))
        if not rows:
            raise ValueError("companies: at least one (name, domain)")
        req.research.CopyFrom(opb.ResearchInput(companies=rows))
        return req, None
    assert csv_text is not None
    data = csv_text.encode("utf-8")
    if len(data) <= INLINE_INPUT_BYTES:
        req.input_csv = csv_text
        return req, None
    return req, data


def evaluate_request(org: str, questions: Sequence[str] | str, models: Sequence[str], locations: Sequence[str], *,
                     samples: int, org_domain: str, known_competitors: Sequence[str], name_variations: Sequence[str],
                     name: str, no_cache: bool, detach: bool, reuse_answers: str = "",
                     ) -> tuple[opb.StartRunRequest, bytes | None]:
    """The StartRun request of an org evaluation, and the questions file to upload first when it is large.
    ``samples``: 0 (the server's default, 3) or 1-20, sent as ``StartRunRequest.samples``; ``reuse_answers``: an
    earlier evaluation's run id (``StartRunRequest.reuse_answers``)."""
    for label, seq in (("models", models), ("locations", locations), ("known_competitors", known_competitors),
                       ("name_variations", name_variations)):
        if isinstance(seq, str):
            raise TypeError(f"{label}: a list of strings, not one string")
    if not isinstance(samples, int) or isinstance(samples, bool) or not 0 <= samples <= MAX_SAMPLES:
        raise ValueError(f"samples: 0 (the server's default) or 1-{MAX_SAMPLES}, got {samples!r}")
    if not isinstance(reuse_answers, str):
        raise TypeError("reuse_answers: a run id (str)")
    matrix = opb.OrgEvalInput(org_name=org, org_domain=org_domain, models=list(models), locations=list(locations),
                              known_competitors=list(known_competitors), name_variations=list(name_variations))
    req = opb.StartRunRequest(kind=opb.ORG_EVAL, name=name, no_cache=no_cache, detach=detach, samples=samples,
                              reuse_answers=reuse_answers)
    upload: bytes | None = None
    if isinstance(questions, str):
        data = questions.encode("utf-8")
        req.org_eval_options.CopyFrom(matrix)
        if len(data) <= INLINE_INPUT_BYTES:
            req.questions_text = questions
        else:
            upload = data
    else:
        matrix.questions.extend(questions)
        req.org_eval.CopyFrom(matrix)
    return req, upload


def upload_chunks(data: bytes, filename: str) -> list[opb.UploadInputRequest]:
    chunks = [opb.UploadInputRequest(data=data[i:i + UPLOAD_CHUNK_BYTES])
              for i in range(0, len(data), UPLOAD_CHUNK_BYTES)]
    chunks[0].filename = filename
    return chunks


def search_company_request(company: str, domain: str, *, search_depth: str, min_score: float | None,
                           max_results: int | None, context_char_budget: int, no_cache: bool,
                           include_raw_content: bool | None) -> spb.SearchCompanyRequest:
    req = spb.SearchCompanyRequest(company=company, domain=domain, search_depth=search_depth,
                                   context_char_budget=context_char_budget, no_cache=no_cache)
    if min_score is not None:
        req.min_score = min_score
    if max_results is not None:
        req.max_results = max_results
    if include_raw_content is not None:
        req.include_raw_content = include_raw_content
    return req


def complete_request(model: str, prompt: str | None, messages: Sequence[tuple[str, str]] | None, *, json_schema: Any,
                     location: str, web_search: bool, max_output_tokens: int, schema_name: str, no_cache: bool,
                     idempotency_key: str) -> ipb.CompleteRequest:
    if (prompt is None) == (messages is None):
        raise ValueError("complete: give exactly one of prompt= or messages=[(role, content), …]")
    msgs = [ipb.Message(role="user", content=prompt)] if prompt is not None else [
        ipb.Message(role=r, content=c) for r, c in messages or ()]
    schema = json_schema if isinstance(json_schema, str) or json_schema is None else json.dumps(json_schema)
    return ipb.CompleteRequest(model=model, messages=msgs, json_schema=schema or "", location=location,
                               web_search=web_search, max_output_tokens=max_output_tokens, schema_name=schema_name,
                               no_cache=no_cache, idempotency_key=idempotency_key)


def extract_request(answer_markdown: str, org: str, *, org_domain: str, name_variations: Sequence[str],
                    known_products: Sequence[str], known_competitors: Sequence[str],
                    citations: Sequence[str | tuple[str, str]]) -> xpb.ExtractRequest:
    from vantage_client._pb.vantage.common.v1 import common_pb2

    cites = [common_pb2.Citation(url=c) if isinstance(c, str) else common_pb2.Citation(url=c[0], title=c[1])
             for c in citations]
    return xpb.ExtractRequest(
        answer_markdown=answer_markdown,
        org=xpb.Org(name=org, domain=org_domain, name_variations=list(name_variations),
                    known_products=list(known_products)),
        known_competitors=list(known_competitors), provider_citations=cites,
    )


# --- export and report (client side, from ListRunItems) ----------------------------------------------------------

EXPORT_FORMATS = ("json", "jsonl", "csv")
RESEARCH_FIELDS = ("key", "domain", "status", "tier", "score", "category", "rationale", "evidence_urls", "tokens",
                   "cost_usd", "attempts", "error")
EVAL_FIELDS = ("question", "model", "location", "status", "provider", "snapshot_id", "mentioned", "rank",
               "mention_count", "sentiment", "competitors", "citations", "owned_citations", "error_code", "cost_usd",
               "attempts", "error")
#: A CSV cell starting with one of these is read as a formula by spreadsheets; it gets a leading apostrophe
#: (OWASP "CSV Injection", https://owasp.org/www-community/attacks/CSV_Injection), as ``vantage export`` does.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def item_record(item: RunItem, kind: RunKind) -> dict[str, Any]:
    """A flat record of ``item`` (lists joined with " | " only in CSV)."""
    base = {"status": item.status, "attempts": item.attempts, "error": item.error}
    if kind == RunKind.ORG_EVAL:
        q = asdict(item.question_run) if item.question_run else {}
        q["competitors"] = list(q.get("competitors", ()))
        return {f: (base | q).get(f, "") for f in EVAL_FIELDS}
    r = asdict(item.research) if item.research else {}
    r["evidence_urls"] = list(r.get("evidence_urls", ()))
    return {f: ({"key": item.key, "domain": item.domain} | base | r).get(f, "") for f in RESEARCH_FIELDS}


def _csv_cell(v: Any) -> str:
    s = " | ".join(map(str, v)) if isinstance(v, list) else ("" if v is None else str(v))
    return "'" + s if s.startswith(_FORMULA_START) else s


def render_export(run: Run, items: Iterable[RunItem], fmt: str) -> str:
    """``json``: ``{"run": {…}, "items": [...]}``; ``jsonl``: one item record a line; ``csv``: a header and one row an
    item (formula-like cells escaped)."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format: one of {', '.join(EXPORT_FORMATS)}, got {fmt!r:.40}")
    records = [item_record(i, run.kind) for i in items]
    if fmt == "json":
        return json.dumps({"run": run_record(run), "items": records}, ensure_ascii=False, indent=2) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    fields = EVAL_FIELDS if run.kind == RunKind.ORG_EVAL else RESEARCH_FIELDS
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(fields)
    for r in records:
        w.writerow([_csv_cell(r[f]) for f in fields])
    return buf.getvalue()


def run_record(run: Run) -> dict[str, Any]:
    d = asdict(run)
    for k in ("created_at", "started_at", "finished_at"):
        d[k] = d[k].isoformat() if d[k] else None
    d["kind"], d["status"] = str(run.kind), str(run.status)
    return d


def build_report(run: Run, items: Iterable[RunItem], top: int = 10) -> Report:
    """The :class:`~vantage_client.types.Report` of ``run`` from its items."""
    n = failed = 0
    tiers: Counter[str] = Counter()
    sentiments: Counter[str] = Counter()
    competitors: Counter[str] = Counter()
    groups: dict[tuple[str, str], list[int]] = {}  # (model, location) -> [evaluated, named, rank sum]
    evaluated = named = rank_sum = cites = owned = 0
    for it in items:
        n += 1
        failed += it.status == "FAILED"
        if it.research is not None and it.status == "DONE":
            tiers[it.research.tier] += 1
        q = it.question_run
        if q is None or it.status != "DONE":
            continue
        g = groups.setdefault((q.model, q.location), [0, 0, 0])
        evaluated += 1
        g[0] += 1
        cites += q.citations
        owned += q.owned_citations
        competitors.update(set(q.competitors))
        if q.mentioned:
            named += 1
            g[1] += 1
            if q.rank > 0:
                rank_sum += q.rank
                g[2] += q.rank
            if q.sentiment:
                sentiments[q.sentiment] += 1
    return Report(
        run=run, items=n, failed=failed, tiers=dict(tiers), evaluated=evaluated,
        visibility_rate=named / evaluated if evaluated else None,
        average_rank=rank_sum / named if named else None, sentiments=dict(sentiments),
        top_competitors=tuple(competitors.most_common(top)), citations=cites,
        owned_citation_share=owned / cites if cites else None,
        groups=tuple(GroupVisibility(m, loc, g[0], g[1], g[1] / g[0] if g[0] else None, g[2] / g[1] if g[1] else None)
                     for (m, loc), g in sorted(groups.items())),
    )
