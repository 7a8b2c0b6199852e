"""Self-contained HTML reports (``vantage report RUN_ID --format html --out report.html``, ``vantage evaluate …
--html report.html``, ``make demo-eval``): ONE file with the data, the styles and the chart library inline — nothing
is fetched when it is opened (no ``src``/``href`` to a network address), it prints (a print stylesheet, a page break
between sections), and a text table stands behind every chart.

Report kinds (:data:`RENDERERS`, keyed by the ``kind`` of the report data): ``evaluation`` (an ORG_EVAL run),
``research`` (a research run), ``diff`` (``vantage diff A B --format html``: :func:`diff_data` over the ``vantage diff
--output json`` document) and ``history`` (``vantage history --org … --format html``: :func:`history_html` over the
``vantage history`` JSON). Each kind is a function building its data dict (``{"kind": ..., "title": ..., ...}``)
and a renderer returning its sections (:class:`Section`).

The evaluation's **source funnel** chart (issue 14 item 6) is drawn from the JSON report's ``source_funnel``
(:mod:`services.orchestrator.app.report_data`, the same numbers as ``vantage report --output json``): per domain the
answers that retrieved it (cited or not: ``question_runs.citations`` ∪ ``links_attached``) and that cited it, by class
owned / competitor / third-party, plus the per-question content gaps. A report without it (older JSON) shows the
cited domains chart instead.

Chart library: **plotly.js, the "basic" partial bundle** (``plotly.js-basic-dist-min`` 4.1.1 from npm, MIT; bar,
scatter and pie traces — no histogram trace, so score bins are counted here; 1.19 MB minified) vendored in ``services/orchestrator/reports/html_assets/`` with its licence and
checked by SHA-256 (:data:`PLOTLY_SHA256`). Why: it is a well-kept library (Plotly, Inc.) with error bars
(``error_y`` for the Wilson intervals), horizontal bars and hover built in, one ``<script>`` and no runtime
dependencies, and it renders SVG in the page without network access. The full ``plotly.min.js`` the ``plotly``
PyPI package ships is ~4.6 MB, too close to the 5 MB budget; Vega-Lite needs three runtimes inlined (vega,
vega-lite, vega-embed) and compiles each spec in the browser for the same charts. The Python side needs no
plotting package: the figures are plain plotly.js JSON specs (https://plotly.com/javascript/reference/).

Palette: Okabe–Ito (Okabe & Ito 2008, "Color Universal Design", https://jfly.uni-koeln.de/color/), readable with
the common colour-vision deficiencies.

The report data is embedded as ``<script type="application/json" id="report-data">`` — for an evaluation it holds
the JSON report (:func:`services.orchestrator.reports.visibility.report_dict`, the same numbers as ``vantage report
--output json``) under ``"report"``; every chart and table is drawn from that data.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import IO, Any

from services.orchestrator.app.measurement import Answer, rank_histogram, wilson_interval

PLOTLY_ASSET = "plotly-basic.min.js"
PLOTLY_VERSION = "4.1.1"
#: SHA-256 of ``html_assets/plotly-basic.min.js`` as published in ``plotly.js-basic-dist-min@4.1.1`` on npm.
PLOTLY_SHA256 = "99784e3abfb07b142a15e521a439e6d9addceadb3f79553fd24c72774f0649ba"
#: Okabe–Ito palette (black last: it is kept for text).
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")
#: Competitors shown next to the org in the share-of-voice chart.
SOV_COMPETITORS = 5
#: Rows of the "negative answers" and "never named" tables (the JSON data holds the same rows).
MAX_ROWS = 500


@dataclass(frozen=True)
class Section:
    """One section of a report: a heading, an optional chart (a plotly.js ``{"data": [...], "layout": {...}}``
    spec) and the HTML of its text table(s)."""

    title: str
    chart: dict[str, Any] | None
    table_html: str


def plotly_js() -> str:
    """The vendored plotly.js basic bundle. Raises RuntimeError when the file is not the one :data:`PLOTLY_SHA256`
    names."""
    data = resources.files("services.orchestrator.reports").joinpath("html_assets", PLOTLY_ASSET).read_bytes()
    if hashlib.sha256(data).hexdigest() != PLOTLY_SHA256:
        raise RuntimeError(f"html_assets/{PLOTLY_ASSET} is not plotly.js-basic-dist-min {PLOTLY_VERSION}")
    return data.decode("utf-8")


# --- data -------------------------------------------------------------------------------------------------------


def domain_class(owned: int, competitor: int) -> str:
    """``owned`` (citations of the org's domain), ``competitor`` (the extraction service matched the domain to a
    competitor) or ``third-party`` — the classes the extraction service gave the domain's citations."""
    if owned:
        return "owned"
    return "competitor" if competitor else "third-party"


