"""AI visibility as a measurement (issue 14): intervals, rank histograms and noise-aware diffs of sweeps.

Pure and gRPC-free: plain dataclasses in, plain dataclasses out, no I/O. numpy is the only dependency (the
reference implementations in the tests are statsmodels and scipy, dev extras only).

Inputs are :class:`Answer` rows, one per evaluated answer (one question × model × location × sample of a sweep).
Figures, per model × location cell, per model (over its locations) and overall:

- ``visibility_rate`` = answers naming the org / answers (0..1).
- ``share_of_voice`` = the org's mentions / all brand mentions (org + competitors) (0..1), Profound's definition.
- ``average_rank`` / ``median_rank`` = mean / median of the org's position among the organisations named in an
  answer (1 = named first), over the answers naming it with a rank (positions, not a share).
- ``first_mention_rate`` = answers where the org is named first (rank 1) / answers (0..1).

Intervals (95 % by default, every bound is in the figure's own unit):

- **Wilson score interval** for the visibility rate of one cell (:func:`wilson_interval`), Wilson (1927), "Probable
  inference, the law of succession, and statistical inference", JASA 22:209–212; recommended over the Wald
  interval by Agresti & Coull (1998), "Approximate is better than 'exact' for interval estimation of binomial
  proportions", The American Statistician 52:119–126. It treats the cell's answers as independent Bernoulli
  draws; the K samples of one question are not, so it is a floor (Canonry's ``wilsonInterval`` says the same).
- **Cluster bootstrap over questions** (:func:`cluster_bootstrap`) for every other figure and for any aggregate
  over several cells: resample the questions with replacement and keep all answers of a drawn question (the
  answers to one question are correlated), recompute the figure, take the percentile interval. Davison & Hinkley
  (1997), *Bootstrap Methods and their Application*, §3.8 (resampling clusters); Field & Welsh (2007),
  "Bootstrapping clustered data", JRSS B 69:369–390; percentile interval: Efron & Tibshirani (1993), *An
  Introduction to the Bootstrap*, ch. 13. Deterministic given ``seed`` (``numpy.random.default_rng(seed)``; the
  draws index the questions in sorted ``question_id`` order), 2,000 resamples by default.
- **Diffs** (:func:`diff_sweeps`) over the common basket (question × model × location triples present in both
  sweeps): the visibility rate of one cell by **Newcombe's hybrid score interval** for a difference of two
  independent proportions (Newcombe (1998), "Interval estimation for the difference between independent
  proportions: comparison of eleven methods", Statistics in Medicine 17:873–890, method 10: built from the two
  Wilson intervals, so it agrees with what the table shows per cell); every other figure and the overall by a
  **paired cluster bootstrap of the difference** (the same questions drawn for both sweeps, delta = B − A per
  resample, percentile interval).

Verdicts (:func:`verdict` documents the rule): ``moved_up`` / ``moved_down`` when the delta's interval excludes
0, ``within_noise`` when it includes 0 and the sweeps were large enough to detect a move of ``min_effect`` with
80 % power, otherwise ``insufficient_data`` with the number of samples needed (Fleiss, Levin & Paik (2003),
*Statistical Methods for Rates and Proportions*, 3rd ed., ch. 4, for proportions; the normal-approximation
two-sample formula for means, e.g. Chow, Shao & Wang (2008), *Sample Size Calculations in Clinical Research*,
ch. 3, for ranks). Fewer than ``min_questions`` common questions is always ``insufficient_data``: with very few
clusters the cluster bootstrap has only a handful of distinct resamples and its intervals are too narrow (Cameron,
Gelbach & Miller (2008), "Bootstrap-based improvements for inference with clustered errors", REStat 90:414–427).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_MIN_EFFECT",
    "DEFAULT_MIN_QUESTIONS",
    "DEFAULT_MIN_RANK_EFFECT",
    "DEFAULT_POWER",
    "DEFAULT_RESAMPLES",
    "FIGURES",
    "RANK_BUCKETS",
    "Answer",
    "CellDiff",
    "CellSummary",
    "Estimate",
    "FigureDiff",
    "ModelVersionChange",
    "SweepDiff",
    "SweepSummary",
    "Verdict",
    "cluster_bootstrap",
    "diff_fields",
    "diff_sweeps",
    "format_estimate",
    "methods_note",
    "newcombe_interval",
    "rank_bucket",
    "rank_histogram",
    "samples_needed_two_means",
    "samples_needed_two_proportions",
    "summarize",
    "summary_fields",
    "verdict",
    "wilson",
    "wilson_interval",
]

DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 2000
#: Fewer common questions than this → ``insufficient_data`` whatever the interval (see the module docstring).
DEFAULT_MIN_QUESTIONS = 5
#: The smallest move of a rate (0..1) a ``within_noise`` verdict vouches for: 0.20 = 20 points. Ten points at a
#: 50 % rate would need ≈ 390 answers per sweep and cell, more than any sweep we run.
DEFAULT_MIN_EFFECT = 0.20
#: … and of a rank figure, in positions.
DEFAULT_MIN_RANK_EFFECT = 1.0
DEFAULT_POWER = 0.80

#: Figure name → kind: "rate" (0..1, shown as %) or "rank" (positions).
FIGURES: dict[str, Literal["rate", "rank"]] = {
    "visibility_rate": "rate",
    "share_of_voice": "rate",
    "first_mention_rate": "rate",
    "average_rank": "rank",
    "median_rank": "rank",
}
#: Unit of each figure's ``n``.
_N_UNIT = {
    "visibility_rate": "answers",
    "share_of_voice": "brand mentions",
    "first_mention_rate": "answers",
    "average_rank": "named answers",
    "median_rank": "named answers",
}
#: The rank histogram's buckets, in display order (issue 14 item 7); ``named_unranked`` = named but no position.
RANK_BUCKETS = ("1", "2", "3", "4-5", "6+", "not_named", "named_unranked")

WILSON = "wilson"
NEWCOMBE = "newcombe_hybrid_score"
BOOTSTRAP = "cluster_bootstrap_percentile"
PAIRED_BOOTSTRAP = "paired_cluster_bootstrap_percentile"

Verdict = Literal["moved_up", "moved_down", "within_noise", "insufficient_data"]


# --- inputs -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """One evaluated answer of a sweep.

    ``rank``: the org's 1-based position among the organisations named in the answer; None (or 0, as the store
    keeps it) = no position. A rank is only read when ``mentioned``. ``org_mentions`` / ``competitor_mentions``:
    counts of name occurrences in the answer (share of voice = org / (org + competitors)). ``sentiment``: the
    extractor's label of the org (POSITIVE / NEUTRAL / NEGATIVE / MIXED), counted over answers naming it.
    ``model_version``: the model id the provider reported for this answer ("" = not reported).

    Raises ValueError on a negative sample, rank or count.
    """

    question_id: str
    model: str
    location: str
    sample: int = 0
    mentioned: bool = False
    rank: int | None = None
    org_mentions: int = 0
    competitor_mentions: int = 0
    sentiment: str = ""
    model_version: str = ""

    def __post_init__(self) -> None:
        if self.sample < 0:
            raise ValueError(f"sample must be >= 0, got {self.sample}")
        if self.rank is not None and self.rank < 0:
            raise ValueError(f"rank must be >= 1 (or 0/None for none), got {self.rank}")
        if self.org_mentions < 0 or self.competitor_mentions < 0:
            raise ValueError("mention counts must be >= 0")

    @property
    def position(self) -> int | None:
        """The org's rank when it is named and ranked, else None."""
        return self.rank if self.mentioned and self.rank else None

    @property
    def brand_mentions(self) -> int:
        return self.org_mentions + self.competitor_mentions


