"""Score the real extraction service on the hand-labelled answer corpus in ``tests/extraction/corpus/``.

Run it from the repository root::

    .venv/bin/python -m tests.extraction.corpus_score [--split dev|holdout|all|peers] [--check] [--json]

Each case (one YAML file, format in ``corpus/README.md``) is sent to ``ExtractionService/Extract`` of an in-process
grpc.aio server built with the service's own builder (:func:`services.extraction.server.build`) on a free loopback
port, exactly as a client would call it. ``Org.known_products`` is sent only when the request's ``Org`` message has
a field of that name (read from the protobuf descriptor), so the scorer runs against the extractor before and after
that field exists.

``peers`` holds answers taken verbatim from peer projects' own test fixtures (each file names its source), labelled by
the corpus rules; it is scored apart and is not part of ``all`` (the issue's hand-written corpus).

Fields scored, per split (dev, holdout, all) and broken down by language, style and tag:

* ``mentioned`` — accuracy; ``rank`` — exact rate; ``mention_count`` — exact rate (reported, no threshold);
* ``competitors`` — precision / recall / F1, micro-averaged over cases (an extracted name is a true positive when it
  matches a not-yet-matched expected entry under :func:`name_key`; a second name for an already matched brand is a
  false positive, because it makes two brands out of one);
* ``citations`` — precision / recall / F1 over the sets of URLs per case, compared under :func:`url_key`;
* ``sentiment`` — accuracy (POSITIVE / NEUTRAL / NEGATIVE / MIXED).

``--check`` also prints label warnings: an expected competitor whose name is not found in the answer, and an
expected rank that disagrees with the order of first appearance that a plain text search finds (URLs masked). The
search is only a helper for the person labelling: it cannot see product folding or common words, so a warning is
something to re-read, not necessarily a wrong label.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import yaml

CORPUS_DIR = Path(__file__).parent / "corpus"
SPLITS = ("dev", "holdout")
SENTIMENTS = ("POSITIVE", "NEUTRAL", "NEGATIVE", "MIXED")

#: Legal-form suffixes dropped when names are compared (case-folded, trailing, optionally after a comma).
LEGAL_SUFFIXES = (
    "inc",
    "incorporated",
    "llc",
    "ltd",
    "limited",
    "plc",
    "corp",
    "corporation",
    "co",
    "company",
    "gmbh",
    "ag",
    "se",
    "sa",
    "sas",
    "sarl",
    "srl",
    "sl",
    "spa",
    "bv",
    "nv",
    "ab",
    "oy",
    "as",
    "pty",
)
_SUFFIX_RE = re.compile(r"(?:[\s,]+(?:" + "|".join(LEGAL_SUFFIXES) + r"))+$")
_TRACKING_PREFIXES = ("utm_",)
_TRACKING = frozenset(
    {"gclid", "fbclid", "msclkid", "ref", "ref_src", "srsltid", "igshid", "mc_cid", "mc_eid"}
)


def name_key(name: str) -> str:
    """Comparison key of a brand name: NFKC, case-folded, dots of legal forms and surrounding punctuation
    dropped, whitespace collapsed, trailing legal suffixes (:data:`LEGAL_SUFFIXES`) stripped.

    ``"Stripe, Inc."`` → ``"stripe"``; ``"SAP SE"`` → ``"sap"``; ``"Booking.com"`` stays ``"booking.com"``
    (an alias in the case file covers ``"Booking"``).
    """
    s = unicodedata.normalize("NFKC", name).casefold().strip()
    s = re.sub(r"\s+", " ", s)
    s = re.sub(r"\b([a-z])\.(?=[a-z]\.|\s|$)", r"\1", s)  # "s.a." → "sa", "s.l." → "sl"
    s = s.strip(" .,;:!?*_`'\"()[]")
    prev = None
    while prev != s:
        prev = s
        s = _SUFFIX_RE.sub("", s).strip(" .,")
    return s


def url_key(url: str) -> str:
    """Comparison key of a cited URL: scheme and ``www.`` ignored, host lower-cased, default port, fragment,
    ``utm_*`` and click-id parameters dropped, trailing slash dropped (the root is ``/``). Only for matching: the
    expected URLs in the case files are written in this normal form already (with their scheme)."""
    u = url.strip().strip("<>")
    try:
        p = urlsplit(u)
    except ValueError:
        return u
    host = (p.hostname or "").lower()
    if host.startswith("www."):
        host = host[4:]
    if p.port and p.port not in (80, 443):
        host = f"{host}:{p.port}"
    query = urlencode(
        [
            (k, v)
            for k, v in parse_qsl(p.query, keep_blank_values=True)
            if not k.lower().startswith(_TRACKING_PREFIXES) and k.lower() not in _TRACKING
        ]
    )
    path = p.path.rstrip("/") or "/"
    return urlunsplit(("", host, path, query, ""))


@dataclass(frozen=True)
class Case:
    """One labelled answer (see ``corpus/README.md`` for the meaning of each field)."""

    id: str
    split: str
    path: Path
    style: str
    language: str
    industry: str
    tags: tuple[str, ...]
    org: dict[str, Any]
    known_competitors: tuple[str, ...]
    provider_citations: tuple[dict[str, str], ...]
    answer: str
    mentioned: bool
    rank: int
    mention_count: int
    competitors: tuple[tuple[str, ...], ...]
    citations: tuple[str, ...]
    sentiment: str


@dataclass(frozen=True)
class Got:
    """What the extractor returned for one case."""

    mentioned: bool
    rank: int
    mention_count: int
    competitors: tuple[str, ...]
    citations: tuple[str, ...]
    sentiment: str


class CaseError(ValueError):
    """A case file that does not follow the format."""


def _case(path: Path, split: str) -> Case:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        exp = doc["expected"]
        org = doc["org"]
        comps = tuple(
            (c,) if isinstance(c, str) else tuple(str(x) for x in c) for c in (exp.get("competitors") or [])
        )
        case = Case(
            id=str(doc["id"]),
            split=split,
            path=path,
            style=str(doc["style"]),
            language=str(doc["language"]),
            industry=str(doc["industry"]),
            tags=tuple(doc.get("tags") or ()),
            org={
                "name": str(org["name"]),
                "domain": str(org.get("domain") or ""),
                "name_variations": [str(x) for x in org.get("name_variations") or []],
                "known_products": [str(x) for x in org.get("known_products") or []],
            },
            known_competitors=tuple(str(x) for x in doc.get("known_competitors") or ()),
            provider_citations=tuple(
                {"url": str(c["url"]), "title": str(c.get("title") or "")}
                for c in doc.get("provider_citations") or ()
            ),
            answer=str(doc["answer"]),
            mentioned=bool(exp["mentioned"]),
            rank=int(exp["rank"]),
            mention_count=int(exp["mention_count"]),
            competitors=comps,
            citations=tuple(str(u) for u in exp.get("citations") or ()),
            sentiment=str(exp["sentiment"]),
        )
    except (KeyError, TypeError) as e:
        raise CaseError(f"{path}: missing or malformed field: {e}") from e
    if case.sentiment not in SENTIMENTS:
        raise CaseError(f"{path}: sentiment {case.sentiment!r} not in {SENTIMENTS}")
    if case.mentioned != (case.rank > 0) or (case.mentioned and case.mention_count < 1):
        raise CaseError(f"{path}: mentioned, rank and mention_count disagree")
    if not case.mentioned and case.sentiment != "NEUTRAL":
        raise CaseError(f"{path}: an answer that does not name the org is NEUTRAL")
    if case.rank > len(case.competitors) + 1:
        raise CaseError(f"{path}: rank {case.rank} > number of brands {len(case.competitors) + 1}")
    if path.stem != case.id:
        raise CaseError(f"{path}: id {case.id!r} is not the file name")
    return case


def load_cases(split: str = "all", root: Path = CORPUS_DIR) -> list[Case]:
    """Cases of ``split`` (``dev``, ``holdout``, ``all`` = dev + holdout, or ``peers``), sorted by id. Raises
    :class:`CaseError`."""
    splits = SPLITS if split == "all" else (split,)
    cases = [_case(p, s) for s in splits for p in sorted((root / s).glob("*.yaml"))]
    ids = [c.id for c in cases]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise CaseError(f"duplicate case ids: {sorted(dupes)}")
    return cases


# --- calling the real service -------------------------------------------------------------------------------


def build_request(case: Case) -> Any:
    """The ``ExtractRequest`` of ``case``; ``known_products`` only when ``Org`` has that field."""
    from vantage.common.v1 import common_pb2
    from vantage.extraction.v1 import extraction_pb2 as pb

    org_fields = {
        "name": case.org["name"],
        "domain": case.org["domain"],
        "name_variations": case.org["name_variations"],
    }
    if "known_products" in pb.Org.DESCRIPTOR.fields_by_name:
        org_fields["known_products"] = case.org["known_products"]
    return pb.ExtractRequest(
        answer_markdown=case.answer,
        org=pb.Org(**org_fields),
        known_competitors=list(case.known_competitors),
        provider_citations=[
            common_pb2.Citation(url=c["url"], title=c["title"]) for c in case.provider_citations
        ],
    )


def _got(response: Any) -> Got:
    from vantage.extraction.v1 import extraction_pb2 as pb

    e = response.org_eval
    return Got(
        mentioned=e.mentioned,
        rank=e.rank,
        mention_count=e.mention_count,
        competitors=tuple(c.name for c in response.competitors),
        citations=tuple(c.url for c in response.citations),
        sentiment=pb.OrgEval.Sentiment.Name(e.sentiment),
    )


async def extract_all(cases: Sequence[Case], rpc_timeout: float = 30.0) -> dict[str, Got]:
    """Call ``ExtractionService/Extract`` once per case on an in-process server (loopback, port 0).

    A case whose call fails is scored as wrong on every field, its ``sentiment`` holding ``RPC_ERROR <code>``.
    """
    import grpc

    from services.extraction.server import build
    from shared.config import Settings
    from shared.grpc_server import serving
    from vantage.extraction.v1 import extraction_pb2_grpc as pb_grpc

    settings = Settings(grace_seconds=0.5)
    out: dict[str, Got] = {}
    async with serving("extraction", build, settings) as srv:
        async with grpc.aio.insecure_channel(srv.address) as channel:
            stub = pb_grpc.ExtractionServiceStub(channel)
            for case in cases:
                try:
                    out[case.id] = _got(await stub.Extract(build_request(case), timeout=rpc_timeout))
                except grpc.aio.AioRpcError as e:
                    out[case.id] = Got(False, -1, -1, (), (), f"RPC_ERROR {e.code().name}: {e.details()}")
    return out


# --- scoring ------------------------------------------------------------------------------------------------


@dataclass
class PRF:
    """Micro-averaged counts of a set-valued field."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def add(self, other: PRF) -> None:
        self.tp, self.fp, self.fn = self.tp + other.tp, self.fp + other.fp, self.fn + other.fn


