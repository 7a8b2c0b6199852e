"""services/orchestrator/app/measurement.py (issue 14): the interval code against reference implementations (statsmodels,
scipy, and a straightforward loop re-implementation of the cluster bootstrap) to 1e-9, properties of the intervals,
determinism given a seed, and the diff verdicts on simulated sweeps with known true rates."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    samplesize_proportions_2indep_onetail,
)

from services.orchestrator.app.measurement import (
    RANK_BUCKETS,
    Answer,
    Estimate,
    cluster_bootstrap,
    diff_fields,
    diff_sweeps,
    format_estimate,
    methods_note,
    newcombe_interval,
    rank_histogram,
    samples_needed_two_means,
    samples_needed_two_proportions,
    summarize,
    summary_fields,
    wilson,
    wilson_interval,
)

TOL = 1e-9


def sweep(p: float, questions: int, samples: int, seed: int, *, models: tuple[str, ...] = ("gpt",),
          locations: tuple[str, ...] = ("US",), version: str = "v1", spread: float = 0.0) -> list[Answer]:
    """A simulated sweep: each answer names the org with probability p (per question p ± ``spread``, so a
    question's answers cluster), at a random rank 1..7, with random brand mentions."""
    rng = np.random.default_rng(seed)
    out = []
    for q in range(questions):
        pq = min(1.0, max(0.0, p + rng.uniform(-spread, spread)))
        for m in models:
            for loc in locations:
                for k in range(samples):
                    named = bool(rng.random() < pq)
                    rank = int(rng.integers(1, 8)) if named else None
                    org = int(rng.integers(1, 4)) if named else 0
                    out.append(Answer(f"q{q:03d}", m, loc, k, named, rank, org, int(rng.integers(0, 5)),
                                      "POSITIVE" if named else "", version))
    return out


# --- closed forms against statsmodels ---------------------------------------------------------------------------


@pytest.mark.parametrize("confidence", [0.90, 0.95, 0.99])
def test_wilson_matches_statsmodels(confidence: float) -> None:
    for n in (1, 2, 3, 7, 25, 50, 100, 999):
        for x in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            lo, hi = wilson_interval(x, n, confidence)
            ref_lo, ref_hi = proportion_confint(x, n, alpha=1 - confidence, method="wilson")
            assert lo == pytest.approx(float(ref_lo), abs=TOL)
            assert hi == pytest.approx(float(ref_hi), abs=TOL)


def test_newcombe_matches_statsmodels() -> None:
    cases = [(7, 20, 3, 25), (0, 10, 10, 10), (5, 5, 0, 7), (1, 1, 0, 1), (24, 30, 9, 30), (50, 100, 50, 100)]
    for xa, na, xb, nb in cases:
        lo, hi = newcombe_interval(xa, na, xb, nb)
        # statsmodels' difference is count1/nobs1 − count2/nobs2; ours is B − A.
        ref_lo, ref_hi = confint_proportions_2indep(xb, nb, xa, na, method="newcomb", compare="diff")
        assert lo == pytest.approx(float(ref_lo), abs=TOL)
        assert hi == pytest.approx(float(ref_hi), abs=TOL)


def test_sample_size_two_proportions_matches_statsmodels() -> None:
    for p1, p2 in [(0.8, 0.3), (0.5, 0.3), (0.0, 0.2), (0.9, 0.7), (0.45, 0.5)]:
        ours = samples_needed_two_proportions(p1, p2)
        ref = samplesize_proportions_2indep_onetail(diff=p1 - p2, prop2=p2, power=0.8, alpha=0.05)
        assert ours == pytest.approx(float(ref), rel=TOL)
    assert samples_needed_two_proportions(0.4, 0.4) == math.inf


def test_sample_size_two_means_formula() -> None:
    za, zb = stats.norm.ppf(0.975), stats.norm.ppf(0.8)
    assert samples_needed_two_means(2.0, 1.0) == pytest.approx(2 * (za + zb) ** 2 * 4.0, rel=TOL)
    assert samples_needed_two_means(2.0, 0.0) == math.inf


# --- the cluster bootstrap against references -------------------------------------------------------------------


def test_bootstrap_with_one_answer_per_question_matches_scipy() -> None:
    """One answer per question: the cluster bootstrap is the ordinary bootstrap, and it makes the same draws as
    scipy.stats.bootstrap with the same generator (percentile method)."""
    rows = sweep(0.6, 40, 1, seed=11)
    ours = cluster_bootstrap(rows, resamples=2000, seed=7)
    named = np.array([a.mentioned for a in rows], dtype=float)
    ref = stats.bootstrap((named,), np.mean, n_resamples=2000, method="percentile",
                          rng=np.random.default_rng(7), vectorized=True)
    assert ours["visibility_rate"].value == pytest.approx(named.mean(), abs=TOL)
    assert ours["visibility_rate"].ci_low == pytest.approx(ref.confidence_interval.low, abs=TOL)
    assert ours["visibility_rate"].ci_high == pytest.approx(ref.confidence_interval.high, abs=TOL)
    first = np.array([a.position == 1 for a in rows], dtype=float)
    ref = stats.bootstrap((first,), np.mean, n_resamples=2000, method="percentile",
                          rng=np.random.default_rng(7), vectorized=True)
    assert ours["first_mention_rate"].ci_low == pytest.approx(ref.confidence_interval.low, abs=TOL)
    assert ours["first_mention_rate"].ci_high == pytest.approx(ref.confidence_interval.high, abs=TOL)


def _reference_stats(rows: list[Answer]) -> dict[str, float]:
    """Each figure computed the obvious way from a list of answers (NaN when undefined)."""
    pos = [a.position for a in rows if a.position is not None]
    brand = sum(a.org_mentions + a.competitor_mentions for a in rows)
    return {
        "visibility_rate": sum(a.mentioned for a in rows) / len(rows) if rows else math.nan,
        "share_of_voice": sum(a.org_mentions for a in rows) / brand if brand else math.nan,
        "first_mention_rate": sum(a.position == 1 for a in rows) / len(rows) if rows else math.nan,
        "average_rank": float(np.mean(pos)) if pos else math.nan,
        "median_rank": float(np.median(pos)) if pos else math.nan,
    }


def _reference_interval(values: list[float]) -> tuple[float, float]:
    v = np.array([x for x in values if not math.isnan(x)])
    return float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975))