# --- outputs ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Estimate:
    """A figure with its interval. ``value`` / ``ci_low`` / ``ci_high`` are in the figure's unit (0..1 for rates,
    positions for ranks; a delta is B − A in that unit), None when undefined (no data). ``n``: the sample the
    figure is computed over (``unit``: answers, brand mentions or named answers); ``clusters``: questions."""

    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    method: str
    clusters: int = 0
    unit: str = "answers"
    confidence: float = DEFAULT_CONFIDENCE

    def fields(self, name: str) -> dict[str, Any]:
        """``{name, name_ci_low, name_ci_high, name_n}``: the JSON / CSV columns issue 14 asks for."""
        return {name: self.value, f"{name}_ci_low": self.ci_low, f"{name}_ci_high": self.ci_high, f"{name}_n": self.n}


@dataclass(frozen=True, slots=True)
class CellSummary:
    """The figures of one model × location cell; ``model`` / ``location`` = "all" for aggregates."""

    model: str
    location: str
    answers: int
    questions: int
    max_samples: int  # the most answers one question has in this cell (K when the sweep is complete)
    figures: dict[str, Estimate]
    sentiment: dict[str, int]

    def fields(self) -> dict[str, Any]:
        """Flat JSON / CSV record: model, location, answers, questions, then ``<figure>``, ``<figure>_ci_low``,
        ``<figure>_ci_high``, ``<figure>_n`` per figure, ``<figure>_method``, and ``sentiment_<LABEL>`` counts."""
        out: dict[str, Any] = {"model": self.model, "location": self.location, "answers": self.answers,
                               "questions": self.questions}
        for name, est in self.figures.items():
            out.update(est.fields(name))
            out[f"{name}_method"] = est.method
        for label, n in sorted(self.sentiment.items()):
            out[f"sentiment_{label}"] = n
        return out


@dataclass(frozen=True, slots=True)
class SweepSummary:
    cells: list[CellSummary]  # sorted by (model, location)
    models: list[CellSummary]  # per model over its locations (location = "all")
    overall: CellSummary
    rank_histograms: dict[str, dict[str, int]]  # model → bucket → answers
    resamples: int
    seed: int
    confidence: float