def match_competitors(
    expected: Sequence[Sequence[str]], got: Iterable[str]
) -> tuple[PRF, list[str], list[str]]:
    """Counts for one case, plus the extracted names that matched nothing and the expected brands not found."""
    keys = [{name_key(n) for n in entry} for entry in expected]
    matched = [False] * len(keys)
    extra: list[str] = []
    for name in got:
        k = name_key(name)
        hit = next((i for i, ks in enumerate(keys) if not matched[i] and k in ks), None)
        if hit is None:
            extra.append(name)
        else:
            matched[hit] = True
    missed = [entry[0] for entry, m in zip(expected, matched, strict=True) if not m]
    prf = PRF(tp=sum(matched), fp=len(extra), fn=len(missed))
    return prf, extra, missed


def match_citations(expected: Iterable[str], got: Iterable[str]) -> tuple[PRF, list[str], list[str]]:
    e = {url_key(u): u for u in expected}
    g = {url_key(u): u for u in got}
    extra = [g[k] for k in g if k not in e]
    missed = [e[k] for k in e if k not in g]
    return PRF(tp=len(set(e) & set(g)), fp=len(extra), fn=len(missed)), extra, missed


@dataclass
class Figures:
    """Scores of a group of cases."""

    n: int = 0
    mentioned_ok: int = 0
    rank_ok: int = 0
    count_ok: int = 0
    sentiment_ok: int = 0
    competitors: PRF = field(default_factory=PRF)
    citations: PRF = field(default_factory=PRF)

    def rate(self, ok: int) -> float:
        return ok / self.n if self.n else 1.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "n": self.n,
            "mentioned": round(self.rate(self.mentioned_ok), 4),
            "rank_exact": round(self.rate(self.rank_ok), 4),
            "mention_count_exact": round(self.rate(self.count_ok), 4),
            "sentiment": round(self.rate(self.sentiment_ok), 4),
            "competitors_p": round(self.competitors.precision, 4),
            "competitors_r": round(self.competitors.recall, 4),
            "competitors_f1": round(self.competitors.f1, 4),
            "citations_p": round(self.citations.precision, 4),
            "citations_r": round(self.citations.recall, 4),
            "citations_f1": round(self.citations.f1, 4),
        }


