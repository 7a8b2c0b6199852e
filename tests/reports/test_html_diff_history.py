"""The diff, history and source-funnel HTML (issue 15 item 2, issue 14 item 6): self-contained (no network address
in any script / stylesheet / font ``src`` or ``href``), printable, a text table behind every chart, the numbers of
the JSON they are drawn from, moved cells highlighted, under 5 MB — and drawn in headless Chromium like the other
report kinds (tests/reports/test_html_browser.py: skipped with the reason where Chromium is missing, required in CI).

Data: ``vantage diff A B --output json`` of two real sweeps (the session's evaluation and a second one run here) and
of two research runs, by the CLI; a hand-made ``vantage history`` document of the shape that command prints; a
diff of two synthetic sweeps computed by the real measurement code (a move of 0.8 → 0.3 in one cell)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from test_html_browser import Charts, browse, chromium, not_blank  # noqa: F401  (chromium is a fixture)
from test_html_report import check_self_contained, parse

from services.orchestrator.app.diff import RunDiff, diff_companies
from services.orchestrator.app.measurement import Answer, diff_sweeps
from services.orchestrator.reports import html as hr

HISTORY: dict[str, Any] = {
    "org": "Together AI",
    "sweeps": [
        {"run_id": f"run-{i}-0000-0000", "name": f"weekly {i}", "started_at": f"2026-11-{2 + 7 * i:02d}T09:00:00Z",
         "schedule_id": "sched-1", "period": f"2026-W{45 + i}", "samples": 3, "answers": 480,
         "figures": {"visibility_rate": {"value": v, "ci_low": v - 0.06, "ci_high": v + 0.05, "n": 480},
                     "share_of_voice": {"value": 0.2 + i / 100, "ci_low": 0.15, "ci_high": 0.3, "n": 900},
                     "average_rank": {"value": 2.5 - i / 10, "ci_low": 2.0, "ci_high": 3.1, "n": 300}}}
        for i, v in enumerate((0.81, 0.79, 0.55, 0.56))
    ],
    "verdicts": [
        {"from_run": "run-0-0000-0000", "to_run": "run-1-0000-0000", "figure": "visibility_rate",
         "delta": {"value": -0.02, "ci_low": -0.09, "ci_high": 0.05}, "verdict": "within_noise"},
        {"from_run": "run-1-0000-0000", "to_run": "run-2-0000-0000", "figure": "visibility_rate",
         "delta": {"value": -0.24, "ci_low": -0.31, "ci_high": -0.17}, "verdict": "moved_down"},
        {"from_run": "run-2-0000-0000", "to_run": "run-3-0000-0000", "figure": "visibility_rate",
         "delta": {"value": 0.01, "ci_low": -0.06, "ci_high": 0.08}, "verdict": "within_noise"},
        {"from_run": "run-1-0000-0000", "to_run": "run-2-0000-0000", "figure": "share_of_voice",
         "delta": {"value": 0.01, "ci_low": -0.2, "ci_high": 0.2}, "verdict": "insufficient_data"},
    ],
}


def synthetic_diff() -> dict[str, Any]:
    """Two sweeps of 30 questions × 2 cells × 3 samples: cell (gpt-5.5, US) drops from naming the org 80 % of the
    time to 30 %, cell (chatgpt, US) stays at 50 % — through the real diff code."""
    def sweep(p_gpt: float) -> list[Answer]:
        out = []
        for q in range(30):
            for s in range(3):
                k = q * 3 + s
                for model, p in (("gpt-5.5", p_gpt), ("chatgpt", 0.5)):
                    hit = (k * 37 % 100) < p * 100
                    out.append(Answer(question_id=f"q{q}", model=model, location="US", sample=s, mentioned=hit,
                                      rank=1 + k % 3 if hit else None, org_mentions=int(hit), competitor_mentions=2))
        return out

    return RunDiff("org_eval", "aaaaaaaa-1", "bbbbbbbb-2", sweep=diff_sweeps(sweep(0.8), sweep(0.3), seed=1,
                                                                               resamples=400)).to_dict()


def _rows_with_class(text: str, cls: str) -> list[str]:
    return re.findall(rf'<tr class="[^"]*\b{cls}\b[^"]*">(.*?)</tr>', text)


def test_history_html_from_the_history_json_shape() -> None:
    text = hr.history_html(HISTORY)
    p = check_self_contained(text)
    assert json.loads(p.scripts["report-data"])["history"] == HISTORY
    specs = json.loads(p.scripts["chart-specs"])
    assert len(specs) == 3 == len(p.charts)  # one trend chart per figure present
    vis = specs[0]["spec"]
    assert vis["layout"]["title"]["text"].startswith("Visibility rate")
    assert vis["layout"]["xaxis"]["title"]["text"] and vis["layout"]["yaxis"]["title"]["text"]
    lo, hi, line = vis["data"]
    assert lo["y"] == [s["figures"]["visibility_rate"]["ci_low"] for s in HISTORY["sweeps"]]
    assert hi["fill"] == "tonexty" and hi["y"] == [s["figures"]["visibility_rate"]["ci_high"] for s in HISTORY["sweeps"]]
    assert line["y"] == [0.81, 0.79, 0.55, 0.56]
    assert "<td>55.0% [49.0% – 60.0%]</td>" in text  # value [interval] of sweep 2
    moved = _rows_with_class(text, "moved_down")
    assert len(moved) == 1 and "-24.0% [-31.0% – -17.0%]" in moved[0] and "moved_down" in moved[0]
    assert "insufficient_data" in text


def test_history_html_without_sweeps() -> None:
    text = hr.history_html({"org": "Nobody", "sweeps": [], "verdicts": []})
    assert "No sweep of this org yet." in text and "@media print" in text


def test_diff_html_highlights_the_moved_cell() -> None:
    d = synthetic_diff()
    text = hr.diff_html(d)
    p = check_self_contained(text)
    assert json.loads(p.scripts["report-data"])["diff"] == json.loads(json.dumps(d))
    specs = json.loads(p.scripts["chart-specs"])
    assert len(specs) == 5 == len(p.charts)  # one chart per headline figure
    cell = next(c for c in d["cells"] if c["model"] == "gpt-5.5")
    assert cell["visibility_rate_verdict"] == "moved_down"
    vis = specs[0]["spec"]
    a, b, delta = vis["data"]
    i = a["x"].index("gpt-5.5 · US")
    assert (a["y"][i], b["y"][i], delta["y"][i]) == (cell["visibility_rate_a"], cell["visibility_rate_b"],
                                                     cell["visibility_rate_delta"])
    assert delta["text"][i] == "moved_down" and delta["marker"]["line"]["width"][i] == 2
    moved = _rows_with_class(text, "moved_down")
    assert any("gpt-5.5 · US" in r for r in moved)
    want = hr._est("visibility_rate", cell["visibility_rate_delta"], cell["visibility_rate_delta_ci_low"],
                   cell["visibility_rate_delta_ci_high"], signed=True)
    assert f"<td>{want}</td>" in text
    figs = [k[: -len("_verdict")] for k in d["cells"][0] if k.endswith("_verdict")]
    moved = [c[f"{f}_verdict"] for c in d["cells"] for f in figs if c[f"{f}_verdict"].startswith("moved")]
    assert len(re.findall(r'<tr class="moved (moved_up|moved_down)">', text)) == len(moved)  # and no other row


def test_evaluation_funnel_section_from_the_json_source_funnel() -> None:
    funnel = {"answers": 4, "answers_with_retrieved": 3,
              "by_class": {"owned": {"domains": 1, "retrieved": 3, "cited": 2},
                           "competitor": {"domains": 1, "retrieved": 2, "cited": 0},
                           "third_party": {"domains": 1, "retrieved": 4, "cited": 4}},
              "domains": [{"domain": "wiki.org", "retrieved": 4, "cited": 4, "cited_share": 1.0, "class": "third_party",
                           "competitor_name": ""},
                          {"domain": "together.ai", "retrieved": 3, "cited": 2, "cited_share": 2 / 3,
                           "class": "owned", "competitor_name": ""},
                          {"domain": "coreweave.com", "retrieved": 2, "cited": 0, "cited_share": 0.0,
                           "class": "competitor", "competitor_name": "CoreWeave"}],
              "content_gaps": [{"question_seq": 1, "question": "best gpu cloud?", "answers": 2,
                                "domains": [{"domain": "coreweave.com", "retrieved": 2, "class": "competitor"}]}]}
    sections = hr.funnel_sections(funnel)
    assert [s.title for s in sections] == ["Source funnel by domain", "Content gaps: retrieved but never cited"]
    chart = sections[0].chart
    assert chart is not None and chart["layout"]["barmode"] == "overlay"
    by_name = {t["name"]: t for t in chart["data"]}
    assert by_name["owned: retrieved"]["x"] == [3] and by_name["owned: cited"]["x"] == [2]
    assert by_name["competitor: cited"]["x"] == [0] and by_name["third-party: retrieved"]["y"] == ["wiki.org"]
    assert "<td>together.ai</td><td>owned</td><td>3</td><td>2</td><td>66.7%</td>" in sections[0].table_html
    assert "coreweave.com (2, competitor)" in sections[1].table_html


# --- through the CLI, on the session's runs --------------------------------------------------------------------


@pytest.fixture(scope="module")
def pages(runs: Any) -> dict[str, Path]:
    """diff of two evaluation sweeps (the session's and one more run here), diff of the research run with itself:
    HTML files written by the CLI, and the second sweep's id."""
    ev = runs.cli("evaluate", "--org", "Together AI", "--domain", "together.ai", "--questions", "questions.txt",
                  "--models", "chatgpt,gpt-5.5", "--locations", "US,GB", "--competitors", "CoreWeave,Lambda",
                  "--output", "json", "--quiet", "--no-cache")
    assert ev.returncode == 0, ev.stderr
    second = json.loads(ev.stdout)["run_id"]
    out = {"eval_diff": runs.dir / "diff.html", "research_diff": runs.dir / "rdiff.html", "second": Path(second)}
    r = runs.cli("diff", runs.eval_id, second, "--format", "html", "--out", str(out["eval_diff"]))
    assert r.returncode == 0 and "HTML report:" in r.stderr, r.stderr
    r = runs.cli("diff", runs.research_id, runs.research_id, "--format", "html", "--out", str(out["research_diff"]))
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def drawn_pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The hand-made history, the synthetic sweep diff and a research diff (the real company-matching code over
    hand-made rows) as HTML files."""
    d = tmp_path_factory.mktemp("drawn")
    a = [("Lumen Robotics", "lumenrobotics.ai", "WARM", 62, ["https://lumenrobotics.ai/blog"]),
         ("Acme", "acme.com", "COLD", 10, [])]
    b = [("Lumen Robotics", "www.lumenrobotics.ai", "HOT", 88, ["https://lumenrobotics.ai/blog",
                                                              "https://news.example.com/lumen-h100"]),
         ("Acme", "acme.com", "COLD", 12, []), ("Newco", "newco.io", "WATCH", 40, ["https://newco.io/jobs"])]
    research = RunDiff("research", "cccccccc-1", "dddddddd-2", companies=diff_companies(a, b)).to_dict()
    out = {"history": d / "history.html", "eval_diff": d / "diff.html", "research_diff": d / "rdiff.html"}
    out["history"].write_text(hr.history_html(HISTORY), encoding="utf-8")
    out["eval_diff"].write_text(hr.diff_html(synthetic_diff()), encoding="utf-8")
    out["research_diff"].write_text(hr.diff_html(research), encoding="utf-8")
    return out


def test_research_diff_html_highlights_tier_moves(drawn_pages: dict[str, Path]) -> None:
    text = drawn_pages["research_diff"].read_text(encoding="utf-8")
    check_self_contained(text)
    up = _rows_with_class(text, "moved_up")
    assert len(up) == 1 and "WARM → HOT" in up[0] and "+26" in up[0]
    assert 'href="https://news.example.com/lumen-h100"' in up[0]
    assert "<td>new</td>" in text and not _rows_with_class(text, "moved_down")


@pytest.mark.e2e
@pytest.mark.integration
def test_cli_diff_html_equals_the_json(runs: Any, pages: dict[str, Path]) -> None:
    text = pages["eval_diff"].read_text(encoding="utf-8")
    p = check_self_contained(text)
    js = runs.cli("diff", runs.eval_id, str(pages["second"]), "--output", "json")
    assert js.returncode == 0, js.stderr
    assert json.loads(p.scripts["report-data"])["diff"] == json.loads(js.stdout)
    assert len(text.encode()) < 5_000_000
    rt = pages["research_diff"].read_text(encoding="utf-8")
    rp = check_self_contained(rt)
    data = json.loads(rp.scripts["report-data"])["diff"]
    assert data["kind"] == "research" and len(data["companies"]) == 6
    assert all(c["tier_change"] == "same" for c in data["companies"])
    assert 'class="sortable"' in rt and 'class="filter"' in rt


@pytest.mark.e2e
@pytest.mark.integration
def test_cli_diff_format_usage_errors(runs: Any) -> None:
    r = runs.cli("diff", runs.eval_id, runs.eval_id, "--format", "html")
    assert r.returncode == 2 and "--out" in r.stderr
    r = runs.cli("diff", runs.eval_id, runs.eval_id, "--format", "pdf", "--out", "x.html")
    assert r.returncode == 2 and "Traceback" not in r.stderr and not (runs.dir / "x.html").exists()


@pytest.mark.e2e
@pytest.mark.integration
def test_evaluation_html_draws_the_source_funnel(runs: Any) -> None:
    text = runs.eval_html.read_text(encoding="utf-8")
    p = parse(text)
    rep = json.loads(p.scripts["report-data"])["report"]
    funnel = rep.get("source_funnel")
    if funnel is None:
        pytest.skip("the JSON report has no source_funnel (reports/visibility.py does not provide it)")
    specs = json.loads(p.scripts["chart-specs"])
    chart = next(s["spec"] for s in specs if s["spec"]["layout"]["title"]["text"].startswith("Source funnel"))
    drawn = {(y, x) for t in chart["data"] if t["name"].endswith(": retrieved") for y, x in zip(t["y"], t["x"],
                                                                                             strict=True)}
    assert drawn == {(d["domain"], d["retrieved"]) for d in funnel["domains"][:hr.FUNNEL_CHART_DOMAINS]}
    for d in funnel["domains"]:
        assert f"<td>{d['domain']}</td><td>{d['class'].replace('_', '-')}</td><td>{d['retrieved']}</td>" \
               f"<td>{d['cited']}</td>" in text
    # the API model's answers (gpt-5.5, OpenAI Responses) report retrieved-but-not-cited sources now
    assert funnel["answers_with_retrieved"] > 0


class Marks(Charts):
    """:class:`Charts`, also counting scatter marks (``path.point`` markers, ``path.js-line`` lines, ``path.js-fill``
    bands) that draw something."""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        super().handle_starttag(tag, attrs)
        a = dict(attrs)
        cur = next((c for c, _ in reversed(self._stack) if c), None)
        own = set((a.get("class") or "").split())
        if cur and tag == "path" and own & {"point", "js-line", "js-fill"} and re.search(r"[vhlaLM]", a.get("d") or ""):
            self.charts[cur]["marks"] += 1


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["eval_diff", "research_diff", "history"])
def test_diff_and_history_render_in_chromium(kind: str, drawn_pages: dict[str, Path], chromium: str,  # noqa: F811
                                            tmp_path: Path) -> None:
    page = drawn_pages[kind]
    dom = browse(chromium, page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    p = Marks()
    p.feed(dom.stdout)
    want = len(json.loads(parse(page.read_text(encoding="utf-8")).scripts["chart-specs"]))
    assert want >= 1 and p.drawn == str(want), "Plotly.newPlot did not resolve for every chart"
    assert len(p.charts) == want
    for cid, c in p.charts.items():
        assert c["svgs"] and all(w > 0 and h > 0 for w, h in c["svgs"]), (cid, c)
        assert c["marks"] > 0, (cid, c)
    shot = tmp_path / f"report-{kind}.png"
    r = browse(chromium, page, f"--screenshot={shot}", "--window-size=1100,1800")
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    colours, inked = not_blank(shot)
    assert colours >= 8 and inked > 0.02, (colours, inked)


@pytest.mark.e2e
@pytest.mark.integration
def test_cli_history_html_equals_the_json(runs: Any, pages: dict[str, Path]) -> None:
    """Two sweeps of the org (the session's evaluation and the one ``pages`` ran): ``vantage history --format html``
    draws the document ``--output json`` prints, one trend chart per figure."""
    out = runs.dir / "history-cli.html"
    r = runs.cli("history", "--org", "Together AI", "--format", "html", "--out", str(out))
    assert r.returncode == 0 and "HTML report:" in r.stderr, r.stderr
    js = runs.cli("history", "--org", "Together AI", "--output", "json")
    assert js.returncode == 0, js.stderr
    want = json.loads(js.stdout)
    assert len(want["sweeps"]) >= 2
    p = check_self_contained(out.read_text(encoding="utf-8"))
    assert json.loads(p.scripts["report-data"])["history"] == want
    assert len(json.loads(p.scripts["chart-specs"])) == len({f for s in want["sweeps"] for f in s["figures"]})
    r = runs.cli("history", "--org", "Together AI", "--format", "html")
    assert r.returncode == 2 and "--out" in r.stderr
