"""Sentiment toward the org, per mention: negation, comparison direction, domain nouns, four languages,
evidence spans (services/extraction/sentiment.py and org_eval.py, through core.analyze)."""

from __future__ import annotations

import pytest

from services.extraction import sentiment
from services.extraction.core import Org, analyze

ATTIO = Org("Attio", "attio.com")


def _verdict(answer: str, org: Org = ATTIO) -> str:
    return analyze(answer, org).org_eval.sentiment


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Attio is not expensive and the app is fast.", "POSITIVE"),
        ("Attio is fast, but it is not cheap for large teams.", "MIXED"),
        ("Attio is not the cheapest option for agencies.", "NEGATIVE"),
        ("Attio tracks bugs, issues and incidents in one inbox.", "NEUTRAL"),  # domain nouns: what it handles
        ("Attio had a major outage in March.", "NEGATIVE"),  # … unless the org suffers them
        ("**Pros and cons:** Attio syncs with GitHub.", "NEUTRAL"),  # a section label is no opinion
    ],
)
def test_english_rules(answer: str, expected: str) -> None:
    assert _verdict(answer) == expected


def test_comparison_direction() -> None:
    jira = "Jira is the default for large companies."
    assert _verdict(f"{jira} Attio is cheaper than Jira for small teams.") == "POSITIVE"
    assert _verdict(f"{jira} Jira is cheaper than Attio for small teams.") == "NEGATIVE"
    assert _verdict("Jira is the default. Jira is more expensive than Attio.", ATTIO) == "POSITIVE"
    # The same sentence read for the other side.
    assert _verdict("Attio is cheaper than Jira for small teams.", Org("Jira", "atlassian.com")) == "NEGATIVE"


@pytest.mark.parametrize(
    ("answer", "lang", "expected"),
    [
        ("Para equipos pequeños, Holded es la mejor opción, aunque su soporte es lento.", "es", "MIXED"),
        ("Holded es fiable y económico para autónomos en España.", "es", "POSITIVE"),
        ("Für kleine Teams ist Holded zuverlässig, aber die Oberfläche wirkt überladen.", "de", "MIXED"),
        ("Holded ist leider teuer und langsam geworden.", "de", "NEGATIVE"),
        ("Pour les indépendants, Holded est fiable et pas cher.", "fr", "POSITIVE"),
        ("Holded est devenu cher et le support est lent.", "fr", "NEGATIVE"),
    ],
)
def test_languages(answer: str, lang: str, expected: str) -> None:
    e = analyze(answer, Org("Holded", "holded.com")).org_eval
    assert (e.language, e.sentiment) == (lang, expected)


def test_per_mention_verdicts_with_evidence_spans() -> None:
    answer = (
        "1. **Attio** – fast and polished; the default pick for startups.\n"
        "2. **Jira** – flexible but slow.\n\n"
        "Attio has a steep learning curve for non-engineers, though."
    )
    e = analyze(answer, ATTIO).org_eval
    assert e.sentiment == "MIXED"
    assert [m.sentiment for m in e.mentions] == ["POSITIVE", "NEGATIVE"]
    for m in e.mentions:
        assert m.evidence
        for span in m.evidence:
            assert answer[span.start : span.end].strip()
            assert span.polarity in (1, -1)
    # "slow" is said of Jira: it is in no evidence for Attio.
    assert all("slow" not in v.text for m in e.mentions for v in m.evidence)


def test_not_named_is_neutral_without_language() -> None:
    e = analyze("Jira is slow and expensive.", ATTIO).org_eval
    assert (e.mentioned, e.sentiment, e.language, e.mentions) == (False, "NEUTRAL", "", ())


def test_language_detection_is_offline_and_bounded() -> None:
    assert sentiment.detect_language("") == "en"
    assert sentiment.detect_language("Die Lösung ist zuverlässig und günstig. " * 200) == "de"