@dataclass
class CaseResult:
    case: Case
    got: Got
    competitors: PRF
    citations: PRF
    mismatches: dict[str, tuple[Any, Any]]


def score_case(case: Case, got: Got) -> CaseResult:
    """Compare one case's labels with what was extracted."""
    comp, extra, missed = match_competitors(case.competitors, got.competitors)
    cit, cextra, cmissed = match_citations(case.citations, got.citations)
    mm: dict[str, tuple[Any, Any]] = {}
    for name in ("mentioned", "rank", "mention_count", "sentiment"):
        if getattr(case, name) != getattr(got, name):
            mm[name] = (getattr(case, name), getattr(got, name))
    if extra or missed:
        mm["competitors"] = ({"missed": missed}, {"extra": extra})
    if cextra or cmissed:
        mm["citations"] = ({"missed": cmissed}, {"extra": cextra})
    return CaseResult(case, got, comp, cit, mm)


def figures(results: Iterable[CaseResult]) -> Figures:
    f = Figures()
    for r in results:
        f.n += 1
        f.mentioned_ok += "mentioned" not in r.mismatches
        f.rank_ok += "rank" not in r.mismatches
        f.count_ok += "mention_count" not in r.mismatches
        f.sentiment_ok += "sentiment" not in r.mismatches
        f.competitors.add(r.competitors)
        f.citations.add(r.citations)
    return f


