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


# --- rules that generalise beyond the dev answers (issue 13 item 4; corpus README "Sentiment toward the org") ---


def _eval(answer: str, org: Org) -> tuple[str, str]:
    """(language, verdict); every non-neutral verdict must come with evidence spans inside the answer. The org is
    given a domain (``<name>.com``) as real requests do (a name that is also a word needs brand evidence)."""
    if not org.domain:
        org = Org(org.name, org.name.lower().replace(" ", "") + ".com")
    e = analyze(answer, org).org_eval
    assert e.mentioned
    if e.sentiment != "NEUTRAL":
        spans = [v for m in e.mentions for v in m.evidence]
        assert spans, "a non-neutral verdict without evidence"
        for v in spans:
            assert answer[v.start : v.end].strip() and v.polarity in (1, -1)
    return e.language, e.sentiment


@pytest.mark.parametrize(
    ("answer", "org", "expected"),
    [
        # The negator is further from the adjective in Spanish, German and French.
        ("Pipedrive es fácil de configurar para equipos pequeños. No es la opción más barata del mercado.",
         "Pipedrive", ("es", "MIXED")),
        ("Personio deckt alle Prozesse ab, ist aber nicht besonders günstig für kleine Firmen.",
         "Personio", ("de", "NEGATIVE")),
        # "pas" + "moins" (not the least expensive) cancel out to an unfavourable "chère"; "ne" is paired.
        ("Pour une SASU, Qonto n'est pas la moins chère du marché des néobanques en France.",
         "Qonto", ("fr", "NEGATIVE")),
        # "ne … plus" is one negation.
        ("Depuis deux ans, Transavia n'est plus fiable sur les vols du matin au départ d'Orly.",
         "Transavia", ("fr", "NEGATIVE")),
        # A conjunction or a comma ends the scope: "fast" is not negated by "no".
        ("Attio has no hidden fees and fast support.", "Attio", ("en", "POSITIVE")),
        # "not only" negates nothing.
        ("Attio is not only fast but also reliable.", "Attio", ("en", "POSITIVE")),
    ],
)
def test_negation_scope(answer: str, org: str, expected: tuple[str, str]) -> None:
    assert _eval(answer, Org(org)) == expected


def _comparison(text: str, lang: str) -> int:
    return sentiment.polarity(sentiment.words(text), lang).comparison


def test_comparatives_need_a_comparison_and_may_be_far_from_than() -> None:
    assert _comparison("its landing pages are easier to set up than Mailchimp's", "en") == 1
    assert _comparison("much more expensive than the others", "en") == -1
    assert _comparison("charges by emails sent rather than contacts", "en") == 0
    assert _comparison("popular with more than 10 000 teams", "en") == 0
    # Spanish/French "que" is also "that", German "als" also "as": a comparison needs its marker.
    assert _comparison("una herramienta fiable que incluye nóminas", "es") == 0
    assert _comparison("es más fiable que Glovo", "es") == 1
    assert _comparison("Personio gilt als zuverlässig", "de") == 0
    assert _comparison("deutlich günstiger als die Bahn", "de") == 1
    assert _comparison("moins cher que Sellsy", "fr") == 1
    # "inférieur à" / "superior a", turned round when said of a price.
    assert _comparison("des prix souvent inférieurs à ceux du TGV", "fr") == 1
    assert _comparison("una calidad superior a la de Glovo", "es") == 1


def test_comparison_direction_far_from_than_and_in_french() -> None:
    mailchimp = Org("Mailchimp")
    answer = "- **Mailchimp**: contact-based pricing.\n- **Brevo**: easier to set up than Mailchimp for a small list.\n"
    assert _eval(answer, mailchimp) == ("en", "NEGATIVE")
    assert _eval("Sellsy regroupe CRM et factures. Axonaut est moins cher que Sellsy pour une TPE.",
                 Org("Sellsy")) == ("fr", "NEGATIVE")


