"""The bounds part b of ``make bench`` divides by (bench/pipeline.py): T_LB with and without a rate limit, ideal
streaming on given latencies, and where a run's makespan went from its timeline. Pure arithmetic, no services."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.pipeline import SCALED_10, SCALED_100, breakdown, expected_stream_makespan, stream_makespan, t_lb


def test_t_lb_is_the_flow_shop_bound_of_performance_md() -> None:
    # ×1/10: ⌈600/50⌉ · 1.5 + 0.2 (the LLM stage binds); ×1/100 at N = 1,000: ⌈1000/50⌉ · 0.15 + 0.02.
    assert math.isclose(t_lb(600, SCALED_10.stages()), 18.2)
    assert math.isclose(t_lb(1000, SCALED_100.stages()), 3.02)
    # No rate limit, or one the run never reaches (its first minute's burst covers every call): the same bound.
    assert t_lb(1000, SCALED_100.stages(), (1000.0, 0.0)) == t_lb(1000, SCALED_100.stages())


def test_t_lb_includes_a_requests_per_minute_limit() -> None:
    # 6,000 searches at 1,000/min after a burst of 1,000: the last starts at ≥ 300 s, then search + LLM latency.
    assert math.isclose(t_lb(6000, SCALED_100.stages(), (1000.0, 0.0)), 300.0 + 0.02 + 0.15)
    assert math.isclose(t_lb(6000, SCALED_100.stages()), 120 * 0.15 + 0.02)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 400), c1=st.integers(1, 60), c2=st.integers(1, 60),
       l1=st.floats(0.01, 3.0), l2=st.floats(0.01, 3.0))
def test_t_lb_bounds_ideal_streaming_on_fixed_latencies(n: int, c1: int, c2: int, l1: float, l2: float) -> None:
    assert stream_makespan(n, [(c1, [l1]), (c2, [l2])]) >= t_lb(n, [(c1, l1), (c2, l2)]) * (1 - 1e-9)


def test_ideal_streaming_attains_t_lb_in_the_bench_profiles() -> None:
    for n, p in ((600, SCALED_10), (1000, SCALED_100), (1500, SCALED_10)):
        fixed = stream_makespan(n, [(c, [lat]) for c, lat in p.stages()])
        assert math.isclose(fixed, t_lb(n, p.stages()))


def test_varied_latencies_cost_ideal_streaming_a_tail_above_t_lb() -> None:
    small = expected_stream_makespan(600, SCALED_10, reps=60)
    assert small["p10_s"] > t_lb(600, SCALED_10.stages())  # CV 0.5, 12 rounds: the last round's tail
    big = expected_stream_makespan(3000, SCALED_10, reps=20)
    assert big["mean_s"] / t_lb(3000, SCALED_10.stages()) < small["mean_s"] / t_lb(600, SCALED_10.stages())


def test_breakdown_replays_the_run_and_names_its_phases() -> None:
    # Two items, budgets 1: searches 0-1 and 1-2, LLM calls 1-3 and 3-5; write-backs end at 3.1 and 5.1; window 0-5.2.
    tl = [
        ("claim_items", 0.0, 0.0, 0.01),
        ("search", 0.0, 0.0, 1.0), ("search", 0.0, 1.0, 2.0),
        ("inference", 1.0, 1.0, 3.0), ("inference", 2.0, 3.0, 5.0),
        ("complete_item", 3.0, 3.0, 3.1), ("complete_item", 5.0, 5.0, 5.1),
    ]
    b = breakdown([list(x) for x in tl], 0.0, 5.2, {"search": 1, "inference": 1})
    assert b["stream_s"] == 5.0 and b["makespan_over_stream"] == 1.04
    assert (b["first_llm_start_s"], b["last_llm_end_s"], b["after_last_llm_s"]) == (1.0, 5.0, 0.2)
    assert b["last_write_back_end_s"] == 5.1
    assert b["llm_wait_mean_s"] == 0.5 and b["llm_occupancy"] == 1.0 and b["llm_budget_full_s"] == 1.0