def test_cluster_bootstrap_matches_a_loop_reimplementation() -> None:
    """K samples per question, uneven clusters (some answers dropped), clustered rates: every figure, median
    included, agrees with resampling question ids in a Python loop (same seed, same draws)."""
    rows = sweep(0.5, 23, 3, seed=5, spread=0.4)
    rows = [a for i, a in enumerate(rows) if i % 7 != 3]  # uneven clusters, as after failures
    resamples, seed = 500, 42
    ours = cluster_bootstrap(rows, resamples=resamples, seed=seed)

    ids = sorted({a.question_id for a in rows})
    by_q = {q: [a for a in rows if a.question_id == q] for q in ids}
    draws = np.random.default_rng(seed).integers(0, len(ids), size=(resamples, len(ids)))
    boot: dict[str, list[float]] = {name: [] for name in ours}
    for row in draws:
        resampled = [a for i in row for a in by_q[ids[i]]]
        for name, v in _reference_stats(resampled).items():
            boot[name].append(v)
    point = _reference_stats(rows)
    for name, est in ours.items():
        lo, hi = _reference_interval(boot[name])
        assert est.value == pytest.approx(point[name], abs=TOL), name
        assert est.ci_low == pytest.approx(lo, abs=TOL), name
        assert est.ci_high == pytest.approx(hi, abs=TOL), name
        assert est.clusters == len(ids)
        assert est.method == "cluster_bootstrap_percentile"


def test_paired_diff_bootstrap_matches_a_loop_reimplementation() -> None:
    a = sweep(0.7, 12, 2, seed=1, spread=0.2)
    b = sweep(0.4, 12, 2, seed=2, spread=0.2)
    resamples, seed = 400, 3
    d = diff_sweeps(a, b, resamples=resamples, seed=seed)
    ids = sorted({x.question_id for x in a})
    qa = {q: [x for x in a if x.question_id == q] for q in ids}
    qb = {q: [x for x in b if x.question_id == q] for q in ids}
    draws = np.random.default_rng(seed).integers(0, len(ids), size=(resamples, len(ids)))
    deltas: dict[str, list[float]] = {name: [] for name in d.overall.figures}
    for row in draws:
        sa = _reference_stats([x for i in row for x in qa[ids[i]]])
        sb = _reference_stats([x for i in row for x in qb[ids[i]]])
        for name in deltas:
            deltas[name].append(sb[name] - sa[name])
    for name, fd in d.overall.figures.items():
        lo, hi = _reference_interval(deltas[name])
        assert fd.delta.method == "paired_cluster_bootstrap_percentile"
        assert fd.delta.ci_low == pytest.approx(lo, abs=TOL), name
        assert fd.delta.ci_high == pytest.approx(hi, abs=TOL), name
    # the cell's visibility rate: Wilson on each side, Newcombe for the delta
    cell = d.cells[0].figures["visibility_rate"]
    xa, xb = sum(x.mentioned for x in a), sum(x.mentioned for x in b)
    assert (cell.a.method, cell.delta.method) == ("wilson", "newcombe_hybrid_score")
    ref = confint_proportions_2indep(xb, len(b), xa, len(a), method="newcomb", compare="diff")
    assert (cell.delta.ci_low, cell.delta.ci_high) == pytest.approx((float(ref[0]), float(ref[1])), abs=TOL)