@pytest.mark.parametrize(
    ("answer", "org", "expected"),
    [
        # Domain nouns after a handling word are what the product handles, even with a "suffer" cue ("known").
        ("Snyk scans open-source dependencies for known vulnerabilities and licence risk.", "Snyk", "NEUTRAL"),
        # English "a" is no suffer cue (French "a" = "has" is, only in French).
        ("In our stack, Sentry groups errors and crashes into issues and alerts you when a new bug appears.", "Sentry", "NEUTRAL"),
        ("Last year, Sentry had known bugs in its mobile SDK.", "Sentry", "NEGATIVE"),
        ("HarfangLab détecte les menaces et les attaques par rançongiciel sur les postes.", "HarfangLab", "NEUTRAL"),
        ("ESET detecta amenazas y vulnerabilidades en los portátiles de la empresa.", "ESET", "NEUTRAL"),
        # A negative word before a measured object, or after "during", is no judgement of the org.
        ("Im Test erfasst Sentry Fehler, Abstürze und langsame Transaktionen in allen Anwendungen.", "Sentry", "NEUTRAL"),
        ("Datadog surfaces slow queries and traces them to the service that issued them.", "Datadog", "NEUTRAL"),
        ("At Costco, some items have been limited to three packs per member during shortages.", "Costco", "NEUTRAL"),
    ],
)
def test_domain_nouns_measured_objects_and_circumstances(answer: str, org: str, expected: str) -> None:
    assert _eval(answer, Org(org))[1] == expected


@pytest.mark.parametrize(
    ("answer", "org", "expected"),
    [
        # A quota or a scope is description; a judgement of the limit is not.
        ("The free plan of Hotjar is limited to 35 sessions a day.", "Hotjar", "NEUTRAL"),
        ("The Executive card at Costco adds 2% back on most purchases, capped at $1,250 a year.", "Costco", "NEUTRAL"),
        ("En Hotjar, el plan Basic es gratuito y está limitado a 35 sesiones diarias.", "Hotjar", "NEUTRAL"),
        ("Chez PayFit, la gestion des temps est limitée aux absences et aux heures supplémentaires.", "PayFit",
         "NEUTRAL"),
        ("Der kostenlose Plan von Sentry ist auf drei Nutzer begrenzt, auf Wunsch begrenzt auf ein Projekt.",
         "Sentry", "NEUTRAL"),
        ("Hotjar's free plan is very limited for a busy shop.", "Hotjar", "NEGATIVE"),
    ],
)
def test_limits_are_description(answer: str, org: str, expected: str) -> None:
    assert _eval(answer, Org(org))[1] == expected


def test_price_direction_words_only_where_a_price_is_named() -> None:
    # "Higher volume" is no price; "lower effective fees" is.
    assert _eval("With Helcim: higher volume, lower effective fees.", Org("Helcim"))[1] == "POSITIVE"
    assert _eval("With Helcim the fees are higher for small shops.", Org("Helcim"))[1] == "NEGATIVE"


@pytest.mark.parametrize(
    ("answer", "org", "expected"),
    [
        ("Für kleine Firmen ist Kenjo die günstigste Lösung im Vergleich.", "Kenjo", ("de", "POSITIVE")),
        # "puntual" / "ponctuel" are evaluations only with a degree word ("ofertas puntuales" = one-off offers).
        ("Iberia tiene ofertas puntuales en la ruta de Buenos Aires durante el invierno.", "Iberia", ("es", "NEUTRAL")),
        ("En la ruta de Buenos Aires, Iberia es muy puntual y el servicio a bordo es correcto.", "Iberia",
         ("es", "POSITIVE")),
        # Explicit recommendations and standing, in every language.
        ("**Fazit:** Startet mit HubSpot, solange euch der kostenlose Funktionsumfang reicht.", "HubSpot",
         ("de", "POSITIVE")),
        ("Mi recomendación: si buscas algo sencillo para el equipo, empieza con Pipedrive.", "Pipedrive",
         ("es", "POSITIVE")),
        ("Pour une petite entreprise qui démarre, commencez par Qonto et son offre de base.", "Qonto",
         ("fr", "POSITIVE")),
        ("Jira es el estándar de facto para gestionar incidencias en empresas grandes.", "Jira", ("es", "POSITIVE")),
    ],
)
def test_language_words_superlatives_and_recommendations(answer: str, org: str, expected: tuple[str, str]) -> None:
    assert _eval(answer, Org(org)) == expected


def test_a_sentence_that_refers_back_stays_with_the_org() -> None:
    # "It …" / "Its …" keep the org as the subject although the sentence names another organisation.
    assert sentiment.refers_back("Its per-user pricing gets expensive") and not sentiment.refers_back("Heroku is")
    answer = (
        "**Render** runs web services, workers and managed Postgres from one dashboard. It is the closest thing to "
        "the old Heroku experience, and pricing is predictable, but cold starts on the free instances are slow."
    )
    assert _eval(answer, Org("Render")) == ("en", "MIXED")
    answer = (
        "PagerDuty routes alerts to whoever is on call and escalates unacknowledged incidents. Its per-user "
        "pricing gets expensive quickly once you add Opsgenie-style add-ons from Atlassian."
    )
    assert _eval(answer, Org("PagerDuty")) == ("en", "NEGATIVE")


