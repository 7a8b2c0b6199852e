"""ParseClassification / GetClassificationSchema cores: the schema, the prompt, and every kind of violation."""

from __future__ import annotations

import json

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.extraction.classification import (
    FIELDS,
    TIERS,
    Classification,
    classification_schema,
    parse_classification,
    system_prompt,
)
from shared.config import DEFAULT_CATEGORIES
from shared.errors import InvalidArgument

CATS = list(DEFAULT_CATEGORIES)
URLS = ["https://example.com/a", "https://news.example.org/story?id=3", "https://Docs.Together.ai/inference/"]


def valid(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "tier": "HOT",
        "score": 91,
        "category": "Frontier pre-training",
        "rationale": "Operates a 10k-GPU cluster and trains its own frontier models.",
        "evidence_urls": ["https://example.com/a"],
    }
    base.update(over)
    return base


def parse(obj: object, urls: list[str] = URLS) -> Classification:
    text = obj if isinstance(obj, str) else json.dumps(obj)
    return parse_classification(text, urls, CATS, company="Acme")


def violations(obj: object, urls: list[str] = URLS) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as ei:
        parse(obj, urls)
    return dict(ei.value.violations)


# --- schema and prompt ---------------------------------------------------------------------------------------


def test_schema_is_strict_compatible() -> None:
    schema = classification_schema(CATS)
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(schema["properties"]) == set(FIELDS)
    assert schema["properties"]["tier"]["enum"] == list(TIERS)
    assert schema["properties"]["category"]["enum"] == CATS
    assert schema["properties"]["score"] == {
        **schema["properties"]["score"],
        "type": "integer",
        "minimum": 0,
        "maximum": 100,
    }
    assert schema["properties"]["evidence_urls"]["items"] == {"type": "string"}
    jsonschema.Draft202012Validator.check_schema(schema)


def test_valid_classification_round_trips_through_schema_and_parser() -> None:
    schema = classification_schema(CATS)
    doc = valid()
    jsonschema.validate(doc, schema)
    c = parse(doc)
    assert c == Classification(
        "HOT", 91, "Frontier pre-training", doc["rationale"], ["https://example.com/a"]
    )  # type: ignore[arg-type]
    # What the parser returns is itself a valid classification.
    jsonschema.validate(
        {
            "tier": c.tier,
            "score": c.score,
            "category": c.category,
            "rationale": c.rationale,
            "evidence_urls": c.evidence_urls,
        },
        schema,
    )


def test_schema_rejects_what_the_parser_rejects() -> None:
    schema = classification_schema(CATS)
    for bad in (
        valid(tier="LUKEWARM"),
        valid(score=101),
        valid(score="55"),
        valid(category="Crypto mining"),
        valid(extra=1),
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
        with pytest.raises(InvalidArgument):
            parse(bad)


def test_system_prompt_names_tiers_categories_and_source_rule() -> None:
    prompt = system_prompt(CATS)
    for t in TIERS:
        assert t in prompt
    for c in CATS:
        assert c in prompt
    assert "cite only URLs from the provided sources" in prompt
    assert "API" in prompt and "wrapper" in prompt  # COLD explained


def test_custom_categories_flow_into_schema_prompt_and_parser() -> None:
    cats = ["Robotics", "Biotech"]
    assert classification_schema(cats)["properties"]["category"]["enum"] == cats
    assert "- Robotics" in system_prompt(cats)
    c = parse_classification(json.dumps(valid(category="biotech")), URLS, cats)
    assert c.category == "Biotech"


# --- accepted variations -------------------------------------------------------------------------------------


def test_tier_and_category_are_case_insensitive_and_normalised() -> None:
    c = parse(valid(tier=" warm ", category="  frontier   PRE-TRAINING "))
    assert (c.tier, c.category) == ("WARM", "Frontier pre-training")


def test_evidence_urls_match_after_light_normalisation_and_come_back_as_given() -> None:
    c = parse(
        valid(
            evidence_urls=[
                "HTTPS://EXAMPLE.COM/a/",
                "https://docs.together.ai:443/inference",
                "https://example.com/a",
            ]
        )
    )
    assert c.evidence_urls == ["https://example.com/a", "https://Docs.Together.ai/inference/"]


def test_empty_evidence_is_allowed_and_fenced_json_is_unwrapped() -> None:
    assert parse(valid(evidence_urls=[])).evidence_urls == []
    fenced = "```json\n" + json.dumps(valid(tier="COLD", score=3)) + "\n```"
    assert parse(fenced).tier == "COLD"


@pytest.mark.parametrize("score", [0, 100, 55])
def test_integer_scores_at_and_inside_bounds(score: int) -> None:
    assert parse(valid(score=score)).score == score


# --- violations ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, needle",
    [
        ("not json", "not valid JSON"),
        ("", "empty"),
        ("[1, 2]", "must be a JSON object, got array"),
        ('"HOT"', "got string"),
        ("null", "got null"),
    ],
)
def test_not_an_object(text: str, needle: str) -> None:
    with pytest.raises(InvalidArgument) as ei:
        parse(text)
    assert ei.value.violations == [("classification_json", ei.value.message)]
    assert needle in ei.value.message


