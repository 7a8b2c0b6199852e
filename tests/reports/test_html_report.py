"""The HTML reports (issue 15): one self-contained file (no network address in any script / stylesheet / font
``src`` or ``href``), a print stylesheet, the vendored plotly.js is the file it claims, the numbers in the HTML are
the JSON report's numbers, a text table behind every chart, and the 160-answer size stays under 5 MB."""

from __future__ import annotations

import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from services.orchestrator.reports import html as hr

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ASSETS = Path(hr.__file__).parent / "html_assets"


class Parsed(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fetches: list[str] = []  # src / href of scripts, stylesheets, fonts, images
        self.scripts: dict[str, str] = {}
        self.styles: list[str] = []
        self.tables = 0
        self.charts: list[str] = []
        self._in: tuple[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "embed") and a.get("src"):
            self.fetches.append(a["src"] or "")
        if tag == "link" and a.get("href"):
            self.fetches.append(a["href"] or "")
        if tag == "script":
            self._in = ("script", a.get("id") or f"anon{len(self.scripts)}")
            self.scripts[self._in[1]] = ""
        if tag == "style":
            self._in = ("style", "")
            self.styles.append("")
        if tag == "table":
            self.tables += 1
        if tag == "div" and "chart" in (a.get("class") or "").split():
            self.charts.append(a.get("id") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in and self._in[0] == "script":
            self.scripts[self._in[1]] += data
        elif self._in:
            self.styles[-1] += data


def parse(text: str) -> Parsed:
    p = Parsed()
    p.feed(text)
    return p


def check_self_contained(text: str) -> Parsed:
    p = parse(text)
    assert not [u for u in p.fetches if re.match(r"\s*(https?:)?//", u, re.I)], p.fetches
    css = "".join(p.styles)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", css, re.I)  # fonts / images from CSS
    assert "@import" not in css
    assert "@media print" in css and "break-before:page" in css
    assert len(p.charts) >= 1 and p.tables >= len(p.charts)  # a text table behind every chart
    return p


def test_vendored_plotly_is_the_claimed_release() -> None:
    data = (ASSETS / hr.PLOTLY_ASSET).read_bytes()
    assert hashlib.sha256(data).hexdigest() == hr.PLOTLY_SHA256
    assert f"plotly.js (basic - minified) v{hr.PLOTLY_VERSION}" in data[:200].decode()
    assert "MIT License" in (ASSETS / "plotly-LICENSE.txt").read_text()


def test_evaluation_html_matches_json_report(runs: Any) -> None:
    text = runs.eval_html.read_text(encoding="utf-8")
    p = check_self_contained(text)
    data = json.loads(p.scripts["report-data"])
    rep = runs.cli("report", runs.eval_id, "--output", "json")
    assert rep.returncode == 0, rep.stderr
    want = json.loads(rep.stdout)
    want["summary"].pop("wall_seconds", None)
    assert data["kind"] == "evaluation"
    assert data["report"] == want
    # The shown figures are the JSON's.
    o = want["overall"]
    assert f"<td>{o['answers']}</td><td>{o['mentioned']}</td>" in text
    for g in want["groups"]:
        if g["visibility_rate"] is not None:
            assert f"<td>{100 * g['visibility_rate']:.1f}%</td>" in text
    for c in o["top_competitors"]:
        assert f"<td>{c['name']}</td><td>{c['answers']}</td><td>{c['mentions']}</td>" in text
    der = data["derived"]
    assert sum(sum(b.values()) for b in der["rank_histogram"].values()) == o["answers"]
    for g in der["groups"]:
        if g["answers"]:
            assert g["low"] <= g["visibility_rate"] <= g["high"]
    assert {d["class"] for d in der["domains"]} <= {"owned", "competitor", "third-party"}
    specs = json.loads(p.scripts["chart-specs"])
    for s in specs:  # titles and axis labels
        assert s["spec"]["layout"]["title"]["text"]
        if s["spec"]["data"][0]["type"] != "pie":
            assert s["spec"]["layout"]["xaxis"]["title"]["text"] and s["spec"]["layout"]["yaxis"]["title"]["text"]
    assert len(specs) == 5


def test_research_html_matches_export(runs: Any) -> None:
    text = runs.research_html.read_text(encoding="utf-8")
    p = check_self_contained(text)
    data = json.loads(p.scripts["report-data"])
    ex = runs.cli("export", runs.research_id, "--format", "json")
    assert ex.returncode == 0, ex.stderr
    want = json.loads(ex.stdout)
    assert data["kind"] == "research"
    assert data["items"] == want["items"]
    assert sum(data["derived"]["tiers"].values()) == len(want["items"]) == 6
    for it in want["items"]:
        for u in it["evidence_urls"]:
            assert f'href="{u}"' in text
    assert 'class="sortable"' in text and 'class="filter"' in text


def test_report_format_usage_errors(runs: Any) -> None:
    r = runs.cli("report", runs.eval_id, "--format", "html")
    assert r.returncode == 2 and "--out" in r.stderr
    r = runs.cli("report", runs.eval_id, "--format", "pdf", "--out", "x")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = runs.cli("evaluate", "--org", "Together AI", "--questions", "questions.txt", "--detach", "--html", "x.html")
    assert r.returncode == 2 and "--html" in r.stderr and not (runs.dir / "x.html").exists()


def test_160_answer_report_is_under_5_mb() -> None:
    """Synthetic 160 question runs (20 questions × 4 models × 2 locations), long evidence spans, every answer NEGATIVE
    (the largest tables): the file stays under 5 MB."""
    models, locs = ["chatgpt", "perplexity", "gpt-5.5", "claude-sonnet-5"], ["US", "GB"]
    qrs = [{"question_seq": q, "question": f"question {q} " + "x" * 150, "model": mo, "location": lo,
            "mentioned": True, "rank": 1 + q % 7, "sentiment": "NEGATIVE", "evidence": "e" * 600}
           for q in range(20) for mo in models for lo in locs]
    comp = [{"name": f"Comp{i}", "answers": 10, "mentions": 20, "average_rank": 2.0, "variants": [f"Comp{i} Inc"]}
            for i in range(10)]
    group = {"answers": 20, "mentioned": 20, "visibility_rate": 1.0}
    rep = {"run_id": "r", "status": "completed", "org": {"name": "Org", "domain": "org.ai"}, "notes": [],
           "summary": {"processed": 160, "evaluations": 160, "citations": 900, "competitors": 10, "cost_usd": 1.0},
           "groups": [{"model": mo, "location": lo, **group} for mo in models for lo in locs],
           "overall": {"answers": 160, "mentioned": 160, "visibility_rate": 1.0, "org_mentions": 300,
                       "competitor_mentions": 400, "share_of_voice": 0.43, "citations": 900,
                       "owned_citation_share": 0.1, "top_competitors": comp,
                       "top_domains": [{"domain": f"d{i}.com", "citations": 90, "owned": 0} for i in range(10)]}}
    text = hr.render_html(hr.evaluation_data(rep, qrs))
    check_self_contained(text)
    assert len(text.encode()) < 5_000_000