@pytest.mark.parametrize(
    ("answer", "org", "expected"),
    [
        # "Best for:" as a field label gives a use case (description); "best for" in prose is a fit (favourable).
        ("1. **Attio**\n   - **Best for:** seed-stage startups\n   - **Pricing:** from $29 per seat\n", "Attio",
         ("en", "NEUTRAL")),
        ("For seed-stage startups, Attio is best for teams that live in email.", "Attio", ("en", "POSITIVE")),
        ("- **Holded**\n  - **Ideal para:** autónomos y pymes en España\n  - **Precio:** desde 15 € al mes\n",
         "Holded", ("es", "NEUTRAL")),
        # A "Cons:" label is unfavourable; fewer false positives is favourable, more of them is not.
        ("**SentinelOne** has rollback after ransomware. **Cons:** the console is busy at scale.", "SentinelOne",
         ("en", "NEGATIVE")),
        ("In our tests SentinelOne produced fewer false positives on developer laptops.", "SentinelOne",
         ("en", "POSITIVE")),
        ("In our tests SentinelOne has caused more false positives on developer laptops.", "SentinelOne",
         ("en", "NEGATIVE")),
    ],
)
def test_labels_and_false_positives(answer: str, org: str, expected: tuple[str, str]) -> None:
    assert _eval(answer, Org(org)) == expected


def test_comparisons_without_than() -> None:
    assert _comparison("wirkt aber im Vergleich zu weniger ausgereift", "de") == -1
    assert _comparison("the console is less polished compared to the others", "en") == -1
    # "Compared to X, Org is cheap": the marker introduces the subject, the clause is read plainly.
    assert _comparison("compared to , it is cheap", "en") == 0
    kenjo = Org("Kenjo", "kenjo.io")
    answer = (
        "Für kleine Firmen ist Kenjo zwar die günstigste Lösung, wirkt aber im Vergleich zu Personio weniger "
        "ausgereift."
    )
    assert _eval(answer, kenjo) == ("de", "MIXED")
    # The same sentence read for Personio: the object of an unfavourable comparison is credited.
    assert _eval(answer, Org("Personio", "personio.de"))[1] == "POSITIVE"


@pytest.mark.parametrize(
    ("answer", "org", "expected"),
    [
        # German and French negations after the verb.
        ("Für Agenturen mit vielen Kunden lohnt sich Kenjo nicht, und die App überzeugt nicht.", "Kenjo",
         ("de", "NEGATIVE")),
        ("Für Agenturen ist Kenjo nicht teuer, und der Support antwortet schnell.", "Kenjo", ("de", "POSITIVE")),
        ("Pour une agence, l'application de Sellsy ne convainc pas et la synchronisation est lente.", "Sellsy",
         ("fr", "NEGATIVE")),
    ],
)
def test_negation_after_the_verb(answer: str, org: str, expected: tuple[str, str]) -> None:
    assert _eval(answer, Org(org)) == expected


def test_rarely_is_a_negator() -> None:
    # "rarely has outages" is favourable (the domain noun is suffered, and negated); "selten", "rarement" too.
    assert _eval("Among processors, Adyen rarely has outages.", Org("Adyen"))[1] == "POSITIVE"
    assert _eval("Unter den Anbietern ist Mollie selten langsam, auch zu Spitzenzeiten.", Org("Mollie")) == (
        "de",
        "POSITIVE",
    )


def test_english_comparatives_and_superlatives_of_lexicon_words() -> None:
    lex = sentiment.lexicon("en")
    assert sentiment._en_degree("stronger", lex, True) == 1 and sentiment._en_degree("clunkier", lex, True) == -1
    assert sentiment._en_degree("smoothest", lex, False) == 1  # "-est" needs no context
    assert sentiment._en_degree("skipper", lex, False) == 0  # an "-er" noun outside a comparative context
    assert _eval("For automations, Kit is stronger than most newsletter tools.", Org("Kit", "kit.com"))[1] == (
        "POSITIVE"
    )


def test_than_makes_an_object_even_without_a_known_comparative() -> None:
    # "More serious than Duolingo": Duolingo is an object, so the next clause still talks about Babbel.
    answer = "2. **Babbel** – More serious than Duolingo, though the app can feel repetitive after a few months.\n"
    assert _eval(answer, Org("Babbel", "babbel.com")) == ("en", "NEGATIVE")