def test_bootstrap_is_deterministic_given_a_seed() -> None:
    rows = sweep(0.5, 15, 3, seed=9, spread=0.3)
    assert cluster_bootstrap(rows, seed=1) == cluster_bootstrap(rows, seed=1)
    assert summarize(rows, seed=1) == summarize(rows, seed=1)
    assert diff_sweeps(rows, sweep(0.4, 15, 3, seed=10), seed=1) == diff_sweeps(rows, sweep(0.4, 15, 3, seed=10),
                                                                                 seed=1)
    assert cluster_bootstrap(rows, seed=1)["visibility_rate"] != cluster_bootstrap(rows, seed=2)["visibility_rate"]


# --- properties ---------------------------------------------------------------------------------------------------


@given(st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
       st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_wilson_contains_the_estimate_and_stays_in_0_1(xn: tuple[int, int], confidence: float) -> None:
    x, n = xn
    lo, hi = wilson_interval(x, n, confidence)
    assert 0.0 <= lo <= x / n <= hi <= 1.0
    assert lo < hi


@given(st.integers(1, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))), st.integers(2, 20))
def test_wilson_narrows_with_n(xn: tuple[int, int], k: int) -> None:
    x, n = xn
    lo, hi = wilson_interval(x, n)
    klo, khi = wilson_interval(k * x, k * n)
    assert khi - klo < hi - lo


@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
       st.integers(1, 300).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_newcombe_contains_the_difference(a: tuple[int, int], b: tuple[int, int]) -> None:
    lo, hi = newcombe_interval(a[0], a[1], b[0], b[1])
    assert -1.0 <= lo <= b[0] / b[1] - a[0] / a[1] <= hi <= 1.0


@given(st.lists(st.tuples(st.integers(0, 7), st.booleans(), st.integers(0, 6), st.integers(0, 3),
                          st.integers(0, 3)), min_size=1, max_size=40), st.integers(0, 2**32 - 1))
def test_bootstrap_intervals_contain_the_estimate_within_bounds(raw: list[tuple[int, bool, int, int, int]],
                                                                seed: int) -> None:
    rows = [Answer(f"q{q}", "m", "US", i, named, rank or None, org if named else 0, comp)
            for i, (q, named, rank, org, comp) in enumerate(raw)]
    for name, est in cluster_bootstrap(rows, resamples=200, seed=seed).items():
        if est.value is None:
            assert est.ci_low is None and est.ci_high is None
            continue
        assert est.ci_low is not None and est.ci_high is not None
        # a percentile interval need not contain the point estimate of a ratio, but it stays in the range
        if name.endswith("_rate") or name == "share_of_voice":
            assert 0.0 <= est.ci_low <= est.ci_high <= 1.0
        else:
            assert 1.0 <= est.ci_low <= est.ci_high <= 6.0


def test_bootstrap_interval_narrows_with_more_questions() -> None:
    few = cluster_bootstrap(sweep(0.5, 10, 3, seed=4), seed=0)["visibility_rate"]
    many = cluster_bootstrap(sweep(0.5, 160, 3, seed=4), seed=0)["visibility_rate"]
    assert few.ci_low is not None and few.ci_high is not None and many.ci_low is not None
    assert many.ci_high is not None
    assert many.ci_high - many.ci_low < (few.ci_high - few.ci_low) / 2


# --- verdicts -----------------------------------------------------------------------------------------------------


def test_a_true_rate_falling_from_0_8_to_0_3_is_moved_down() -> None:
    d = diff_sweeps(sweep(0.8, 30, 3, seed=21), sweep(0.3, 30, 3, seed=22))
    for cell in (d.cells[0], d.overall):
        vis = cell.figures["visibility_rate"]
        assert vis.verdict == "moved_down", vis.reason
        assert vis.delta.value is not None and vis.delta.ci_high is not None and vis.delta.ci_high < 0
        assert vis.needed_n is None


def test_a_rising_rate_is_moved_up() -> None:
    d = diff_sweeps(sweep(0.3, 30, 3, seed=23), sweep(0.8, 30, 3, seed=24))
    assert d.overall.figures["visibility_rate"].verdict == "moved_up"


