"""Self-contained HTML reports (``vantage report RUN_ID --format html --out report.html``, ``vantage evaluate …
--html report.html``, ``make demo-eval``): ONE file with the data, the styles and the chart library inline — nothing
is fetched when it is opened (no ``src``/``href`` to a network address), it prints (a print stylesheet, a page break
between sections), and a text table stands behind every chart.

Report kinds (:data:`RENDERERS`, keyed by the ``kind`` of :func:`report_data`): ``evaluation`` (an ORG_EVAL run)
and ``research`` (a research run). A diff or history report plugs in as another kind: a function building its data
dict (``{"kind": ..., "title": ..., ...}``) and a renderer returning its sections (:class:`Section`).

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


def _table(headers: list[str], rows: list[list[Any]], *, cls: str = "", caption: str = "") -> str:
    head = "".join(f"<th scope=\"col\">{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c if isinstance(c, Raw) else _e(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    return f"<table class=\"{cls}\">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Raw(str):
    """Already-escaped HTML for a table cell."""


def _layout(title: str, x: str, y: str, **kw: Any) -> dict[str, Any]:
    return {"title": {"text": title}, "xaxis": {"title": {"text": x}, "automargin": True},
            "yaxis": {"title": {"text": y}, "automargin": True}, "colorway": list(OKABE_ITO),
            "margin": {"t": 50, "l": 60, "r": 20, "b": 60}, "height": 380, **kw}


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
    out.append(Section("Cited domains", {
        "data": [{"type": "bar", "orientation": "h", "name": k,
                  "y": [x["domain"] for x in dom if x["class"] == k][::-1],
                  "x": [x["citations"] for x in dom if x["class"] == k][::-1],
                  "marker": {"color": OKABE_ITO[[2, 5, 1][i]]}} for i, k in enumerate(classes)],
        "layout": _layout("Citations by domain (owned / competitor / third-party)", "citations", "domain",
                          barmode="stack", yaxis={"title": {"text": "domain"}, "automargin": True,
                                                   "categoryorder": "total ascending"})},
        _table(["Domain", "Citations", "Class"], [[x["domain"], x["citations"], x["class"]] for x in dom],
               caption=f"{o['citations']} citations, owned share {_pct(o['owned_citation_share'])}")))
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


#: Report kind → its sections. A diff or history report adds its renderer here.
RENDERERS: dict[str, Callable[[dict[str, Any]], list[Section]]] = {
    "evaluation": evaluation_sections,
    "research": research_sections,
}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#111;
padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;border-bottom:1px solid #ccc;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem;width:100%}
th,td{border:1px solid #ccc;padding:.25rem .45rem;text-align:left;vertical-align:top}
th{background:#f0f0f0}table.sortable th{cursor:pointer}caption{text-align:left;font-weight:600;padding:.3rem 0}
.chart{min-height:380px}.note{color:#555}details{margin:.4rem 0}a{color:#0072B2;word-break:break-all}
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


__all__ = ["RENDERERS", "Section", "evaluation_data", "load_data", "plotly_js", "render_html", "research_data",
           "write_html"]