def test_a_domain_noun_found_as_a_brand_attributes_nothing() -> None:
    assert sentiment.is_domain_noun("Ransomware") and not sentiment.is_domain_noun("Bitdefender")
    answer = "**1. Sophos Intercept X**\nErkennt Ransomware zuverlässig, aber die Konsole ist nicht gerade intuitiv.\n"
    assert _eval(answer, Org("Sophos", "sophos.com", products=("Sophos Intercept X",))) == ("de", "MIXED")


def test_slow_responses_in_spanish() -> None:
    answer = "Para una pyme, ESET es fácil de usar, aunque el soporte tarda en responder."
    assert _eval(answer, Org("ESET", "eset.com")) == ("es", "MIXED")


def test_pros_and_cons_columns_and_row_labels() -> None:
    assert sentiment.column_label("**Cons**") == -1 and sentiment.column_label("Stärken") == 1
    assert sentiment.column_label("Pricing") == 0
    rows = (
        "| Anbieter | Preis | Stärken | Schwächen |\n|---|---|---|---|\n"
        "| Pipedrive | ab 14 € | Pipeline-Ansicht | wenig Marketingfunktionen |\n"
        "| HubSpot | ab 20 € | Marketing | Preise in höheren Stufen |\n"
    )
    assert _eval(rows, Org("Pipedrive", "pipedrive.com")) == ("de", "MIXED")
    columns = (
        "| | Plausible | Fathom |\n|---|---|---|\n| Pros | EU hosting | simple dashboard |\n"
        "| Cons | no funnels on the base plan | no self-hosting |\n"
    )
    assert _eval(columns, Org("Fathom", "usefathom.com"))[1] == "MIXED"


def test_acronyms_are_no_evaluations_but_capitalised_negators_are() -> None:
    assert "aml" not in sentiment.words("runs AML transaction monitoring")  # VADER: "aml" = chat slang
    assert "not" in sentiment.words("Do NOT pick it for payroll")
    answer = "For fintechs, Sardine runs AML transaction monitoring with case management."
    assert _eval(answer, Org("Sardine", "sardine.ai"))[1] == "NEUTRAL"


def test_clause_opening_comparison_with_the_verb_second() -> None:
    # German puts the verb right after "Im Vergleich zu X": the marker introduces the subject (HRworks).
    assert _comparison("im vergleich zu ist deutlich günstiger", "de") == 0
    answer = "Für 60 Leute passt HRworks gut. Im Vergleich zu Personio ist HRworks deutlich günstiger."
    assert _eval(answer, Org("HRworks", "hrworks.de")) == ("de", "POSITIVE")


def test_the_catch_and_not_always_reachable() -> None:
    answer = (
        "1. **Grafana Cloud** — the free tier is generous. The catch is that you assemble the pieces yourself.\n"
        "2. **Datadog** — one agent for everything.\n"
    )
    assert _eval(answer, Org("Grafana Labs", "grafana.com", products=("Grafana Cloud",)))[1] == "MIXED"
    answer = "Pour le quotidien, Boursobank est rapide, mais le service client n'est pas toujours joignable."
    assert _eval(answer, Org("Boursobank", "boursobank.com")) == ("fr", "MIXED")


# Third sentiment round (f_ cases): phrase families generated from one rule each.
@pytest.mark.parametrize(
    ("answer", "org", "expected"),
    [
        # standing adverb + reception word is popularity
        ("PayPal is widely recognised by shoppers.", Org("PayPal", "paypal.com"), "POSITIVE"),
        ("Attio is broadly adopted by agencies.", ATTIO, "POSITIVE"),
        # frozen balances / accounts are something the org's users suffer
        ("Merchants report frozen balances with Attio.", ATTIO, "NEGATIVE"),
        # "basic" is a judgement only after a perception verb or a degree word ...
        ("Attio has a visual pipeline, though reporting feels basic next to HubSpot.", ATTIO, "NEGATIVE"),
        ("Attio's dashboards are rather basic.", ATTIO, "NEGATIVE"),
        # ... not as a description or a plan name
        ("Attio offers basic reporting on the Basic plan.", ATTIO, "NEUTRAL"),
        # delay verbs with a degree word before their object, es / de / fr
        ("Attio es fácil de usar, aunque el soporte tarda bastante en responder.", ATTIO, "MIXED"),
        ("Die Freischaltung bei Attio dauert oft lange.", ATTIO, "NEGATIVE"),
        ("Attio prend du temps à configurer.", ATTIO, "NEGATIVE"),
    ],
)
def test_third_round_phrase_families(answer: str, org: Org, expected: str) -> None:
    assert _verdict(answer, org) == expected