def test_an_unchanged_rate_is_within_noise() -> None:
    d = diff_sweeps(sweep(0.5, 40, 5, seed=31), sweep(0.5, 40, 5, seed=32))
    for cell in (d.cells[0], d.overall):
        vis = cell.figures["visibility_rate"]
        assert vis.verdict == "within_noise", vis.reason
        assert vis.needed_n is not None and vis.needed_n <= vis.delta.n
        assert vis.delta.ci_low is not None and vis.delta.ci_high is not None
        assert vis.delta.ci_low <= 0 <= vis.delta.ci_high


def test_k1_with_few_questions_is_insufficient_data_with_the_number_needed() -> None:
    d = diff_sweeps(sweep(0.8, 3, 1, seed=41), sweep(0.3, 3, 1, seed=42))
    for cell in (d.cells[0], d.overall):
        assert cell.questions == 3
        for name, fd in cell.figures.items():
            assert fd.verdict == "insufficient_data", name
        vis = cell.figures["visibility_rate"]
        assert vis.needed_n is not None and vis.needed_n > vis.delta.n
        assert vis.needed_for is not None and vis.unit == "answers"
        assert "at least 5 needed" in vis.reason


def test_enough_questions_but_too_few_samples_says_how_many() -> None:
    # 8 questions × 1 sample: a large but non-significant move → insufficient_data, N > n
    a = [Answer(f"q{i}", "m", "US", 0, i < 5) for i in range(8)]
    b = [Answer(f"q{i}", "m", "US", 0, i < 3) for i in range(8)]
    vis = diff_sweeps(a, b).cells[0].figures["visibility_rate"]
    assert vis.verdict == "insufficient_data"
    lo, hi = newcombe_interval(5, 8, 3, 8)
    assert lo < 0 < hi
    assert vis.needed_n is not None and vis.needed_n >= math.ceil(samples_needed_two_proportions(5 / 8, 3 / 8))
    assert vis.needed_n > 8


def test_common_basket_and_model_version_flag() -> None:
    a = sweep(0.6, 10, 2, seed=51, models=("gpt", "claude"), version="gpt-5-2026-01")
    b = sweep(0.6, 12, 2, seed=52, models=("gpt", "claude"), version="gpt-5-2026-03")
    b = [x for x in b if not (x.model == "claude" and x.question_id == "q000")]
    b = [Answer(x.question_id, x.model, x.location, x.sample, x.mentioned, x.rank, x.org_mentions,
                x.competitor_mentions, x.sentiment, x.model_version if x.model == "gpt" else "gpt-5-2026-01")
         for x in b]
    a = [Answer(x.question_id, x.model, x.location, x.sample, x.mentioned, x.rank, x.org_mentions,
                x.competitor_mentions, x.sentiment, "" if x.model == "claude" else x.model_version) for x in a]
    d = diff_sweeps(a, b)
    assert d.basket == 10 * 2 - 1  # q000 × claude only in A; q010, q011 only in B
    assert (d.only_a, d.only_b) == (1, 2 * 2)
    assert [c.model for c in d.model_changes] == ["gpt"]  # claude: no version reported in A → not a change
    assert d.model_changes[0].versions_a == ("gpt-5-2026-01",)
    assert d.model_changes[0].versions_b == ("gpt-5-2026-03",)
    flags = {c.model: c.model_version_changed for c in d.cells}
    assert flags == {"claude": False, "gpt": True}
    assert d.overall.model_version_changed
    assert {c.model: c.questions for c in d.cells} == {"claude": 9, "gpt": 10}


# --- one sweep: shapes, histogram, serialisation, formatting ------------------------------------------------------


def test_summary_cells_and_serialised_field_names() -> None:
    rows = sweep(0.6, 12, 3, seed=61, models=("claude", "gpt"), locations=("DE", "US"))
    s = summarize(rows, resamples=300, seed=4)
    assert [(c.model, c.location) for c in s.cells] == [("claude", "DE"), ("claude", "US"), ("gpt", "DE"),
                                                       ("gpt", "US")]
    assert [c.model for c in s.models] == ["claude", "gpt"]
    cell = s.cells[0]
    named = sum(a.mentioned for a in rows if (a.model, a.location) == ("claude", "DE"))
    assert cell.figures["visibility_rate"] == wilson(named, 36, clusters=12)
    assert (cell.answers, cell.questions, cell.max_samples) == (36, 12, 3)
    assert cell.sentiment == {"POSITIVE": named}
    assert s.overall.figures["visibility_rate"].method == "cluster_bootstrap_percentile"
    rec = summary_fields(s)[0]
    for name in ("visibility_rate", "share_of_voice", "average_rank", "median_rank", "first_mention_rate"):
        assert {name, f"{name}_ci_low", f"{name}_ci_high", f"{name}_n", f"{name}_method"} <= rec.keys()
    assert len(summary_fields(s)) == 4 + 2 + 1
    assert "2,000" not in methods_note(s) and "300 resamples, seed 4" in methods_note(s)
    drec = diff_fields(diff_sweeps(rows, rows, resamples=100))[-1]
    assert {"visibility_rate_delta_ci_low", "visibility_rate_verdict", "visibility_rate_needed_n",
            "visibility_rate_a_ci_high"} <= drec.keys()