@pytest.mark.parametrize(
    "over, field, needle",
    [
        ({"tier": "LUKEWARM"}, "tier", "one of HOT, WARM, WATCH, COLD"),
        ({"tier": 1}, "tier", "got 1"),
        ({"score": 55.5}, "score", "integer"),
        ({"score": 55.0}, "score", "integer"),  # decided: non-integers are rejected, even 55.0
        ({"score": "55"}, "score", "got string"),
        ({"score": True}, "score", "got boolean"),
        ({"score": None}, "score", "got null"),
        ({"score": -1}, "score", "between 0 and 100"),
        ({"score": 101}, "score", "between 0 and 100"),
        ({"category": "Crypto mining"}, "category", "category must be one of"),
        ({"category": 7}, "category", "got 7"),
        ({"rationale": ""}, "rationale", "must not be empty"),
        ({"rationale": "   "}, "rationale", "must not be empty"),
        ({"rationale": ["a"]}, "rationale", "must be a string"),
        ({"evidence_urls": "https://example.com/a"}, "evidence_urls", "array of strings"),
        ({"evidence_urls": {"a": 1}}, "evidence_urls", "got object"),
        ({"confidence": 0.9}, "confidence", "unexpected property"),
    ],
)
def test_each_violation_names_its_field(over: dict[str, object], field: str, needle: str) -> None:
    v = violations(valid(**over))
    assert list(v) == [field]
    assert needle in v[field]


@pytest.mark.parametrize("missing", FIELDS)
def test_missing_field(missing: str) -> None:
    doc = valid()
    del doc[missing]
    assert violations(doc) == {missing: f"{missing} is required"}


def test_evidence_url_violations_are_indexed() -> None:
    v = violations(
        valid(
            evidence_urls=["https://example.com/a", 3, "https://example.com/b", "https://example.com/a?x=1"]
        )
    )
    assert set(v) == {"evidence_urls[1]", "evidence_urls[2]", "evidence_urls[3]"}
    assert "must be a string" in v["evidence_urls[1]"]
    assert "not one of the search results" in v["evidence_urls[2]"]


def test_evidence_without_search_results_is_rejected() -> None:
    assert set(violations(valid(), urls=[])) == {"evidence_urls[0]"}


def test_all_violations_are_collected_at_once() -> None:
    bad = {
        "tier": "tepid",
        "score": 55.5,
        "category": "Crypto",
        "rationale": "",
        "evidence_urls": ["https://x.io", "https://example.com/a"],
        "why": "?",
    }
    with pytest.raises(InvalidArgument) as ei:
        parse(bad)
    fields = [f for f, _ in ei.value.violations]
    assert sorted(fields) == sorted(["why", "tier", "score", "category", "rationale", "evidence_urls[0]"])
    assert "6 problems" in ei.value.message and "for Acme" in ei.value.message


# --- the parser and the schema agree -------------------------------------------------------------------------

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 105),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from([*TIERS, *CATS, "hot", ""]),
    st.lists(st.sampled_from([*URLS, "https://x.io"]), max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*FIELDS, "extra"]), _values, max_size=6))
def test_parser_accepts_exactly_what_the_schema_accepts(doc: dict[str, object]) -> None:
    """For exact-case enums, evidence among the search results, non-blank rationale and no 55.0-style floats, the
    parser's verdict equals jsonschema's: the prompt's contract and the validation never disagree."""
    schema = classification_schema(CATS)
    exact_case = doc.get("tier") in TIERS and doc.get("category") in CATS
    blank = isinstance(doc.get("rationale"), str) and not str(doc["rationale"]).strip()
    whole_float = isinstance(doc.get("score"), float) and float(doc["score"]).is_integer()  # type: ignore[arg-type]
    foreign = isinstance(doc.get("evidence_urls"), list) and "https://x.io" in doc["evidence_urls"]  # type: ignore[operator]
    try:
        jsonschema.validate(doc, schema)
        schema_ok = True
    except jsonschema.ValidationError:
        schema_ok = False
    try:
        parse(doc)
        parser_ok = True
    except InvalidArgument:
        parser_ok = False
    if exact_case and not blank and not whole_float and not foreign:
        assert parser_ok == schema_ok
    if parser_ok:
        assert schema_ok or not exact_case  # the parser is never laxer than the schema except for letter case