def score(cases: Sequence[Case], got: dict[str, Got]) -> list[CaseResult]:
    return [score_case(c, got[c.id]) for c in cases]


def breakdown(results: Sequence[CaseResult], key: str) -> dict[str, Figures]:
    """Figures grouped by a case attribute (``split``, ``language``, ``style``, ``industry``) or ``tag``."""
    groups: dict[str, list[CaseResult]] = defaultdict(list)
    for r in results:
        values = r.case.tags if key == "tag" else (getattr(r.case, key),)
        for v in values:
            groups[v].append(r)
    return {k: figures(v) for k, v in sorted(groups.items())}


# --- label helper (--check) ---------------------------------------------------------------------------------

_URL_RE = re.compile(
    r"\]\([^)\s]*\)|https?://\S+|\b[\w-]+(?:\.[\w-]+)*\.(?:com|ai|io|so|co|de|fr|es|net|org|app)\b"
)


def _first_offset(text: str, names: Iterable[str]) -> int:
    best = -1
    for n in names:
        m = re.search(r"(?<![\w-])" + re.escape(n) + r"(?![\w-])", text, flags=re.IGNORECASE)
        if m and (best < 0 or m.start() < best):
            best = m.start()
    return best


def check_labels(case: Case) -> list[str]:
    """Warnings for the person labelling (see the module docstring)."""
    text = _URL_RE.sub(lambda m: " " * len(m.group()), case.answer)
    warnings: list[str] = []
    offsets: list[tuple[int, str]] = []
    for entry in case.competitors:
        off = _first_offset(text, entry)
        if off < 0:  # a name that looks like a domain ("Checkout.com") was masked with the URLs
            off = _first_offset(case.answer, entry)
        if off < 0:
            warnings.append(f"competitor {entry[0]!r} not found in the answer text")
        offsets.append((off, entry[0]))
    if [o for o, _ in offsets] != sorted(o for o, _ in offsets):
        warnings.append(f"competitors not in order of first appearance: {sorted(offsets)}")
    org_names = [case.org["name"], *case.org["name_variations"], *case.org["known_products"]]
    org_off = _first_offset(text, org_names)
    if org_off < 0:
        org_off = _first_offset(case.answer, org_names)
    if case.mentioned and org_off >= 0:
        rank = 1 + sum(1 for o, _ in offsets if 0 <= o < org_off)
        if rank != case.rank:
            warnings.append(f"rank {case.rank} but text search puts the org at {rank}")
    if case.mentioned != (org_off >= 0):
        warnings.append(f"mentioned={case.mentioned} but text search finds the org at {org_off}")
    names = sorted({n for n in org_names if n}, key=len, reverse=True)
    if names:
        pattern = r"(?<![\w-])(?:" + "|".join(re.escape(n) for n in names) + r")(?![\w-])"
        found = len(re.findall(pattern, text, flags=re.IGNORECASE))
        if found != case.mention_count:
            warnings.append(f"mention_count {case.mention_count} but text search counts {found}")
    exp = {url_key(u) for u in case.citations}
    for c in case.provider_citations:
        if url_key(c["url"]) not in exp:
            warnings.append(f"provider citation {c['url']} not in expected citations")
    return warnings