def evaluation_data(report: dict[str, Any], question_runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The data of an evaluation report: ``report`` = the JSON report as is, plus ``derived`` figures — per group the
    95 % Wilson interval of the visibility rate (0..1), the rank histogram per model
    (:func:`services.orchestrator.app.measurement.rank_histogram`), the cited domains with their class, the answers
    naming the org NEGATIVE(ly) with the evidence span, and the questions no answer named the org in."""
    groups = []
    for g in report["groups"]:
        lo, hi = wilson_interval(g["mentioned"], g["answers"]) if g["answers"] else (None, None)
        groups.append({"model": g["model"], "location": g["location"], "answers": g["answers"],
                       "mentioned": g["mentioned"], "visibility_rate": g["visibility_rate"], "low": lo, "high": hi})
    evaluated = [r for r in question_runs if r["mentioned"] is not None]
    answers = [Answer(question_id=str(r["question_seq"]), model=r["model"], location=r["location"] or "",
                      mentioned=bool(r["mentioned"]), rank=r["rank"] or None) for r in evaluated]
    domains = [{"domain": d["domain"], "citations": d["citations"], "owned": d["owned"],
                "class": domain_class(d["owned"], d.get("competitor", 0))}
               for d in report["overall"]["top_domains"]]
    negative = [{"question": r["question"], "model": r["model"], "location": r["location"] or "",
                 "evidence": r["evidence"] or ""}
                for r in evaluated if r["mentioned"] and r["sentiment"] == "NEGATIVE"][:MAX_ROWS]
    named: dict[int, bool] = {}
    text: dict[int, str] = {}
    for r in evaluated:
        named[r["question_seq"]] = named.get(r["question_seq"], False) or bool(r["mentioned"])
        text[r["question_seq"]] = r["question"]
    never = [{"question_seq": q, "question": text[q]} for q in sorted(named) if not named[q]][:MAX_ROWS]
    return {"kind": "evaluation", "title": f"AI visibility of {report['org']['name']}", "report": report,
            "derived": {"groups": groups, "rank_histogram": rank_histogram(answers), "domains": domains,
                        "negative": negative, "never_named": never}}


def research_data(run: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """The data of a research report: the run record and its items
    (:func:`services.orchestrator.reports.tables.item_record`), plus counts per tier and per category."""
    tiers: dict[str, int] = {}
    cats: dict[str, int] = {}
    for it in items:
        tiers[it["tier"] or "none"] = tiers.get(it["tier"] or "none", 0) + 1
        cats[it["category"] or "none"] = cats.get(it["category"] or "none", 0) + 1
    return {"kind": "research", "title": f"Research run {run['run_id']}" + (f" — {run['name']}" if run["name"] else ""),
            "run": run, "items": items, "derived": {"tiers": dict(sorted(tiers.items())),
                                                    "categories": dict(sorted(cats.items(), key=lambda kv: -kv[1]))}}


# --- rendering --------------------------------------------------------------------------------------------------


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _table(headers: list[str], rows: list[list[Any]], *, cls: str = "", caption: str = "",
           row_classes: list[str] | None = None) -> str:
    head = "".join(f"<th scope=\"col\">{_e(h)}</th>" for h in headers)
    rc = row_classes or [""] * len(rows)
    body = "".join((f"<tr class=\"{_e(k)}\">" if k else "<tr>")
                   + "".join(f"<td>{c if isinstance(c, Raw) else _e(c)}</td>" for c in r) + "</tr>"
                   for r, k in zip(rows, rc, strict=True))
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    return f"<table class=\"{cls}\">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Raw(str):
    """Already-escaped HTML for a table cell."""


def _layout(title: str, x: str, y: str, **kw: Any) -> dict[str, Any]:
    return {"title": {"text": title}, "xaxis": {"title": {"text": x}, "automargin": True},
            "yaxis": {"title": {"text": y}, "automargin": True}, "colorway": list(OKABE_ITO),
            "margin": {"t": 50, "l": 60, "r": 20, "b": 60}, "height": 380, **kw}


#: Class of a domain → its colour (Okabe–Ito bluish green, vermillion, sky blue).
CLASS_COLOURS = {"owned": OKABE_ITO[2], "competitor": OKABE_ITO[5], "third-party": OKABE_ITO[1]}
#: Domains drawn in the source-funnel chart (the table lists up to :data:`MAX_ROWS`).
FUNNEL_CHART_DOMAINS = 25


def _cls(c: str) -> str:
    """A domain class as shown: ``third_party`` (report_data) and ``third-party`` are one class."""
    return c.replace("_", "-")


def funnel_sections(f: dict[str, Any], cited_table: str = "") -> list[Section]:
    """The source funnel (``source_funnel`` of the JSON report, :meth:`services.orchestrator.app.report_data.
    SourceFunnel.to_dict` shape: ``answers``, ``answers_with_retrieved``, ``by_class``, ``domains`` [{domain,
    retrieved, cited, cited_share, class, competitor_name}], ``content_gaps`` [{question_seq, question, answers,
    domains [{domain, retrieved, class}]}]): a chart of the most retrieved domains — a pale bar for the answers
    that retrieved the domain, a solid bar over it for those that cited it, coloured by class — with its tables,
    then the content gaps (questions whose answers retrieved domains none of them cited)."""
    doms = f.get("domains") or []
    shown = doms[:FUNNEL_CHART_DOMAINS]
    order = [x["domain"] for x in shown][::-1]
    data = []
    for k in ("owned", "competitor", "third-party"):
        mine = [x for x in shown if _cls(x["class"]) == k]
        if not mine:
            continue
        for what, opacity in (("retrieved", 0.4), ("cited", 1.0)):
            data.append({"type": "bar", "orientation": "h", "name": f"{k}: {what}",
                         "y": [x["domain"] for x in mine], "x": [x[what] for x in mine],
                         "marker": {"color": CLASS_COLOURS[k], "opacity": opacity,
                                    "line": {"color": CLASS_COLOURS[k], "width": 1}},
                         "hovertemplate": f"%{{y}}: %{{x}} answers {what}<extra>{k}</extra>"})
    if not data:  # no answer retrieved anything: one empty trace keeps the axes
        data = [{"type": "bar", "orientation": "h", "name": "retrieved", "x": [], "y": []}]
    more = f" (the {len(shown)} most retrieved of {len(doms)})" if len(doms) > len(shown) else ""
    layout = _layout(f"Source funnel: answers that retrieved / cited each domain{more}", "answers", "domain",
                     barmode="overlay", height=max(380, 60 + 22 * len(shown)),
                     yaxis={"title": {"text": "domain"}, "automargin": True, "categoryorder": "array",
                            "categoryarray": order},
                     legend={"title": {"text": "class: retrieved (pale) / cited (solid)"}})
    bc = f.get("by_class") or {}
    by_class = _table(["Class", "Domains", "Retrieved (answers)", "Cited (answers)"],
                      [[_cls(k), v.get("domains", 0), v.get("retrieved", 0), v.get("cited", 0)] for k, v in bc.items()],
                      caption="By class")
    table = _table(["Domain", "Class", "Retrieved (answers)", "Cited (answers)", "Cited share", "Competitor"],
                   [[x["domain"], _cls(x["class"]), x["retrieved"], x["cited"], _pct(x.get("cited_share")),
                     x.get("competitor_name") or ""] for x in doms[:MAX_ROWS]], cls="sortable",
                   caption=f"{f.get('answers', 0)} answers read, {f.get('answers_with_retrieved', 0)} of them with "
                           "retrieved-but-not-cited sources reported by their provider")
    gaps = f.get("content_gaps") or []
    gap_rows = [[g["question_seq"], g["question"], g["answers"],
                 ", ".join(f"{x['domain']} ({x['retrieved']}, {_cls(x['class'])})" for x in g["domains"])]
                for g in gaps[:MAX_ROWS]]
    return [Section("Source funnel by domain", {"data": data, "layout": layout}, table + by_class + cited_table),
            Section("Content gaps: retrieved but never cited", None,
                    _table(["#", "Question", "Answers", "Domains retrieved, never cited (answers, class)"], gap_rows)
                    if gap_rows else "<p>None: every domain an answer retrieved was cited by some answer to the same "
                                     "question.</p>")]


def evaluation_sections(d: dict[str, Any]) -> list[Section]:
    rep, der = d["report"], d["derived"]
    o = rep["overall"]
    out: list[Section] = []
    gs = der["groups"]
    labels = [f"{g['model']} · {g['location'] or '-'}" for g in gs]
    vis = [g["visibility_rate"] for g in gs]
    out.append(Section("Visibility per model × location", {
        "data": [{"type": "bar", "x": labels, "y": vis, "marker": {"color": OKABE_ITO[4]}, "name": "visibility",
                  "error_y": {"type": "data", "symmetric": False,
                              "array": [(g["high"] - g["visibility_rate"]) if g["high"] is not None else 0 for g in gs],
                              "arrayminus": [(g["visibility_rate"] - g["low"]) if g["low"] is not None else 0
                                             for g in gs]}}],
        "layout": _layout("Visibility rate with 95 % Wilson interval", "model · location", "visibility rate",
                          yaxis={"title": {"text": "visibility rate"}, "tickformat": ".0%", "range": [0, 1]})},
        _table(["Model", "Location", "Answers", "Named", "Visibility", "95 % low", "95 % high"],
               [[g["model"], g["location"] or "-", g["answers"], g["mentioned"], _pct(g["visibility_rate"]),
                 _pct(g["low"]), _pct(g["high"])] for g in gs]
               + [["all", "all", o["answers"], o["mentioned"], _pct(o["visibility_rate"]), "", ""]])))
    comps = o["top_competitors"][:SOV_COMPETITORS]
    other = o["competitor_mentions"] - sum(c["mentions"] for c in comps)
    sov = [(rep["org"]["name"], o["org_mentions"]), *((c["name"], c["mentions"]) for c in comps)]
    if other > 0:
        sov.append(("other competitors", other))
    total = sum(n for _, n in sov)
    out.append(Section("Share of voice", {
        "data": [{"type": "pie", "labels": [n for n, _ in sov], "values": [v for _, v in sov], "sort": False,
                  "marker": {"colors": list(OKABE_ITO)}, "hole": 0.4, "textinfo": "label+percent"}],
        "layout": {"title": {"text": f"Share of voice: {rep['org']['name']} vs top competitors (brand mentions)"},
                   "height": 380, "margin": {"t": 50, "l": 20, "r": 20, "b": 20}}},
        _table(["Brand", "Mentions", "Share of mentions"],
               [[n, v, _pct(v / total if total else None)] for n, v in sov],
               caption=f"Share of voice of {rep['org']['name']}: {_pct(o['share_of_voice'])}")))
    hist = der["rank_histogram"]
    buckets = list(next(iter(hist.values())).keys()) if hist else []
    out.append(Section("Rank distribution per model", {
        "data": [{"type": "bar", "name": b, "x": list(hist), "y": [hist[m][b] for m in hist],
                  "marker": {"color": OKABE_ITO[i % len(OKABE_ITO)]}} for i, b in enumerate(buckets)],
        "layout": _layout("Rank of the org in each answer, per model", "model", "answers", barmode="stack",
                          legend={"title": {"text": "rank"}})},
        _table(["Model", *buckets], [[m, *hist[m].values()] for m in hist])))
    tc = o["top_competitors"]
    out.append(Section("Top competitors", {
        "data": [{"type": "bar", "orientation": "h", "y": [c["name"] for c in tc][::-1],
                  "x": [c["answers"] for c in tc][::-1], "marker": {"color": OKABE_ITO[5]}, "name": "answers"}],
        "layout": _layout("Competitors by answers naming them", "answers naming it", "competitor")},
        _table(["Competitor", "Answers", "Mentions", "Average rank", "Variants"],
               [[c["name"], c["answers"], c["mentions"],
                 "–" if c["average_rank"] is None else f"{c['average_rank']:.2f}", ", ".join(c["variants"])]
                for c in tc])))
    dom = der["domains"]
    classes = ("owned", "competitor", "third-party")
    cited_table = _table(["Domain", "Citations", "Class"], [[x["domain"], x["citations"], x["class"]] for x in dom],
                         caption=f"Cited domains (every citation the extractor read): {o['citations']} citations, "
                                 f"owned share {_pct(o['owned_citation_share'])}")
    funnel = rep.get("source_funnel")
    if funnel:
        out += funnel_sections(funnel, cited_table)
    else:
        out.append(Section("Cited domains", {
            "data": [{"type": "bar", "orientation": "h", "name": k,
                      "y": [x["domain"] for x in dom if x["class"] == k][::-1],
                      "x": [x["citations"] for x in dom if x["class"] == k][::-1],
                      "marker": {"color": CLASS_COLOURS[k]}} for k in classes],
            "layout": _layout("Citations by domain (owned / competitor / third-party)", "citations", "domain",
                              barmode="stack", yaxis={"title": {"text": "domain"}, "automargin": True,
                                                       "categoryorder": "total ascending"})},
            cited_table))
    out.append(Section("Answers that named the org negatively", None,
                       _table(["Question", "Model", "Location", "Evidence"],
                              [[x["question"], x["model"], x["location"], x["evidence"]] for x in der["negative"]])
                       if der["negative"] else "<p>None.</p>"))
    out.append(Section("Questions where the org was never named", None,
                       _table(["#", "Question"], [[x["question_seq"], x["question"]] for x in der["never_named"]])
                       if der["never_named"] else "<p>None: every question had an answer naming the org.</p>"))
    summ = rep["summary"]
    out.insert(0, Section("Summary", None, _table(
        ["Processed", "Evaluations", "Citations", "Competitors", "Cost USD", "Status"],
        [[summ["processed"], summ["evaluations"], summ["citations"], summ["competitors"], f"{summ['cost_usd']:.4f}",
          rep["status"]]]) + "".join(f"<p class=\"note\">{_e(n)}</p>" for n in rep["notes"])))
    return out


def research_sections(d: dict[str, Any]) -> list[Section]:
    items, der = d["items"], d["derived"]
    tiers, cats = der["tiers"], der["categories"]
    scores = [it["score"] for it in items if it["score"] is not None]
    # Bins counted here (the basic bundle has no histogram trace; the table and the bars share the counts).
    bins = [(f"{lo}–{lo + 9}", sum(1 for s in scores if lo <= s <= lo + 9)) for lo in range(0, 100, 10)]
    bins.append(("100", sum(1 for s in scores if s == 100)))
    out = [
        Section("Tier distribution", {
            "data": [{"type": "bar", "x": list(tiers), "y": list(tiers.values()), "marker": {"color": OKABE_ITO[4]}}],
            "layout": _layout("Companies per tier", "tier", "companies")},
            _table(["Tier", "Companies"], [[k, v] for k, v in tiers.items()])),
        Section("Score histogram", {
            "data": [{"type": "bar", "x": [b for b, _ in bins], "y": [n for _, n in bins],
                      "marker": {"color": OKABE_ITO[2]}}],
            "layout": _layout("Scores (bins of 10)", "score", "companies")},
            _table(["Score range", "Companies"], [[b, n] for b, n in bins])),
        Section("Categories", {
            "data": [{"type": "bar", "orientation": "h", "y": list(cats)[::-1], "x": list(cats.values())[::-1],
                      "marker": {"color": OKABE_ITO[0]}}],
            "layout": _layout("Companies per category", "companies", "category")},
            _table(["Category", "Companies"], [[k, v] for k, v in cats.items()])),
    ]
    rows = [[it["company"], it["domain"], it["tier"], "" if it["score"] is None else it["score"], it["category"],
             it["rationale"],
             Raw(" ".join(f"<a href=\"{_e(u)}\" rel=\"noreferrer\">{_e(u)}</a>" for u in it["evidence_urls"]
                          if u.startswith(("http://", "https://")))), it["status"]] for it in items]
    out.append(Section("Companies", None,
                       "<p><label>Filter: <input type=\"search\" class=\"filter\" aria-label=\"filter the table\">"
                       "</label> (click a column heading to sort)</p>"
                       + _table(["Company", "Domain", "Tier", "Score", "Category", "Rationale", "Evidence", "Status"],
                                rows, cls="sortable")))
    return out


# --- diff and history (issue 15) ---------------------------------------------------------------------------------

#: Headline figures in display order (:data:`services.orchestrator.app.measurement.FIGURES`); a figure of the data
#: not listed here comes after them.
FIGURE_ORDER = ("visibility_rate", "share_of_voice", "first_mention_rate", "average_rank", "median_rank")
#: Figures in 0..1 (shown as %); the others are positions (1 = named first; lower is better).
RATE_FIGURES = frozenset({"visibility_rate", "share_of_voice", "first_mention_rate"})
FIGURE_LABELS = {"visibility_rate": "Visibility rate", "share_of_voice": "Share of voice",
                 "first_mention_rate": "First-mention rate", "average_rank": "Average rank when named",
                 "median_rank": "Median rank when named"}
#: Verdict → colour (Okabe–Ito bluish green / vermillion / sky blue; grey for too little data).
VERDICT_COLOURS = {"moved_up": OKABE_ITO[2], "moved_down": OKABE_ITO[5], "within_noise": OKABE_ITO[1],
                   "insufficient_data": "#999999"}
TIER_CHANGE_COLOURS = {"up": OKABE_ITO[2], "down": OKABE_ITO[5], "same": "#999999", "new": OKABE_ITO[4],
                       "gone": OKABE_ITO[0]}


def _figures_of(keys: Any, suffix: str) -> list[str]:
    """Figure names of ``keys`` (``<figure><suffix>``) in :data:`FIGURE_ORDER`, unknown ones after."""
    names = {k[: -len(suffix)] for k in keys if k.endswith(suffix)}
    return [f for f in FIGURE_ORDER if f in names] + sorted(names - set(FIGURE_ORDER))


def _label(fig: str) -> str:
    return FIGURE_LABELS.get(fig, fig.replace("_", " ").capitalize())


def _num(fig: str, x: float | None, *, signed: bool = False) -> str:
    """A figure's value as shown: ``81.0%`` for a rate, ``2.30`` for a rank, ``–`` when undefined."""
    if x is None:
        return "–"
    text = f"{100 * x:.1f}" if fig in RATE_FIGURES else f"{x:.2f}"
    if signed and not text.startswith("-") and float(text) != 0:
        text = "+" + text
    return text + ("%" if fig in RATE_FIGURES else "")


def _est(fig: str, v: float | None, lo: float | None, hi: float | None, *, signed: bool = False) -> str:
    """``81.0% [74.0% – 87.0%]``; no brackets when there is no interval."""
    if v is None:
        return "–"
    if lo is None or hi is None:
        return _num(fig, v, signed=signed)
    return f"{_num(fig, v, signed=signed)} [{_num(fig, lo, signed=signed)} – {_num(fig, hi, signed=signed)}]"


def _err(v: list[float | None], lo: list[float | None], hi: list[float | None]) -> dict[str, Any]:
    """A plotly ``error_y`` / ``error_x`` of asymmetric intervals (0 where undefined)."""
    return {"type": "data", "symmetric": False,
            "array": [(h - x) if x is not None and h is not None else 0 for x, h in zip(v, hi, strict=True)],
            "arrayminus": [(x - low) if x is not None and low is not None else 0 for x, low in zip(v, lo, strict=True)]}


def _axis(fig: str) -> dict[str, Any]:
    if fig in RATE_FIGURES:
        return {"title": {"text": _label(fig).lower()}, "tickformat": ".0%", "automargin": True}
    return {"title": {"text": f"{_label(fig).lower()} (lower is better)"}, "automargin": True}


def diff_data(d: dict[str, Any]) -> dict[str, Any]:
    """The data of a diff report: ``d`` = the ``vantage diff --output json`` document
    (:meth:`services.orchestrator.app.diff.RunDiff.to_dict`) as is, under ``"diff"``."""
    return {"kind": "diff", "title": f"Diff of {d['kind'].replace('_', ' ')} runs {d['run_a'][:8]} → {d['run_b'][:8]}",
            "diff": d}


def _cell_label(c: dict[str, Any]) -> str:
    flag = " (model version changed)" if c.get("model_version_changed") else ""
    return ("all · all" if c["model"] == "all" and c["location"] == "all"
            else f"{c['model']} · {c['location'] or '-'}") + flag


def diff_sections(data: dict[str, Any]) -> list[Section]:
    """Sweeps: a summary, a verdict grid (cells × figures, moved cells highlighted), then per figure A and B side by
    side with their intervals next to the delta B − A with its interval coloured by verdict, and its table. Research
    runs: the tier changes and the company table (sortable, filterable)."""
    d = data["diff"]
    out: list[Section] = []
    notes = "".join(f"<p class=\"note\">{_e(n)}</p>" for n in d.get("notes") or [])
    if d["kind"] != "org_eval":
        comps = d.get("companies") or []
        kinds = ("up", "down", "same", "new", "gone")
        counts = {k: sum(1 for c in comps if c["tier_change"] == k) for k in kinds}
        out.append(Section("Tier changes", {
            "data": [{"type": "bar", "x": list(kinds), "y": [counts[k] for k in kinds],
                      "marker": {"color": [TIER_CHANGE_COLOURS[k] for k in kinds]}, "name": "companies"}],
            "layout": _layout(f"Companies by tier change, run {d['run_a'][:8]} → {d['run_b'][:8]}", "tier change",
                              "companies")},
            _table(["Tier change", "Companies"], [[k, counts[k]] for k in kinds]) + notes))
        rows = [[c["company"], c["domain"], f"{c['tier_a'] or '—'} → {c['tier_b'] or '—'}", c["tier_change"],
                 "" if c["score_a"] is None else c["score_a"], "" if c["score_b"] is None else c["score_b"],
                 "" if c["score_delta"] is None else f"{c['score_delta']:+d}",
                 Raw(" ".join(f"<a href=\"{_e(u)}\" rel=\"noreferrer\">{_e(u)}</a>" for u in c["new_evidence_urls"]
                              if u.startswith(("http://", "https://"))))] for c in comps]
        out.append(Section("Companies", None,
                           "<p><label>Filter: <input type=\"search\" class=\"filter\" aria-label=\"filter the "
                           "table\"></label> (click a column heading to sort; moved tiers highlighted)</p>"
                           + _table(["Company", "Domain", "Tier A → B", "Change", "Score A", "Score B", "Score Δ",
                                     "New evidence URLs"], rows, cls="sortable",
                                    row_classes=[f"moved moved_{c['tier_change']}"
                                                 if c["tier_change"] in ("up", "down") else "" for c in comps])))
        return out
    cells = d.get("cells") or []
    figs = _figures_of(cells[0].keys() if cells else [], "_verdict")
    conf = d.get("confidence") or 0.95
    summary = _table(["Run A", "Run B", "Common cells", "Only in A", "Only in B", "Confidence", "Resamples", "Seed"],
                     [[d["run_a"], d["run_b"], d.get("basket"), d.get("only_a"), d.get("only_b"), f"{conf:.0%}",
                       d.get("resamples"), d.get("seed")]])
    changes = "".join(f"<p class=\"note\">model version changed: {_e(mc['model'])}: "
                      f"{_e(', '.join(mc['versions_a']))} → {_e(', '.join(mc['versions_b']))}</p>"
                      for mc in d.get("model_changes") or [])
    out.append(Section("Summary", None, summary + changes + notes))

    def verdict_cell(c: dict[str, Any], f: str) -> Raw:
        v = c[f"{f}_verdict"]
        need = c.get(f"{f}_needed_n")
        extra = f" (need ≈{need:,})" if v == "insufficient_data" and need else ""
        return Raw(f"<span class=\"verdict {_e(v)}\">{_e(v)}{_e(extra)}</span>")

    out.append(Section("Verdicts", None, _table(
        ["Model · location", "Questions", *(_label(f) for f in figs)],
        [[_cell_label(c), c["questions"], *(verdict_cell(c, f) for f in figs)] for c in cells],
        caption="moved_up / moved_down: the delta's interval excludes 0; within_noise: it includes 0 and the sample "
                "could see a move; insufficient_data: too few samples (the number needed per sweep in brackets)",
        row_classes=["moved" if any(c[f"{f}_verdict"].startswith("moved") for f in figs) else "" for c in cells])))
    labels = [_cell_label(c) for c in cells]
    for f in figs:
        def col(side: str, f: str = f) -> tuple[list[Any], list[Any], list[Any]]:
            return ([c.get(f"{f}_{side}") for c in cells], [c.get(f"{f}_{side}_ci_low") for c in cells],
                    [c.get(f"{f}_{side}_ci_high") for c in cells])

        (av, alo, ahi), (bv, blo, bhi), (dv, dlo, dhi) = col("a"), col("b"), col("delta")
        verdicts = [c[f"{f}_verdict"] for c in cells]
        chart = {
            "data": [
                {"type": "bar", "name": "A", "x": labels, "y": av, "error_y": _err(av, alo, ahi),
                 "marker": {"color": OKABE_ITO[0]}, "xaxis": "x", "yaxis": "y"},
                {"type": "bar", "name": "B", "x": labels, "y": bv, "error_y": _err(bv, blo, bhi),
                 "marker": {"color": OKABE_ITO[4]}, "xaxis": "x", "yaxis": "y"},
                {"type": "bar", "name": "delta B − A", "x": labels, "y": dv, "error_y": _err(dv, dlo, dhi),
                 "marker": {"color": [VERDICT_COLOURS.get(v, "#999999") for v in verdicts],
                            "line": {"color": "#000000", "width": [2 if v.startswith("moved") else 0
                                                                    for v in verdicts]}},
                 "text": verdicts, "textposition": "outside", "xaxis": "x2", "yaxis": "y2", "showlegend": False},
            ],
            "layout": {"title": {"text": f"{_label(f)}: A and B with {conf:.0%} intervals (left), delta B − A by "
                                         "verdict (right)"},
                       "barmode": "group", "colorway": list(OKABE_ITO), "height": 420,
                       "margin": {"t": 50, "l": 60, "r": 20, "b": 90},
                       "xaxis": {"domain": [0, 0.55], "title": {"text": "model · location"}, "automargin": True},
                       "yaxis": _axis(f),
                       "xaxis2": {"domain": [0.65, 1], "anchor": "y2", "title": {"text": "model · location"},
                                  "automargin": True},
                       "yaxis2": {**_axis(f), "anchor": "x2", "zeroline": True,
                                  "title": {"text": "delta B − A"}},
                       "legend": {"orientation": "h", "y": 1.08}},
        }
        rows = [[_cell_label(c), c["questions"], _est(f, a, al, ah), _est(f, b, bl, bh),
                 _est(f, x, xl, xh, signed=True), verdict_cell(c, f)]
                for c, a, al, ah, b, bl, bh, x, xl, xh in zip(cells, av, alo, ahi, bv, blo, bhi, dv, dlo, dhi,
                                                              strict=True)]
        out.append(Section(_label(f), chart, _table(
            ["Model · location", "Questions", f"A [{conf:.0%} CI]", f"B [{conf:.0%} CI]", "Delta B − A", "Verdict"],
            rows, row_classes=[f"moved {v}" if v.startswith("moved") else "" for v in verdicts])))
    return out


def history_data(data: dict[str, Any]) -> dict[str, Any]:
    """The data of a history report: the ``vantage history`` JSON (``{"org", "sweeps": [{"run_id", "name",
    "started_at", "schedule_id", "period", "samples", "answers", "figures": {figure: {"value", "ci_low", "ci_high",
    "n"}}}], "verdicts": [{"from_run", "to_run", "figure", "delta": {"value", "ci_low", "ci_high"}, "verdict"}]}``)
    as is, under ``"history"``."""
    return {"kind": "history", "title": f"AI visibility history of {data.get('org') or '?'}", "history": data}


def _utc(stamp: Any) -> str | None:
    """An ISO-8601 time (``2026-12-02T16:02:30.12+00:00``, ``…Z``) as ``2026-12-02 16:02:30`` UTC, the form a plotly
    date axis reads (it keeps no time zone); the text as is when it is not one."""
    if not isinstance(stamp, str):
        return None
    try:
        t = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    if t.tzinfo is not None:
        t = t.astimezone(UTC).replace(tzinfo=None)
    return t.strftime("%Y-%m-%d %H:%M:%S")


def history_sections(data: dict[str, Any]) -> list[Section]:
    """The sweeps table, then per figure its trend over the sweeps (line and markers) inside its interval band, the
    points reached by a move (the verdict against the previous sweep) ringed in the verdict's colour, and its
    table with the delta and verdict against the previous sweep (moves highlighted)."""
    h = data["history"]
    sweeps = sorted(h.get("sweeps") or [], key=lambda s: str(s.get("started_at") or ""))
    verdicts = {(v["to_run"], v["figure"]): v for v in h.get("verdicts") or []}
    out = [Section("Sweeps", None, _table(
        ["Run", "Name", "Started", "Schedule", "Period", "Samples", "Answers"],
        [[s["run_id"], s.get("name") or "", s.get("started_at") or "", s.get("schedule_id") or "",
          s.get("period") or "", s.get("samples"), s.get("answers")] for s in sweeps]) if sweeps
        else "<p>No sweep of this org yet.</p>")]
    keys = {f"{k}:" for s in sweeps for k in (s.get("figures") or {})}
    for f in _figures_of(keys, ":"):
        pts = [(s, (s.get("figures") or {}).get(f) or {}) for s in sweeps]
        x = [_utc(s.get("started_at")) for s, _ in pts]
        v = [e.get("value") for _, e in pts]
        lo = [e.get("ci_low") for _, e in pts]
        hi = [e.get("ci_high") for _, e in pts]
        vd = [verdicts.get((s["run_id"], f), {}).get("verdict", "") for s, _ in pts]
        colour = OKABE_ITO[4]
        chart = {
            "data": [
                {"type": "scatter", "mode": "lines", "x": x, "y": lo, "line": {"width": 0}, "hoverinfo": "skip",
                 "showlegend": False, "name": "95 % low"},
                {"type": "scatter", "mode": "lines", "x": x, "y": hi, "line": {"width": 0}, "fill": "tonexty",
                 "fillcolor": "rgba(0,114,178,0.18)", "name": "interval"},
                {"type": "scatter", "mode": "lines+markers", "x": x, "y": v, "name": _label(f).lower(),
                 "line": {"color": colour, "width": 2},
                 "marker": {"size": 9, "color": colour,
                            "line": {"width": [3 if k.startswith("moved") else 0 for k in vd],
                                     "color": [VERDICT_COLOURS.get(k, colour) for k in vd]}},
                 "text": [k or "first sweep" for k in vd],
                 "hovertemplate": "%{x}: %{y}<br>%{text}<extra></extra>"},
            ],
            "layout": _layout(f"{_label(f)} per sweep with its interval band", "sweep start (UTC)", _label(f).lower(),
                              yaxis=_axis(f), xaxis={"title": {"text": "sweep start (UTC)"}, "automargin": True,
                                                     "type": "date"}),
        }
        rows = []
        for (s, e), k in zip(pts, vd, strict=True):
            dv = (verdicts.get((s["run_id"], f)) or {}).get("delta") or {}
            rows.append([s.get("started_at") or "", s.get("name") or s["run_id"][:8],
                         _est(f, e.get("value"), e.get("ci_low"), e.get("ci_high")), e.get("n", ""),
                         _est(f, dv.get("value"), dv.get("ci_low"), dv.get("ci_high"), signed=True) if dv else "",
                         Raw(f"<span class=\"verdict {_e(k)}\">{_e(k)}</span>") if k else ""])
        out.append(Section(_label(f), chart, _table(
            ["Started", "Sweep", "Value [interval]", "n", "Delta vs previous", "Verdict vs previous"], rows,
            row_classes=[f"moved {k}" if k.startswith("moved") else "" for k in vd])))
    return out


def history_html(data: dict[str, Any]) -> str:
    """The self-contained HTML file of ``vantage history --org … --format html`` for its JSON ``data`` (shape in
    :func:`history_data`)."""
    return render_html(history_data(data))


def diff_html(d: dict[str, Any]) -> str:
    """The self-contained HTML file of ``vantage diff A B --format html`` for its ``--output json`` document."""
    return render_html(diff_data(d))


#: Report kind → its sections.
RENDERERS: dict[str, Callable[[dict[str, Any]], list[Section]]] = {
    "evaluation": evaluation_sections,
    "research": research_sections,
    "diff": diff_sections,
    "history": history_sections,
}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#111;
padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;border-bottom:1px solid #ccc;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem;width:100%}
th,td{border:1px solid #ccc;padding:.25rem .45rem;text-align:left;vertical-align:top}
th{background:#f0f0f0}table.sortable th{cursor:pointer}caption{text-align:left;font-weight:600;padding:.3rem 0}
.chart{min-height:380px}.note{color:#555}details{margin:.4rem 0}a{color:#0072B2;word-break:break-all}
tr.moved td{background:#fff4d6}tr.moved_up td,tr.moved_down td{font-weight:600}
.verdict.moved_up{color:#006b4f}.verdict.moved_down{color:#a33c00}.verdict.insufficient_data{color:#666}
tr.moved_up td:first-child{border-left:4px solid #009E73}tr.moved_down td:first-child{border-left:4px solid #D55E00}
@media print{body{margin:0;max-width:none}section{page-break-before:always;break-before:page}
section:first-of-type{page-break-before:auto;break-before:auto}details{display:block}input{display:none}
a{color:#000}}
"""

JS = """
(function(){
var data=JSON.parse(document.getElementById('report-data').textContent);
var specs=JSON.parse(document.getElementById('chart-specs').textContent);
var jobs=[];
specs.forEach(function(s){var el=document.getElementById(s.id);
 jobs.push(Plotly.newPlot(el,s.spec.data,s.spec.layout,{displaylogo:false,responsive:true,staticPlot:false}));});
Promise.all(jobs).then(function(){document.body.setAttribute('data-charts-drawn',String(jobs.length));});
document.querySelectorAll('table.sortable').forEach(function(t){
 var ths=t.querySelectorAll('th');ths.forEach(function(th,i){th.addEventListener('click',function(){
  var asc=th.getAttribute('aria-sort')!=='ascending';ths.forEach(function(h){h.removeAttribute('aria-sort');});
  th.setAttribute('aria-sort',asc?'ascending':'descending');var tb=t.tBodies[0];
  var rows=Array.prototype.slice.call(tb.rows);rows.sort(function(a,b){
   var x=a.cells[i].textContent,y=b.cells[i].textContent,nx=parseFloat(x),ny=parseFloat(y);
   var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);return asc?c:-c;});
  rows.forEach(function(r){tb.appendChild(r);});});});});
document.querySelectorAll('input.filter').forEach(function(inp){var t=inp.closest('section').querySelector('table');
 inp.addEventListener('input',function(){var q=inp.value.toLowerCase();
  Array.prototype.forEach.call(t.tBodies[0].rows,function(r){
   r.style.display=r.textContent.toLowerCase().indexOf(q)>=0?'':'none';});});});
void data;
})();
"""


def _script_json(obj: Any) -> str:
    # "</" cannot end the script element early; JSON stays valid (\u003c is "<").
    return json.dumps(obj, separators=(",", ":")).replace("<", "\\u003c")


def render_html(data: dict[str, Any]) -> str:
    """The whole report file for ``data`` (``data["kind"]`` in :data:`RENDERERS`; KeyError otherwise)."""
    sections = RENDERERS[data["kind"]](data)
    specs = []
    parts = []
    for i, s in enumerate(sections):
        chart = ""
        if s.chart is not None:
            cid = f"chart-{i}"
            specs.append({"id": cid, "spec": s.chart})
            chart = (f"<div class=\"chart\" id=\"{cid}\" role=\"img\" "
                     f"aria-label=\"{_e(s.chart['layout']['title']['text'])}\"></div>"
                     "<details open><summary>Data table</summary>" + s.table_html + "</details>")
        else:
            chart = s.table_html
        parts.append(f"<section><h2>{_e(s.title)}</h2>{chart}</section>")
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{_e(data['title'])}</title><style>{CSS}</style></head><body>"
        f"<h1>{_e(data['title'])}</h1>" + "".join(parts)
        + f"<script type=\"application/json\" id=\"report-data\">{_script_json(data)}</script>"
        + f"<script type=\"application/json\" id=\"chart-specs\">{_script_json(specs)}</script>"
        + f"<script>{plotly_js()}</script><script>{JS}</script></body></html>\n"
    )


# --- from the database ------------------------------------------------------------------------------------------


async def load_data(store: Any, run_id: str) -> dict[str, Any]:
    """The report data of a stored run (an ORG_EVAL run → ``evaluation``, otherwise ``research``). Raises KeyError
    for an unknown run."""
    from services.orchestrator.reports.tables import item_record, run_record

    run = await store.get_run(run_id)
    if run is None:
        raise KeyError(run_id)
    if run.kind == "org_eval":
        from services.orchestrator.reports.visibility import build_report, iter_question_runs, report_dict

        rep = await build_report(store, run_id)
        qrs = [r async for r in iter_question_runs(store, run_id)]
        return evaluation_data(report_dict(rep), qrs)
    totals = await store.run_totals(run_id)
    items = [item_record(it) async for it in store.iter_items(run_id)]
    return research_data(run_record(run, totals), items)


async def write_html(store: Any, run_id: str, out: Path | IO[str]) -> int:
    """Write the HTML report of a stored run to ``out`` (a path: written whole, then renamed into place). Returns
    its size in bytes (UTF-8)."""
    return save_html(render_html(await load_data(store, run_id)), out)


def save_html(text: str, out: Path | IO[str]) -> int:
    """Write ``text`` to ``out`` (a path: written whole, then renamed into place). Returns its UTF-8 size."""
    if isinstance(out, Path):
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    else:
        out.write(text)
    return len(text.encode("utf-8"))


__all__ = ["RENDERERS", "Section", "diff_data", "diff_html", "evaluation_data", "funnel_sections", "history_data",
           "history_html", "load_data", "plotly_js", "render_html", "research_data", "write_html"]
