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