@dataclass(frozen=True, slots=True)
class FigureDiff:
    """One figure of a diff. ``needed_n``: with ``insufficient_data``, the sample per sweep (in ``unit``) needed
    to tell a move of ``needed_for`` (the larger of the observed |delta| and ``min_effect``) from noise at the
    diff's confidence and 80 % power; with ``within_noise``, the sample that vouches for it; else None."""

    name: str
    a: Estimate
    b: Estimate
    delta: Estimate
    verdict: Verdict
    needed_n: int | None
    needed_for: float | None
    unit: str
    reason: str


@dataclass(frozen=True, slots=True)
class CellDiff:
    model: str
    location: str
    questions: int  # common questions of this cell
    figures: dict[str, FigureDiff]
    model_version_changed: bool

    def fields(self) -> dict[str, Any]:
        """Flat JSON / CSV record: per figure ``<f>_a``, ``<f>_b``, ``<f>_delta`` each with ``_ci_low`` /
        ``_ci_high``, ``<f>_verdict``, ``<f>_needed_n``."""
        out: dict[str, Any] = {"model": self.model, "location": self.location, "questions": self.questions,
                               "model_version_changed": self.model_version_changed}
        for name, fd in self.figures.items():
            for side, est in (("a", fd.a), ("b", fd.b), ("delta", fd.delta)):
                out.update({f"{name}_{side}": est.value, f"{name}_{side}_ci_low": est.ci_low,
                            f"{name}_{side}_ci_high": est.ci_high})
            out[f"{name}_delta_method"] = fd.delta.method
            out[f"{name}_verdict"] = fd.verdict
            out[f"{name}_needed_n"] = fd.needed_n
        return out


@dataclass(frozen=True, slots=True)
class ModelVersionChange:
    """A model whose provider reported other model versions in sweep B than in sweep A (both non-empty), the rule
    of Canonry's ``modelChanges`` (packages/api-routes/src/visibility-compare.ts)."""

    model: str
    versions_a: tuple[str, ...]
    versions_b: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SweepDiff:
    cells: list[CellDiff]
    overall: CellDiff
    model_changes: list[ModelVersionChange]
    basket: int  # common question × model × location triples
    only_a: int  # triples only in A (left out)
    only_b: int
    resamples: int
    seed: int
    confidence: float
    min_questions: int
    min_effect: float


