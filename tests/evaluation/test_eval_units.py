"""Pure parts of ORG_EVAL: questions files, the matrix's validation, the report's figures, and reading an
ExtractResponse (name variations and competitor merging are the extraction service's: tests/extraction/
test_extraction_identity.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.orchestrator.app.inputs import InputError
from services.orchestrator.app.jobs.evaluation import (
    evaluation_from_proto,
    merge_variations,
    parse_questions,
    read_questions,
    split_list,
    summary,
    validate_matrix,
)
from services.orchestrator.reports.visibility import GroupStats
from services.orchestrator.store.eval_repo import item_key, item_label, org_key
from shared.errors import InvalidArgument
from vantage.extraction.v1 import extraction_pb2 as xpb

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "questions.txt"


def test_the_example_questions_file_has_twenty_buyer_questions() -> None:
    qs = read_questions(EXAMPLE)
    assert len(qs) == 20 and len({q.casefold() for q in qs}) == 20
    assert qs[0] == "What are the best GPU cloud providers for training large language models?"
    assert all(q.endswith("?") and "Together" not in q for q in qs)  # buyer questions never name the org


def test_parse_questions_skips_blanks_and_comments(tmp_path: Path) -> None:
    assert parse_questions("# header\n\n  What is  X?  \n#c\nWhich Y?\n") == ["What is X?", "Which Y?"]
    with pytest.raises(InputError, match="no such file"):
        read_questions(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("# only comments\n\n")
    with pytest.raises(InputError, match="no questions"):
        read_questions(empty)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InputError, match="not UTF-8"):
        read_questions(binary)


def test_split_list_and_validate_matrix() -> None:
    assert split_list("chatgpt, perplexity,,ChatGPT , gpt-4.1") == ["chatgpt", "perplexity", "gpt-4.1"]
    assert split_list(["a,b", "c"]) == ["a", "b", "c"]
    assert validate_matrix(" Together  AI ", "https://www.Together.ai/", ["chatgpt"], ["us", "GB"]) == (
        "Together AI", "together.ai", ["chatgpt"], ["US", "GB"]
    )
    assert validate_matrix("X", "", ["gpt-4.1"], [])[3] == [""]  # no location: one run without one
    with pytest.raises(InvalidArgument) as e:
        validate_matrix("", "nodot", [], ["USA", "1"])
    assert {f for f, _ in e.value.violations} == {"org_name", "org_domain", "models", "locations"}


def test_merge_variations() -> None:
    assert merge_variations(["A", "B"], ["B", " C ", ""], ["A"]) == ["A", "B", "C"]


def test_keys_and_labels() -> None:
    assert org_key("Together  AI", "https://together.ai/x") == "together ai|together.ai"
    assert item_key("q1", "chatgpt", "US") == "q1|chatgpt|US"
    label = item_label(3, "What are the best GPU cloud providers for training large language models and why so?",
                       "chatgpt", "US")
    assert label.startswith("chatgpt US · Q3 What are the best") and label.endswith("…") and len(label) < 100
    # Repeated samples: one sample per cell keeps the format of older runs; several name the sample.
    assert item_key("q1", "chatgpt", "US", 0, 1) == "q1|chatgpt|US"
    assert [item_key("q1", "chatgpt", "US", k, 3) for k in range(3)] == ["q1|chatgpt|US|0", "q1|chatgpt|US|1",
                                                                         "q1|chatgpt|US|2"]
    assert item_label(3, "Who hosts Llama?", "gpt-5.5", "", 0, 1) == "gpt-5.5 - · Q3 Who hosts Llama?"
    assert item_label(3, "Who hosts Llama?", "gpt-5.5", "GB", 1, 3) == "gpt-5.5 GB · Q3 #2/3 Who hosts Llama?"


def test_samples_bounds_and_options() -> None:
    from services.orchestrator.app.jobs.evaluation import (
        DEFAULT_SAMPLES,
        MAX_SAMPLES,
        EvalOptions,
        SweepEstimate,
        answer_usd_estimate,
        check_limits,
    )
    from shared.config import get_settings

    s = get_settings().model_copy(update={"max_run_items": 12})
    assert DEFAULT_SAMPLES == 3 and MAX_SAMPLES == 20
    check_limits(s, questions=["a?", "b?"], models=["gpt-5.5", "chatgpt"], locations=["US"], samples=3)
    with pytest.raises(InvalidArgument) as e:  # 2 × 2 × 1 × 4 = 16 > 12
        check_limits(s, questions=["a?", "b?"], models=["gpt-5.5", "chatgpt"], locations=["US"], samples=4)
    assert e.value.violations[0][0] == "questions" and "× samples" in e.value.message and "16" in e.value.message
    for bad in (0, 21):
        with pytest.raises(InvalidArgument) as e:
            check_limits(s, questions=["a?"], samples=bad)
        assert e.value.violations[0][0] == "samples"
    # Runs stored before repeated samples read as one sample, no reuse.
    old = EvalOptions.from_dict({"org_id": "o", "org_name": "Acme", "models": ["gpt-5.5"], "locations": ["US"]})
    assert (old.samples, old.reuse_answers) == (1, "")
    assert EvalOptions.from_dict(EvalOptions("o", "Acme", "", ("gpt-5.5",), ("US",), samples=5).to_dict()).samples == 5
    # The estimate: Bright Data records at the configured price; API answers at the catalogue's token prices.
    assert answer_usd_estimate(s, "chatgpt", True) == s.brightdata_record_usd
    p_in, p_out = s.token_prices("gpt-5.5")
    assert answer_usd_estimate(s, "gpt-5.5", False) > (3000 * p_in + 1000 * p_out) / 1e6
    est = SweepEstimate(20, 4, 2, 3, 12.5)
    assert est.question_runs == 480
    assert est.describe() == ("20 questions × 4 models × 2 locations × 3 samples = 480 question runs, estimated "
                              "cost $12.50")


def test_group_ratios() -> None:
    g = GroupStats("chatgpt", "US", answers=4, mentioned=3, rank_sum=6, ranked=3, org_mentions=5,
                   competitor_mentions=15, citations=10, owned_citations=2)
    assert g.visibility_rate == 0.75 and g.average_rank == 2.0
    assert g.share_of_voice == 0.25 and g.owned_citation_share == 0.2
    empty = GroupStats("x", "")
    assert empty.visibility_rate is None and empty.average_rank is None and empty.share_of_voice is None


def test_evaluation_from_proto() -> None:
    resp = xpb.ExtractResponse(
        org_eval=xpb.OrgEval(mentioned=True, mention_count=2, rank=2, first_offset=40,
                             sentiment=xpb.OrgEval.POSITIVE, evidence="2. **Together AI** – fast", owned_citation_count=1),
        competitors=[xpb.Competitor(name="CoreWeave", rank=1, mention_count=1), xpb.Competitor(name=" ", rank=3)],
        citations=[xpb.ExtractedCitation(url="https://together.ai/", domain="together.ai", position=1,
                                         source=xpb.ExtractedCitation.PROVIDER, owned=True)],
    )
    ev = evaluation_from_proto(resp)
    assert ev.sentiment == "POSITIVE" and ev.rank == 2 and ev.competitors == [("CoreWeave", 1, 1)]
    assert ev.citations == [(1, "https://together.ai/", "together.ai", "", "PROVIDER", True, False, "")]
    assert summary(ev) == "named #2 (POSITIVE) · 1 competitors · 1 citations"
    none = evaluation_from_proto(xpb.ExtractResponse(org_eval=xpb.OrgEval(rank=0, first_offset=-1)))
    assert none.sentiment == "UNSPECIFIED" and summary(none).startswith("not named")