# --- report -------------------------------------------------------------------------------------------------


def format_line(label: str, f: Figures) -> str:
    """One line of the report: the figures of one group of cases."""
    d = f.as_dict()
    return (
        f"{label:<22} n={d['n']:>3}  mentioned {d['mentioned']:6.1%}  rank {d['rank_exact']:6.1%}  "
        f"count {d['mention_count_exact']:6.1%}  sentiment {d['sentiment']:6.1%}  "
        f"competitors P/R/F1 {d['competitors_p']:.3f}/{d['competitors_r']:.3f}/{d['competitors_f1']:.3f}  "
        f"citations P/R/F1 {d['citations_p']:.3f}/{d['citations_r']:.3f}/{d['citations_f1']:.3f}"
    )


def report(results: Sequence[CaseResult]) -> str:
    """The human-readable report: per split and overall, breakdowns, then every mismatching case."""
    out = ["== corpus figures (ExtractionService/Extract) =="]
    for split, f in breakdown(results, "split").items():
        out.append(format_line(split, f))
    out.append(format_line("all", figures(results)))
    for key in ("language", "style", "tag"):
        out.append(f"-- by {key} --")
        out.extend(format_line(k, f) for k, f in breakdown(results, key).items())
    out.append("-- sentiment confusion (rows expected, columns got) --")
    out.append(" " * 10 + "".join(f"{s:>10}" for s in SENTIMENTS))
    for e in SENTIMENTS:
        row = [sum(1 for r in results if r.case.sentiment == e and r.got.sentiment == g) for g in SENTIMENTS]
        out.append(f"{e:>10}" + "".join(f"{n:>10}" for n in row))
    errors = [r for r in results if r.got.sentiment.startswith("RPC_ERROR")]
    if errors:
        out.append(f"-- {len(errors)} cases failed with an RPC error (scored as wrong) --")
        out.extend(f"{r.case.split}/{r.case.id}: {r.got.sentiment[:200]}" for r in errors)
    out.append("-- mismatching cases (expected vs got) --")
    for r in results:
        if r.mismatches:
            out.append(f"{r.case.split}/{r.case.id}:")
            for name, (e, g) in r.mismatches.items():
                out.append(f"    {name}: expected {e}  got {g}")
    return "\n".join(out)


def run(split: str = "all") -> list[CaseResult]:
    cases = load_cases(split)
    return score(cases, asyncio.run(extract_all(cases)))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.extraction.corpus_score", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--split", choices=("dev", "holdout", "all", "peers"), default="all")
    ap.add_argument("--check", action="store_true", help="also print label warnings (helper for labelling)")
    ap.add_argument(
        "--json", action="store_true", help="print the figures as JSON instead of the text report"
    )
    args = ap.parse_args(argv)
    from shared.logging import configure_logging

    configure_logging("corpus_score", level="WARNING")  # per-RPC debug lines would drown the report
    try:
        cases = load_cases(args.split)
    except (CaseError, yaml.YAMLError, OSError) as e:
        print(f"corpus_score: {e}", file=sys.stderr)
        return 2
    if args.check:
        for c in cases:
            for w in check_labels(c):
                print(f"CHECK {c.split}/{c.id}: {w}")
    results = score(cases, asyncio.run(extract_all(cases)))
    if args.json:
        doc = {k: f.as_dict() for k, f in breakdown(results, "split").items()}
        doc["all"] = figures(results).as_dict()
        print(json.dumps(doc, indent=2))
    else:
        print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