# --- closed-form intervals and sample sizes ---------------------------------------------------------------------


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``successes / n`` (0..1):
    ``(p + z²/2n ± z·sqrt(p(1−p)/n + z²/4n²)) / (1 + z²/n)`` (Wilson 1927; Agresti & Coull 1998).
    Raises ValueError when n <= 0 or successes is outside 0..n."""
    if n <= 0:
        raise ValueError(f"n must be > 0, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in 0..{n}, got {successes}")
    z = _z(confidence)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2.0 * n)) / denom
    margin = (z / denom) * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    # At 0 / n and n / n the exact bound is 0 / 1; the floating-point one can miss it by ~1e-18.
    lo = 0.0 if successes == 0 else max(0.0, center - margin)
    hi = 1.0 if successes == n else min(1.0, center + margin)
    return lo, hi


def wilson(successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE, *, clusters: int = 0) -> Estimate:
    """:func:`wilson_interval` as an :class:`Estimate` (all None when n == 0)."""
    if n == 0:
        return Estimate(None, None, None, 0, WILSON, clusters, "answers", confidence)
    lo, hi = wilson_interval(successes, n, confidence)
    return Estimate(successes / n, lo, hi, n, WILSON, clusters, "answers", confidence)


def newcombe_interval(successes_a: int, n_a: int, successes_b: int, n_b: int,
                      confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """Interval of ``p_B − p_A`` for two independent proportions by Newcombe's hybrid score method (Newcombe 1998,
    method 10): with Wilson limits (l, u) of each side, ``L = d − sqrt((p_B − l_B)² + (u_A − p_A)²)``,
    ``U = d + sqrt((u_B − p_B)² + (p_A − l_A)²)``. Raises ValueError as :func:`wilson_interval`."""
    la, ua = wilson_interval(successes_a, n_a, confidence)
    lb, ub = wilson_interval(successes_b, n_b, confidence)
    pa, pb = successes_a / n_a, successes_b / n_b
    d = pb - pa
    return d - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2), d + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2)


def samples_needed_two_proportions(p1: float, p2: float, *, confidence: float = DEFAULT_CONFIDENCE,
                                   power: float = DEFAULT_POWER) -> float:
    """Samples per group for a two-sided test of p1 = p2 at level 1 − confidence with the given power,
    normal approximation without continuity correction (Fleiss, Levin & Paik 2003, ch. 4):
    ``n = (z_{α/2}·sqrt(2·p̄·q̄) + z_β·sqrt(p1q1 + p2q2))² / (p1 − p2)²``, p̄ = (p1 + p2)/2 (the same as
    statsmodels ``samplesize_proportions_2indep_onetail``). Not rounded; ``inf`` when p1 == p2."""
    if p1 == p2:
        return math.inf
    za, zb = _z(confidence), NormalDist().inv_cdf(power)
    pbar = (p1 + p2) / 2.0
    num = za * math.sqrt(2.0 * pbar * (1.0 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return num * num / ((p1 - p2) ** 2)


def samples_needed_two_means(sd: float, delta: float, *, confidence: float = DEFAULT_CONFIDENCE,
                             power: float = DEFAULT_POWER) -> float:
    """Samples per group to detect a difference ``delta`` of two means with common standard deviation ``sd``
    (two-sided, normal approximation; Chow, Shao & Wang 2008, ch. 3): ``n = 2·(z_{α/2} + z_β)²·sd² / delta²``.
    Not rounded; ``inf`` when delta == 0."""
    if delta == 0:
        return math.inf
    za, zb = _z(confidence), NormalDist().inv_cdf(power)
    return 2.0 * (za + zb) ** 2 * sd * sd / (delta * delta)


# --- per-question sufficient statistics and the cluster bootstrap -----------------------------------------------


@dataclass
class _Clusters:
    """Per-question sums of one set of answers, questions in ``ids`` order (rows)."""

    ids: list[str]
    answers: np.ndarray
    mentioned: np.ndarray
    first: np.ndarray
    org: np.ndarray
    brand: np.ndarray
    rank_sum: np.ndarray
    ranked: np.ndarray
    hist: np.ndarray  # questions × max rank: answers with the org at rank r+1

    @classmethod
    def of(cls, answers: Iterable[Answer], ids: Sequence[str] | None = None) -> _Clusters:
        rows = list(answers)
        qids = sorted({a.question_id for a in rows}) if ids is None else list(ids)
        at = {q: i for i, q in enumerate(qids)}
        q = len(qids)
        kept = [a for a in rows if a.question_id in at]
        idx = np.fromiter((at[a.question_id] for a in kept), dtype=np.int64, count=len(kept))
        pos = np.fromiter((a.position or 0 for a in kept), dtype=np.int64, count=len(kept))

        def per_q(weights: Iterable[float] | None = None) -> np.ndarray:
            w = None if weights is None else np.fromiter(weights, dtype=float, count=len(kept))
            return np.bincount(idx, weights=w, minlength=q).astype(float)

        ranked = pos > 0
        hist = np.zeros((q, max(int(pos.max(initial=0)), 1)))
        np.add.at(hist, (idx[ranked], pos[ranked] - 1), 1.0)
        c = cls(qids, per_q(), per_q(float(a.mentioned) for a in kept), per_q((pos == 1).astype(float)),
                per_q(float(a.org_mentions) for a in kept), per_q(float(a.brand_mentions) for a in kept),
                per_q(pos.astype(float)), per_q(ranked.astype(float)), hist)
        return c

    def stats(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """Every figure for each row of ``weights`` (resamples × questions: how often each question is drawn;
        a row of ones = the data as observed). NaN where a figure is undefined."""
        with np.errstate(invalid="ignore", divide="ignore"):
            n = weights @ self.answers
            ranked = weights @ self.ranked
            out = {
                "visibility_rate": (weights @ self.mentioned) / n,
                "share_of_voice": (weights @ self.org) / (weights @ self.brand),
                "first_mention_rate": (weights @ self.first) / n,
                "average_rank": (weights @ self.rank_sum) / ranked,
                "median_rank": _median_from_hist(weights @ self.hist),
            }
        return out


def _median_from_hist(h: np.ndarray) -> np.ndarray:
    """Median of rank values 1..R given counts ``h`` (rows × R); the mean of the two middle values for an even
    count (numpy's convention); NaN for an empty row."""
    total = h.sum(axis=1)
    cum = np.cumsum(h, axis=1)
    out = np.full(h.shape[0], np.nan)
    ok = total > 0
    if not ok.any():
        return out
    t = total[ok].astype(np.int64)
    c = cum[ok]
    lo = np.argmax(c > ((t - 1) // 2)[:, None], axis=1) + 1
    hi = np.argmax(c > (t // 2)[:, None], axis=1) + 1
    out[ok] = (lo + hi) / 2.0
    return out


#: Upper bound of one chunk of bootstrap weights (resamples × questions cells): 4 M, i.e. 32 MB of float64 weights
#: (and as much for the draws) whatever the number of questions (10,000 questions × 2,000 resamples would be 160 MB
#: per array at once).
_CHUNK_CELLS = 4_000_000


def _weight_chunks(n_questions: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """The rows of :func:`_draw_weights`, a few hundred resamples at a time (at most :data:`_CHUNK_CELLS` cells per
    chunk). The generator's stream is consumed in the same order, so the draws are the same as in one call."""
    rng = np.random.default_rng(seed)
    step = max(1, min(resamples, _CHUNK_CELLS // max(n_questions, 1)))
    for start in range(0, resamples, step):
        n = min(step, resamples - start)
        idx = rng.integers(0, n_questions, size=(n, n_questions))
        flat = idx + (np.arange(n) * n_questions)[:, None]
        yield np.bincount(flat.ravel(), minlength=n * n_questions).reshape(n, n_questions).astype(float)


def _draw_weights(n_questions: int, resamples: int, seed: int) -> np.ndarray:
    """resamples × questions counts of the questions drawn with replacement: ``default_rng(seed).integers(0, Q,
    size=(resamples, Q))``, the same draws ``scipy.stats.bootstrap`` makes with that generator."""
    return np.concatenate(list(_weight_chunks(n_questions, resamples, seed)))


def _boot_stats(clusters: Sequence[_Clusters], n_questions: int, resamples: int,
                seed: int) -> list[dict[str, np.ndarray]]:
    """:meth:`_Clusters.stats` of each of ``clusters`` (same questions, same order) under the same resamples,
    computed chunk by chunk (:func:`_weight_chunks`): memory bounded by the chunk, not by resamples × questions."""
    parts: list[list[dict[str, np.ndarray]]] = [[] for _ in clusters]
    for w in _weight_chunks(n_questions, resamples, seed):
        for i, c in enumerate(clusters):
            parts[i].append(c.stats(w))
    return [{k: np.concatenate([p[k] for p in ps]) for k in ps[0]} for ps in parts]


def _percentile(values: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    """Percentile interval (Efron & Tibshirani 1993, ch. 13) over the defined resamples (numpy ``quantile``,
    linear interpolation); resamples where the figure is undefined are dropped."""
    v = values[~np.isnan(values)]
    if v.size == 0:
        return None, None
    a = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(v, [a, 1.0 - a])
    return float(lo), float(hi)


def _n_of(c: _Clusters, name: str) -> int:
    if name in ("average_rank", "median_rank"):
        return int(c.ranked.sum())
    if name == "share_of_voice":
        return int(c.brand.sum())
    return int(c.answers.sum())


def _value(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def cluster_bootstrap(answers: Iterable[Answer], *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                      confidence: float = DEFAULT_CONFIDENCE) -> dict[str, Estimate]:
    """Every figure of :data:`FIGURES` over ``answers`` with a cluster-bootstrap percentile interval: the
    questions (sorted by ``question_id``) are resampled with replacement ``resamples`` times, each drawn question
    bringing all its answers (Davison & Hinkley 1997 §3.8; Field & Welsh 2007). ``value`` is the figure of the
    data as observed. Deterministic given ``seed``. Raises ValueError when resamples < 1."""
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    c = _Clusters.of(answers)
    q = len(c.ids)
    if q == 0:
        return {name: Estimate(None, None, None, 0, BOOTSTRAP, 0, _N_UNIT[name], confidence) for name in FIGURES}
    point = c.stats(np.ones((1, q)))
    boot = _boot_stats([c], q, resamples, seed)[0]
    out = {}
    for name in FIGURES:
        value = _value(point[name][0])
        lo, hi = _percentile(boot[name], confidence) if value is not None else (None, None)
        out[name] = Estimate(value, lo, hi, _n_of(c, name), BOOTSTRAP, q, _N_UNIT[name], confidence)
    return out


# --- rank histogram ---------------------------------------------------------------------------------------------


def rank_bucket(a: Answer) -> str:
    """The :data:`RANK_BUCKETS` bucket of one answer."""
    if not a.mentioned:
        return "not_named"
    pos = a.position
    if pos is None:
        return "named_unranked"
    if pos <= 3:
        return str(pos)
    return "4-5" if pos <= 5 else "6+"


def rank_histogram(answers: Iterable[Answer]) -> dict[str, dict[str, int]]:
    """Per model: answers per :data:`RANK_BUCKETS` bucket (every bucket present, 0 when empty), models sorted."""
    counts: dict[str, Counter[str]] = {}
    for a in answers:
        counts.setdefault(a.model, Counter())[rank_bucket(a)] += 1
    return {m: {b: counts[m].get(b, 0) for b in RANK_BUCKETS} for m in sorted(counts)}


# --- one sweep --------------------------------------------------------------------------------------------------


def _cell(model: str, location: str, rows: list[Answer], *, wilson_visibility: bool, resamples: int, seed: int,
          confidence: float) -> CellSummary:
    figures = cluster_bootstrap(rows, resamples=resamples, seed=seed, confidence=confidence)
    per_q = Counter(a.question_id for a in rows)
    if wilson_visibility:
        figures["visibility_rate"] = wilson(sum(a.mentioned for a in rows), len(rows), confidence,
                                            clusters=len(per_q))
    sentiment = Counter(a.sentiment for a in rows if a.mentioned and a.sentiment)
    return CellSummary(model, location, len(rows), len(per_q), max(per_q.values(), default=0), figures,
                       dict(sorted(sentiment.items())))


def summarize(answers: Iterable[Answer], *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
              confidence: float = DEFAULT_CONFIDENCE) -> SweepSummary:
    """The figures of one sweep: per model × location cell the visibility rate with a Wilson interval and the
    other figures by cluster bootstrap over the cell's questions; per model (over its locations) and overall
    every figure by cluster bootstrap over questions (a question's cluster = all its answers in the aggregate,
    whatever the model, location or sample). Plus the rank histogram per model."""
    rows = list(answers)
    by_cell: dict[tuple[str, str], list[Answer]] = {}
    by_model: dict[str, list[Answer]] = {}
    for a in rows:
        by_cell.setdefault((a.model, a.location), []).append(a)
        by_model.setdefault(a.model, []).append(a)
    kw: dict[str, Any] = {"resamples": resamples, "seed": seed, "confidence": confidence}
    cells = [_cell(m, loc, by_cell[(m, loc)], wilson_visibility=True, **kw) for m, loc in sorted(by_cell)]
    models = [_cell(m, "all", by_model[m], wilson_visibility=False, **kw) for m in sorted(by_model)]
    overall = _cell("all", "all", rows, wilson_visibility=False, **kw)
    return SweepSummary(cells, models, overall, rank_histogram(rows), resamples, seed, confidence)


def methods_note(summary: SweepSummary) -> str:
    """The line printed under the table: method, confidence, resamples, seed and the sample."""
    o = summary.overall
    return (f"{summary.confidence:.0%} intervals. Visibility per model × location: Wilson score interval; other "
            f"figures and aggregates: cluster bootstrap over questions (percentile, {summary.resamples:,} "
            f"resamples, seed {summary.seed}). Sample: {o.answers} answers to {o.questions} questions, up to "
            f"{max((c.max_samples for c in summary.cells), default=0)} samples per question and cell.")


def format_estimate(est: Estimate, *, percent: bool | None = None, digits: int | None = None,
                    signed: bool = False) -> str:
    """Table form: ``81 % [74–87]`` for a rate (``percent``, the default for a 0..1 unit), ``2.3 [1.8–2.9]``
    for a rank; ``—`` when undefined; ``81 %`` alone when there is no interval. ``digits``: decimals (0 for %,
    1 otherwise, by default). ``signed`` (for a delta): ``+5 % [-3 to +12]``."""
    if est.value is None:
        return "—"
    if percent is None:
        percent = est.unit in ("answers", "brand mentions")
    scale, suffix = (100.0, " %") if percent else (1.0, "")
    d = (0 if percent else 1) if digits is None else digits

    def f(x: float) -> str:
        s = f"{x * scale:.{d}f}"
        if float(s) == 0.0:
            return f"{0.0:.{d}f}"  # no "-0"
        return f"+{s}" if signed and not s.startswith("-") else s

    if est.ci_low is None or est.ci_high is None:
        return f"{f(est.value)}{suffix}"
    sep = " to " if signed else "–"
    return f"{f(est.value)}{suffix} [{f(est.ci_low)}{sep}{f(est.ci_high)}]"


# --- diff of two sweeps -----------------------------------------------------------------------------------------


def verdict(delta: Estimate, *, kind: Literal["rate", "rank"], a_value: float | None, n: int, questions: int,
            b_value: float | None = None, sd: float = 0.0, min_questions: int = DEFAULT_MIN_QUESTIONS,
            min_effect: float | None = None,
            power: float = DEFAULT_POWER) -> tuple[Verdict, int | None, float | None, str]:
    """The verdict on a delta (B − A) and its interval; returns ``(verdict, needed_n, needed_for, reason)``.

    1. No data on a side → ``insufficient_data`` (needed_n None).
    2. Fewer than ``min_questions`` common questions → ``insufficient_data``.
    3. The interval excludes 0 → ``moved_up`` (B > A) / ``moved_down`` (for ranks a lower number is a better
       position: ``moved_down`` = named earlier).
    4. Else, with effect E = max(|delta|, ``min_effect``), N = the samples per sweep needed to tell a move of E
       from noise at level 1 − confidence with ``power``: the larger of
       (a) the textbook two-sample size — :func:`samples_needed_two_proportions` from A's value to B's (to A's
       value moved by E towards 50 %, the larger N, when |delta| < ``min_effect``) for rates,
       :func:`samples_needed_two_means` with the pooled SD ``sd`` for ranks — which assumes independent answers,
       and (b) the sample at which the measured interval would be narrow enough, from its half-width h (the
       larger side) shrinking as 1/√n: ``n · (h · (z_{α/2} + z_β) / (z_{α/2} · E))²``; (b) carries the
       clustering of answers within questions (Kish's design effect) and covers the median.
       ``within_noise`` when n ≥ N (the sweeps could have seen a move of E and did not), else
       ``insufficient_data`` with N. A non-significant observed move ≥ ``min_effect`` is therefore always
       ``insufficient_data``, and a fixed ``min_effect`` rather than the observed delta vouches for "no move"
       (an observed power says nothing new: Hoenig & Heisey (2001), "The abuse of power", The American
       Statistician 55:19–24).

    ``n``: the smaller side's sample in the figure's unit. With too few questions, N is at least the sample
    that ``min_questions`` questions give at the same samples per question.
    """
    if min_effect is None:
        min_effect = DEFAULT_MIN_EFFECT if kind == "rate" else DEFAULT_MIN_RANK_EFFECT
    if delta.value is None or a_value is None or n == 0:
        return "insufficient_data", None, None, "no data on one side of the common basket"
    d = delta.value
    effect = max(abs(d), min_effect)
    confidence = delta.confidence
    if kind == "rate":
        if abs(d) >= min_effect and b_value is not None:
            p2 = b_value
        else:
            p2 = min(1.0, max(0.0, a_value + effect if a_value < 0.5 else a_value - effect))
        need_f = samples_needed_two_proportions(a_value, p2, confidence=confidence, power=power)
        eff_txt = f"{effect * 100:.0f} points"
    else:
        need_f = max(2.0, samples_needed_two_means(sd, effect, confidence=confidence, power=power))
        eff_txt = f"{effect:.1f} positions"
    if delta.ci_low is not None and delta.ci_high is not None and effect > 0:
        h = max(d - delta.ci_low, delta.ci_high - d)
        za, zb = _z(confidence), NormalDist().inv_cdf(power)
        need_f = max(need_f, n * (h * (za + zb) / (za * effect)) ** 2)
    need = None if math.isinf(need_f) else max(1, math.ceil(need_f - 1e-9))
    rule = f"two-sample size and interval width, {confidence:.0%} confidence, {power:.0%} power"
    if questions < min_questions:
        need_q = math.ceil(n / questions * min_questions) if questions else None
        need = need_q if need is None else max(need, need_q or 0)
        return ("insufficient_data", need, effect,
                f"{questions} common question(s), at least {min_questions} needed for a cluster bootstrap; "
                f"≈ {need} per sweep to tell a move of {eff_txt} from noise ({rule})")
    if delta.ci_low is not None and delta.ci_low > 0:
        return "moved_up", None, None, f"the {confidence:.0%} interval of B − A excludes 0"
    if delta.ci_high is not None and delta.ci_high < 0:
        return "moved_down", None, None, f"the {confidence:.0%} interval of B − A excludes 0"
    if need is not None and n >= need:
        return "within_noise", need, effect, f"{n} per sweep ≥ {need} needed to see a move of {eff_txt} ({rule})"
    return ("insufficient_data", need, effect,
            f"{n} per sweep < {need} needed to tell a move of {eff_txt} from noise ({rule})")


def _boot_estimate(value: float | None, boot: np.ndarray | None, n: int, q: int, unit: str,
                   confidence: float) -> Estimate:
    lo, hi = _percentile(boot, confidence) if value is not None and boot is not None else (None, None)
    return Estimate(value, lo, hi, n, BOOTSTRAP, q, unit, confidence)


def _pooled_rank_sd(a: Sequence[Answer], b: Sequence[Answer]) -> float:
    ranks = [[x.position for x in side if x.position is not None] for side in (a, b)]
    ss = sum(float(np.sum((np.asarray(r, float) - np.mean(r)) ** 2)) for r in ranks if len(r) > 0)
    dof = sum(len(r) - 1 for r in ranks if len(r) > 0)
    return math.sqrt(ss / dof) if dof > 0 else 0.0


def _diff_cell(model: str, location: str, a: list[Answer], b: list[Answer], *, per_cell: bool, resamples: int,
               seed: int, confidence: float, min_questions: int, min_effect: float, power: float,
               version_changed: bool) -> CellDiff:
    ids = sorted({x.question_id for x in a} & {x.question_id for x in b})
    q = len(ids)
    ca, cb = _Clusters.of(a, ids), _Clusters.of(b, ids)
    ones = np.ones((1, q))
    pa, pb = ca.stats(ones), cb.stats(ones)
    ba, bb = _boot_stats([ca, cb], q, resamples, seed) if q else ({}, {})
    sd = _pooled_rank_sd(a, b)
    figures: dict[str, FigureDiff] = {}
    for name, kind in FIGURES.items():
        unit = _N_UNIT[name]
        na, nb = _n_of(ca, name), _n_of(cb, name)
        va = _value(pa[name][0]) if q else None
        vb = _value(pb[name][0]) if q else None
        if per_cell and name == "visibility_rate":
            xa, xb = int(ca.mentioned.sum()), int(cb.mentioned.sum())
            ea, eb = wilson(xa, na, confidence, clusters=q), wilson(xb, nb, confidence, clusters=q)
            if na and nb:
                lo, hi = newcombe_interval(xa, na, xb, nb, confidence)
                delta = Estimate(xb / nb - xa / na, lo, hi, min(na, nb), NEWCOMBE, q, unit, confidence)
            else:
                delta = Estimate(None, None, None, min(na, nb), NEWCOMBE, q, unit, confidence)
        else:
            ea = _boot_estimate(va, ba[name] if q else None, na, q, unit, confidence)
            eb = _boot_estimate(vb, bb[name] if q else None, nb, q, unit, confidence)
            if va is not None and vb is not None:
                dlo, dhi = _percentile(bb[name] - ba[name], confidence)
                delta = Estimate(vb - va, dlo, dhi, min(na, nb), PAIRED_BOOTSTRAP, q, unit, confidence)
            else:
                delta = Estimate(None, None, None, min(na, nb), PAIRED_BOOTSTRAP, q, unit, confidence)
        v, need, need_for, reason = verdict(
            delta, kind=kind, a_value=ea.value, b_value=eb.value, n=min(na, nb), questions=q, sd=sd,
            min_questions=min_questions, min_effect=min_effect if kind == "rate" else None, power=power)
        figures[name] = FigureDiff(name, ea, eb, delta, v, need, need_for, unit, reason)
    return CellDiff(model, location, q, figures, version_changed)


def _versions(rows: Iterable[Answer]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for a in rows:
        if a.model_version:
            out.setdefault(a.model, set()).add(a.model_version)
    return out


def diff_sweeps(a: Iterable[Answer], b: Iterable[Answer], *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                confidence: float = DEFAULT_CONFIDENCE, min_questions: int = DEFAULT_MIN_QUESTIONS,
                min_effect: float = DEFAULT_MIN_EFFECT, power: float = DEFAULT_POWER) -> SweepDiff:
    """Sweep A against sweep B over the common basket: the (question, model, location) triples present in both;
    answers of other triples are left out (counted in ``only_a`` / ``only_b``). Per model × location cell and
    overall, per figure: A, B (with their intervals), delta = B − A with its interval — Newcombe's hybrid score
    interval for a cell's visibility rate, a paired cluster bootstrap over the common questions otherwise — and
    the :func:`verdict`. Models whose provider reported other versions in B than in A are listed in
    ``model_changes`` and flagged on their cells. Deterministic given ``seed``. Raises ValueError on a
    parameter out of range (resamples < 1, min_questions < 1, min_effect outside (0, 1], power or confidence
    outside (0, 1))."""
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if min_questions < 1:
        raise ValueError(f"min_questions must be >= 1, got {min_questions}")
    if not 0.0 < min_effect <= 1.0:
        raise ValueError(f"min_effect must be in (0, 1], got {min_effect}")
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power}")
    _z(confidence)
    rows_a, rows_b = list(a), list(b)

    def triples(rows: list[Answer]) -> set[tuple[str, str, str]]:
        return {(x.question_id, x.model, x.location) for x in rows}

    ta, tb = triples(rows_a), triples(rows_b)
    common = ta & tb
    keep_a = [x for x in rows_a if (x.question_id, x.model, x.location) in common]
    keep_b = [x for x in rows_b if (x.question_id, x.model, x.location) in common]
    va, vb = _versions(keep_a), _versions(keep_b)
    changes = [ModelVersionChange(m, tuple(sorted(va[m])), tuple(sorted(vb[m])))
               for m in sorted(va.keys() & vb.keys()) if va[m] != vb[m]]
    changed = {c.model for c in changes}
    cells_a: dict[tuple[str, str], list[Answer]] = {}
    cells_b: dict[tuple[str, str], list[Answer]] = {}
    for x in keep_a:
        cells_a.setdefault((x.model, x.location), []).append(x)
    for x in keep_b:
        cells_b.setdefault((x.model, x.location), []).append(x)
    kw: dict[str, Any] = {"resamples": resamples, "seed": seed, "confidence": confidence,
                          "min_questions": min_questions, "min_effect": min_effect, "power": power}
    cells = [_diff_cell(m, loc, cells_a[(m, loc)], cells_b[(m, loc)], per_cell=True,
                        version_changed=m in changed, **kw) for m, loc in sorted(cells_a)]
    overall = _diff_cell("all", "all", keep_a, keep_b, per_cell=False, version_changed=bool(changed), **kw)
    return SweepDiff(cells, overall, changes, len(common), len(ta - common), len(tb - common), resamples, seed,
                     confidence, min_questions, min_effect)


def diff_fields(diff: SweepDiff) -> list[dict[str, Any]]:
    """Every cell of a diff, then the overall, as flat JSON / CSV records (:meth:`CellDiff.fields`)."""
    return [c.fields() for c in [*diff.cells, diff.overall]]


def summary_fields(summary: SweepSummary) -> list[dict[str, Any]]:
    """Every cell, every model and the overall of a sweep as flat JSON / CSV records (:meth:`CellSummary.fields`)."""
    return [c.fields() for c in [*summary.cells, *summary.models, summary.overall]]