def test_rank_histogram_buckets() -> None:
    ranks = [1, 1, 2, 3, 4, 5, 6, 9, None]
    rows = [Answer(f"q{i}", "gpt", "US", 0, True, r) for i, r in enumerate(ranks)]
    rows += [Answer("q99", "gpt", "US", 0, False), Answer("q1", "claude", "US", 0, False, 3)]
    h = rank_histogram(rows)
    assert list(h) == ["claude", "gpt"]
    assert tuple(h["gpt"]) == RANK_BUCKETS
    assert h["gpt"] == {"1": 2, "2": 1, "3": 1, "4-5": 2, "6+": 2, "not_named": 1, "named_unranked": 1}
    assert h["claude"]["not_named"] == 1 and sum(h["claude"].values()) == 1  # a rank without a mention is ignored


def test_format_estimate() -> None:
    assert format_estimate(Estimate(0.81, 0.74, 0.87, 100, "wilson")) == "81 % [74–87]"
    assert format_estimate(Estimate(2.34, 1.8, 2.91, 40, "b", unit="named answers")) == "2.3 [1.8–2.9]"
    assert format_estimate(Estimate(None, None, None, 0, "wilson")) == "—"
    assert format_estimate(Estimate(0.5, None, None, 3, "wilson")) == "50 %"
    assert format_estimate(Estimate(-0.001, -0.004, 0.2, 3, "n")) == "0 % [0–20]"
    assert format_estimate(Estimate(0.0, -1.0, 1.0, 3, "b", unit="named answers")) == "0.0 [-1.0–1.0]"
    assert format_estimate(Estimate(0.05, -0.03, 0.12, 9, "n"), signed=True) == "+5 % [-3 to +12]"
    assert format_estimate(Estimate(-0.49, -0.6, -0.35, 9, "n"), signed=True) == "-49 % [-60 to -35]"


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError):
        Answer("q", "m", "US", rank=-1)
    with pytest.raises(ValueError):
        Answer("q", "m", "US", org_mentions=-1)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    with pytest.raises(ValueError):
        wilson_interval(0, 0)
    with pytest.raises(ValueError):
        wilson_interval(1, 2, confidence=1.0)
    with pytest.raises(ValueError):
        cluster_bootstrap([], resamples=0)
    assert wilson(0, 0).value is None
    assert all(e.value is None for e in cluster_bootstrap([]).values())


@settings(max_examples=40, deadline=None)
@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.integers(1, 25), st.integers(1, 4), st.integers(0, 10**6))
def test_verdicts_are_coherent(pa: float, pb: float, questions: int, samples: int, seed: int) -> None:
    """Whatever the data: a move excludes 0 from the interval; within_noise has needed_n <= n; insufficient_data
    has needed_n > n, too few questions, or no data on a side."""
    d = diff_sweeps(sweep(pa, questions, samples, seed=seed), sweep(pb, questions, samples, seed=seed + 1),
                    resamples=200, seed=seed)
    for cell in (*d.cells, d.overall):
        for fd in cell.figures.values():
            lo, hi = fd.delta.ci_low, fd.delta.ci_high
            if fd.verdict in ("moved_up", "moved_down"):
                assert lo is not None and hi is not None and cell.questions >= 5
                assert (lo > 0) if fd.verdict == "moved_up" else (hi < 0)
            elif fd.verdict == "within_noise":
                assert fd.needed_n is not None and fd.needed_n <= fd.delta.n
                assert lo is not None and hi is not None and lo <= 0 <= hi
            else:
                assert fd.delta.value is None or cell.questions < 5 or (
                    fd.needed_n is not None and fd.needed_n > fd.delta.n)


def test_diff_parameters_are_checked() -> None:
    rows = sweep(0.5, 3, 1, seed=0)
    for kw in ({"resamples": 0}, {"min_questions": 0}, {"min_effect": 0.0}, {"power": 1.0}, {"confidence": 0.0}):
        with pytest.raises(ValueError):
            diff_sweeps(rows, rows, **kw)  # type: ignore[arg-type]
