"""The AI-visibility report with intervals, rank histograms and the source funnel (issue 14 items 3, 6, 7), on a
real store (SQLite file, and PostgreSQL when reachable): an ORG_EVAL run of 8 questions × 2 models × 2 locations ×
3 samples is stored through the store's own API (``EvalStore.add_matrix`` / ``claim_items`` / ``record_answer`` /
``complete``) with known answers, and the report (``build_report`` / ``report_dict`` / ``output_report``, and the
``vantage report`` CLI) is checked against reference computations: statsmodels' Wilson interval per cell and
scipy's bootstrap (the same generator and seed) over questions for the aggregates, to 1e-9; the rank histogram and
the funnel against counts made here from the rows stored."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from services.orchestrator.app.measurement import RANK_BUCKETS, rank_bucket
from services.orchestrator.app.measurement import Answer as MAnswer
from services.orchestrator.reports.visibility import build_report, output_report, report_dict
from services.orchestrator.store import Store
from services.orchestrator.store.eval_repo import Answer, EvalStore, Evaluation

TOL = 1e-9
ROOT = Path(__file__).resolve().parents[2]
ORG, ORG_DOMAIN = "Acme", "acme.com"
MODELS, LOCATIONS, SAMPLES = ["gpt-x", "claude-y"], ["US", "GB"], 3
QUESTIONS = [f"Which vendor is best for use case {i}?" for i in range(1, 9)]
#: url → (owned, competitor, competitor name) as the extraction service flags a cited URL of that domain.
CITABLE = {
    "https://docs.acme.com/guide": (True, False, ""),
    "https://www.globex.com/pricing": (False, True, "Globex"),
    "https://en.wikipedia.org/wiki/Widgets": (False, False, ""),
    "https://news.example.co.uk/story": (False, False, ""),
}
#: Retrieved-only sources (links_attached) never cited anywhere in the run.
ATTACHED_ONLY = ["https://blog.initech.io/post", "https://reddit.com/r/widgets", "https://globex.com/blog"]
DOMAIN = {"https://docs.acme.com/guide": "acme.com", "https://www.globex.com/pricing": "globex.com",
          "https://en.wikipedia.org/wiki/Widgets": "wikipedia.org",
          "https://news.example.co.uk/story": "example.co.uk", "https://blog.initech.io/post": "initech.io",
          "https://reddit.com/r/widgets": "reddit.com", "https://globex.com/blog": "globex.com"}
#: initech.io is retrieved only (the extractor never saw it): only its stem ties it to "Initech", and stem matching is
#: the extraction service's identity rule (issue 13), so the report counts it third-party; reddit.com is nobody's.
CLASS = {"acme.com": "owned", "globex.com": "competitor", "wikipedia.org": "third_party",
         "example.co.uk": "third_party", "initech.io": "third_party", "reddit.com": "third_party"}


@dataclass
class Stored:
    """What was stored for one answered question run."""

    question: str
    qseq: int
    model: str
    location: str
    sample: int
    mentioned: bool
    rank: int
    org_mentions: int
    competitor_mentions: int
    sentiment: str
    cited: list[str]
    attached: list[str]


async def store_run(store: Store, seed: int = 11) -> tuple[str, list[Stored]]:
    """An ORG_EVAL run with every question run answered and evaluated (one failed, without an answer), values
    drawn from ``default_rng(seed)``; per question a different mention probability, so answers cluster."""
    ev = EvalStore(store)
    run = await store.create_run(kind="org_eval", name="report test", options={
        "org_name": ORG, "org_domain": ORG_DOMAIN, "models": MODELS, "locations": LOCATIONS,
        "known_competitors": ["Globex", "Initech Corp"], "samples": SAMPLES}, status="running")
    matrix = await ev.add_matrix(run.id, QUESTIONS, MODELS, LOCATIONS, samples=SAMPLES)
    assert matrix.items == len(QUESTIONS) * len(MODELS) * len(LOCATIONS) * SAMPLES
    items = await store.claim_items(run.id, "test", 10_000, 300)
    assert len(items) == matrix.items
    rng = np.random.default_rng(seed)
    p_q = rng.uniform(0.1, 0.95, size=len(QUESTIONS))
    stored: list[Stored] = []
    for n, item in enumerate(items):
        st = await ev.load(item.id)
        assert st is not None
        if n == 5:  # one question run failed: no answer, not in the figures
            assert await store.fail_item(item, "provider said no")
            continue
        named = bool(rng.random() < p_q[st.question_seq - 1])
        rank = int(rng.choice([1, 1, 2, 3, 4, 5, 6, 8])) if named else 0
        if named and rng.random() < 0.1:
            rank = 0  # named, but no position
        org_m = int(rng.integers(1, 4)) if named else 0
        comps = [(name, int(r), int(c)) for name, r, c in
                 (("Globex", rng.integers(1, 9), rng.integers(0, 3)), ("Initech", rng.integers(1, 9),
                                                                       rng.integers(0, 2))) if c > 0]
        cited = [u for u in CITABLE if rng.random() < 0.4]
        attached = [u for u in [*CITABLE, *ATTACHED_ONLY] if u not in cited and rng.random() < 0.3]
        sentiment = str(rng.choice(["POSITIVE", "NEUTRAL", "NEGATIVE"])) if named else "UNSPECIFIED"
        ans = Answer(provider="openai", markdown="answer", text="answer", citations=[{"url": u, "title": ""}
                                                                                     for u in cited],
                     search_queries=[], snapshot_id="", cost_usd=0.001, input_tokens=10, output_tokens=20,
                     web_search_calls=1, cached=False, links_attached=[{"url": u, "title": ""} for u in attached])
        assert await ev.record_answer(item, ans, None)
        evaluation = Evaluation(
            mentioned=named, mention_count=org_m, rank=rank, first_offset=0 if named else -1, sentiment=sentiment,
            evidence="", owned_citation_count=sum(CITABLE[u][0] for u in cited), competitors=comps,
            citations=[(i + 1, u, DOMAIN[u], "", "PROVIDER", *CITABLE[u]) for i, u in enumerate(cited)])
        assert await ev.complete(item, evaluation, "ok")
        stored.append(Stored(st.question, st.question_seq, st.model, st.location, st.sample, named, rank, org_m,
                             sum(c for _, _, c in comps), sentiment, cited, attached))
    return run.id, stored


def answers_of(rows: list[Stored]) -> list[MAnswer]:
    return [MAnswer(r.question, r.model, r.location, r.sample, r.mentioned, r.rank or None, r.org_mentions,
                    r.competitor_mentions) for r in rows]


def reference_bootstrap(rows: list[Stored], seed: int, resamples: int = 2000) -> dict[str, tuple[float, float]]:
    """scipy.stats.bootstrap over the questions (sorted), each drawn question bringing all its answers: percentile
    intervals of every figure, resamples whose figure is undefined dropped (NaN-aware percentile)."""
    qs = sorted({r.question for r in rows})
    by_q = {q: [r for r in rows if r.question == q] for q in qs}

    def figure(name: str):
        def stat(idx: np.ndarray) -> float:
            drawn = [a for i in idx for a in by_q[qs[int(i)]]]
            ranks = [a.rank for a in drawn if a.mentioned and a.rank]
            if name == "visibility_rate":
                return sum(a.mentioned for a in drawn) / len(drawn)
            if name == "first_mention_rate":
                return sum(a.mentioned and a.rank == 1 for a in drawn) / len(drawn)
            if name == "share_of_voice":
                brand = sum(a.org_mentions + a.competitor_mentions for a in drawn)
                return sum(a.org_mentions for a in drawn) / brand if brand else float("nan")
            if name == "average_rank":
                return float(np.mean(ranks)) if ranks else float("nan")
            return float(np.median(ranks)) if ranks else float("nan")
        return stat

    out = {}
    for name in ("visibility_rate", "share_of_voice", "first_mention_rate", "average_rank", "median_rank"):
        res = stats.bootstrap((np.arange(len(qs)),), figure(name), n_resamples=resamples, vectorized=False,
                              method="percentile", rng=np.random.default_rng(seed), confidence_level=0.95)
        dist = res.bootstrap_distribution
        if np.isnan(dist).any():
            dist = dist[~np.isnan(dist)]
            lo, hi = np.quantile(dist, [0.025, 0.975])
        else:
            lo, hi = res.confidence_interval.low, res.confidence_interval.high
        out[name] = (float(lo), float(hi))
    return out


@pytest.mark.filterwarnings("ignore::scipy.stats.DegenerateDataWarning")
async def test_report_figures_match_reference(store: Store) -> None:
    run_id, rows = await store_run(store)
    rep = await build_report(store, run_id, seed=3)
    data = report_dict(rep)
    # Existing fields keep their names and values; the intervals sit next to them.
    o = data["overall"]
    assert o["answers"] == len(rows) == data["summary"]["evaluations"] and o["failed"] == 1
    assert o["visibility_rate"] == pytest.approx(sum(r.mentioned for r in rows) / len(rows), abs=TOL)
    for name in ("visibility_rate", "share_of_voice", "first_mention_rate", "average_rank", "median_rank"):
        for suffix in ("", "_ci_low", "_ci_high", "_n", "_method", "_unit"):
            assert f"{name}{suffix}" in o, name + suffix
    assert o["questions"] == len(QUESTIONS) and o["max_answers_per_question"] == len(MODELS) * len(LOCATIONS) * SAMPLES

    # Per cell: the visibility rate's Wilson interval (statsmodels), the cell's answers = 8 questions × 3 samples.
    assert len(data["groups"]) == len(MODELS) * len(LOCATIONS)
    for g in data["groups"]:
        cell = [r for r in rows if r.model == g["model"] and r.location == g["location"]]
        x = sum(r.mentioned for r in cell)
        lo, hi = proportion_confint(x, len(cell), alpha=0.05, method="wilson")
        assert g["visibility_rate_method"] == "wilson" and g["visibility_rate_n"] == len(cell)
        assert g["visibility_rate"] == pytest.approx(x / len(cell), abs=TOL)
        assert g["visibility_rate_ci_low"] == pytest.approx(float(lo), abs=TOL)
        assert g["visibility_rate_ci_high"] == pytest.approx(float(hi), abs=TOL)
        assert g["max_answers_per_question"] == SAMPLES
        ref = reference_bootstrap(cell, seed=3)
        for name in ("share_of_voice", "first_mention_rate", "average_rank", "median_rank"):
            assert g[f"{name}_method"] == "cluster_bootstrap_percentile"
            assert (g[f"{name}_ci_low"], g[f"{name}_ci_high"]) == pytest.approx(ref[name], abs=TOL), name

    # Overall and per model: every figure by the cluster bootstrap over questions (scipy, same seed).
    for agg, subset in ((o, rows), *((next(x for x in data["models"] if x["model"] == mo),
                                      [r for r in rows if r.model == mo]) for mo in MODELS)):
        ref = reference_bootstrap(subset, seed=3)
        for name, (lo, hi) in ref.items():
            assert agg[f"{name}_method"] == "cluster_bootstrap_percentile"
            assert agg[f"{name}_ci_low"] == pytest.approx(lo, abs=TOL), (agg["model"], name)
            assert agg[f"{name}_ci_high"] == pytest.approx(hi, abs=TOL), (agg["model"], name)
        ranks = [r.rank for r in subset if r.mentioned and r.rank]
        assert agg["median_rank"] == pytest.approx(float(np.median(ranks)), abs=TOL)
        assert agg["average_rank"] == pytest.approx(float(np.mean(ranks)), abs=TOL)
        assert agg["first_mention_rate"] == pytest.approx(
            sum(r.mentioned and r.rank == 1 for r in subset) / len(subset), abs=TOL)

    # Sentiment counts (answers naming the org), as before.
    assert o["sentiment"] == {s: sum(r.mentioned and r.sentiment == s for r in rows)
                              for s in ("POSITIVE", "NEUTRAL", "NEGATIVE", "MIXED")}
    m = data["measurement"]
    assert m["seed"] == 3 and m["resamples"] == 2000 and m["answers"] == len(rows)
    assert m["max_samples_per_cell"] == SAMPLES and "Wilson" in m["note"] and "seed 3" in m["note"]


async def test_rank_histogram_and_source_funnel_counts(store: Store) -> None:
    run_id, rows = await store_run(store, seed=5)
    data = report_dict(await build_report(store, run_id))
    assert data["rank_buckets"] == list(RANK_BUCKETS)
    for mo in MODELS:
        want = Counter(rank_bucket(a) for a in answers_of([r for r in rows if r.model == mo]))
        assert data["rank_histograms"][mo] == {b: want.get(b, 0) for b in RANK_BUCKETS}
        assert sum(data["rank_histograms"][mo].values()) == sum(r.model == mo for r in rows)
    # Hand-made buckets: 4 and 5 → "4-5", 6 and 8 → "6+", a name without a position → "named_unranked".
    allh = Counter()
    for r in rows:
        allh["not_named" if not r.mentioned else "named_unranked" if not r.rank else
             str(r.rank) if r.rank <= 3 else "4-5" if r.rank <= 5 else "6+"] += 1
    assert sum((Counter(h) for h in data["rank_histograms"].values()), Counter()) == +allh

    f = data["source_funnel"]
    assert f["answers"] == len(rows) and f["answers_with_retrieved"] == sum(bool(r.attached) for r in rows)
    retrieved, cited = Counter(), Counter()
    for r in rows:
        doms = {DOMAIN[u] for u in r.cited} | {DOMAIN[u] for u in r.attached}
        retrieved.update(doms)
        cited.update({DOMAIN[u] for u in r.cited})
    got = {d["domain"]: d for d in f["domains"]}
    assert set(got) == set(retrieved)
    for dom, n in retrieved.items():
        assert got[dom]["retrieved"] == n and got[dom]["cited"] == cited[dom], dom
        assert got[dom]["cited_share"] == pytest.approx(cited[dom] / n, abs=TOL)
        assert got[dom]["class"] == CLASS[dom], dom
    assert got["globex.com"]["competitor_name"] == "Globex" and got["initech.io"]["competitor_name"] == ""
    assert got["docs.acme.com" if "docs.acme.com" in got else "acme.com"]["class"] == "owned"  # a subdomain
    assert [d["domain"] for d in f["domains"]] == sorted(retrieved, key=lambda d: (-retrieved[d], -cited[d], d))
    # Content gap: per question, the domains some answer retrieved and none cited.
    gaps = {g["question_seq"]: g for g in f["content_gaps"]}
    for seq, q in enumerate(QUESTIONS, start=1):
        qr = [r for r in rows if r.qseq == seq]
        ret = Counter(d for r in qr for d in {DOMAIN[u] for u in r.cited} | {DOMAIN[u] for u in r.attached})
        cit = {DOMAIN[u] for r in qr for u in r.cited}
        want = {d: n for d, n in ret.items() if d not in cit}
        if not want:
            assert seq not in gaps
            continue
        assert gaps[seq]["question"] == q and gaps[seq]["answers"] == len(qr)
        assert {d["domain"]: d["retrieved"] for d in gaps[seq]["domains"]} == want
    # initech.io and reddit.com are never cited by anyone: a gap wherever retrieved.
    assert got["initech.io"]["cited"] == 0 and got["reddit.com"]["cited"] == 0


async def test_seed_determinism_and_table_and_csv(store: Store) -> None:
    run_id, rows = await store_run(store, seed=7)
    a = report_dict(await build_report(store, run_id, seed=42))
    b = report_dict(await build_report(store, run_id, seed=42))
    c = report_dict(await build_report(store, run_id, seed=43))
    assert a == b
    assert a["overall"]["visibility_rate"] == c["overall"]["visibility_rate"]
    assert (a["overall"]["visibility_rate_ci_low"], a["overall"]["average_rank_ci_high"]) != (
        c["overall"]["visibility_rate_ci_low"], c["overall"]["average_rank_ci_high"])

    buf = io.StringIO()
    await output_report(store, run_id, output="table", out=buf, seed=42)
    text = buf.getvalue()
    o = a["overall"]
    # The overall row: "NN % [LL–HH]" with the JSON's numbers.
    want = f"{100 * o['visibility_rate']:.0f} % [{100 * o['visibility_rate_ci_low']:.0f}–" \
           f"{100 * o['visibility_rate_ci_high']:.0f}]"
    assert want in text
    assert f"{o['average_rank']:.1f} [{o['average_rank_ci_low']:.1f}–{o['average_rank_ci_high']:.1f}]" in text
    assert re.search(r"\d+ % \[\d+–\d+\]", text)
    assert "Wilson score interval" in text and "seed 42" in text
    assert f"Sample: {len(rows)} answers to {len(QUESTIONS)} questions, up to {SAMPLES} samples" in text
    for header in ("Visibility", "Share of voice", "Named first", "Avg rank", "Median rank", "#4–5", "#6+",
                   "Not named", "Source funnel", "Content gap", "Cited share", "competitor (Globex)"):
        assert header in text, header

    buf = io.StringIO()
    await output_report(store, run_id, output="csv", out=buf, seed=42)
    recs = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert len(recs) == len(MODELS) * len(LOCATIONS) + len(MODELS) + 1
    last = recs[-1]
    assert last["model"] == "all" and last["location"] == "all"
    for k in ("visibility_rate", "visibility_rate_ci_low", "visibility_rate_ci_high", "median_rank_ci_high",
              "first_mention_rate_ci_low", "share_of_voice_n"):
        assert float(last[k]) == pytest.approx(float(o[k]), abs=TOL), k


def cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VANTAGE_DATABASE_URL": db_url}
    return subprocess.run([sys.executable, "-m", "services.orchestrator.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


async def test_cli_report_seed(store: Store, db_url: str) -> None:
    run_id, _ = await store_run(store, seed=9)
    one = cli(db_url, "report", run_id, "--output", "json", "--seed", "5")
    two = cli(db_url, "report", run_id[:10], "--output", "json", "--seed", "5")
    assert one.returncode == 1, one.stderr  # one question run failed
    assert json.loads(one.stdout) == json.loads(two.stdout)
    assert json.loads(one.stdout)["measurement"]["seed"] == 5
    bad = cli(db_url, "report", run_id, "--seed", "-1")
    assert bad.returncode == 2 and "seed" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


# --- through the real stack -------------------------------------------------------------------------------------


@pytest.mark.integration
async def test_report_of_a_real_sweep(eval_env, knobs) -> None:
    """A small sweep through the real inference / extraction / search services against the sandbox (Bright Data
    ChatGPT, whose records carry ``links_attached``, and an API model): the report's funnel, histogram and cell
    intervals agree with the rows the pipeline stored, whatever the number of samples per cell."""
    from eval_testkit import QUESTIONS as QFILE
    from eval_testkit import members, rows

    from services.extraction.urls import registrable_domain
    from services.orchestrator.app.jobs.evaluation import create_eval_run, read_questions

    _settings, store, orch = eval_env
    knobs({"answer_mention_probability": {"Together AI": 0.6}})
    run, _ = await create_eval_run(orch, org_name="Together AI", org_domain="together.ai",
                                   questions=read_questions(QFILE)[:4], models=["chatgpt", "gpt-4.1"],
                                   locations=["US"], known_competitors=["CoreWeave", "Lambda"], no_cache=True)
    summary = await orch.execute(run.id)
    assert summary.run.status == "completed", summary.run.error
    data = report_dict(await build_report(store, run.id))

    qr = await rows(store, "SELECT q.seq, r.model, r.citations, r.links_attached FROM question_runs r "
                           "JOIN questions q ON q.id = r.question_id WHERE r.run_id = :r AND r.status = 'answered'",
                    r=run.id)
    retrieved, cited, gap = Counter(), Counter(), {}
    for seq, _model, cit, att in qr:
        c = {registrable_domain(x["url"]) for x in (members(cit) if cit else [])}
        a = {registrable_domain(x["url"]) for x in (members(att) if att else [])}
        retrieved.update(c | a)
        cited.update(c)
        g = gap.setdefault(seq, [Counter(), set()])
        g[0].update(c | a)
        g[1] |= c
    f = data["source_funnel"]
    assert f["answers"] == len(qr) > 0
    assert f["answers_with_retrieved"] == sum(att is not None for *_, att in qr)
    assert f["answers_with_retrieved"] > 0  # Bright Data's links_attached
    got = {d["domain"]: d for d in f["domains"]}
    assert {d: (x["retrieved"], x["cited"]) for d, x in got.items()} == {d: (n, cited[d]) for d, n in
                                                                         retrieved.items()}
    flagged = {d: (bool(o), bool(c)) for d, o, c in await rows(
        store, "SELECT domain, max(CASE WHEN owned THEN 1 ELSE 0 END), max(CASE WHEN competitor THEN 1 ELSE 0 END) "
               "FROM org_citations WHERE run_id = :r GROUP BY domain", r=run.id)}
    for d, x in got.items():
        if d == "together.ai" or flagged.get(d, (False, False))[0]:
            assert x["class"] == "owned", d
        elif d in flagged:
            assert x["class"] == ("competitor" if flagged[d][1] else "third_party"), d
    want_gaps = {seq: {d: n for d, n in ret.items() if d not in cit} for seq, (ret, cit) in gap.items()}
    assert {g["question_seq"]: {d["domain"]: d["retrieved"] for d in g["domains"]} for g in f["content_gaps"]} == {
        seq: g for seq, g in want_gaps.items() if g}

    ev = await rows(store, "SELECT r.model, e.mentioned, e.rank FROM org_evals e JOIN question_runs r ON "
                           "r.item_id = e.item_id WHERE e.run_id = :r", r=run.id)
    for model in ("chatgpt", "gpt-4.1"):
        mine = [(bool(mn), int(rk)) for mo, mn, rk in ev if mo == model]
        want = Counter(rank_bucket(MAnswer("q", model, "US", 0, mn, rk or None)) for mn, rk in mine)
        assert data["rank_histograms"][model] == {b: want.get(b, 0) for b in RANK_BUCKETS}
        g = next(x for x in data["groups"] if x["model"] == model)
        x = sum(mn for mn, _ in mine)
        lo, hi = proportion_confint(x, len(mine), alpha=0.05, method="wilson")
        assert (g["visibility_rate_ci_low"], g["visibility_rate_ci_high"]) == pytest.approx((lo, hi), abs=TOL)


def test_evaluate_refuses_a_bad_seed_before_asking(sqlite_url: str, tmp_path: Path) -> None:
    questions = tmp_path / "q.txt"
    questions.write_text("Which vendor is best?\n")
    r = cli(sqlite_url, "evaluate", "--org", ORG, "--questions", str(questions), "--models", "gpt-4.1",
            "--seed", "4294967296")
    assert r.returncode == 2 and "--seed must be in 0..4294967295" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "vantage.db").exists()  # nothing stored, nothing asked
