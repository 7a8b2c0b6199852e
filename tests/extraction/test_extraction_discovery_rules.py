"""Brand discovery rules of issue 13 (general linguistic rules, one answer each, through :func:`core.analyze`).

The answers are written for these tests (no corpus case is copied): each shows one rule that makes a word a
brand, not a brand, or folds two names into one brand.
"""

from __future__ import annotations

import pytest

from services.extraction.core import Org, analyze

ACME = Org("Acmeflow", "acmeflow.io")


def _names(answer: str, org: Org = ACME, known: tuple[str, ...] = ()) -> list[str]:
    return [c.name for c in analyze(answer, org, known).competitors]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        # A product named through its maker ("its …", "X's …") is not a brand of its own.
        (
            "Zentrivo is fast, and its Pulse Graph makes triage easy. Acmeflow is cheaper. "
            "Many teams also like Qorbix's Signal Board.",
            ["Zentrivo", "Qorbix"],
        ),
        # A name that modifies a noun refers to a platform or an account, not an option.
        (
            "Acmeflow and Zentrivo both work well if you sell through a Shopify store with Klarvo wallets enabled.",
            ["Zentrivo"],
        ),
        # Owners, makers and former names fold into the brand they describe.
        (
            "1. **Acmeflow** – simple.\n2. **Pipewell** – by Datavance; solid.\n3. **Norra** (formerly Quillbase) – new.\n",
            ["Pipewell", "Norra"],
        ),
        # Product lines of one maker are one brand.
        (
            "Acmeflow covers most needs. Larger teams pair Vextor Analytics with Vextor Warehouse for raw data.",
            ["Vextor"],
        ),
        # An enumeration after a place preposition lists places.
        (
            "Acmeflow and Zentrivo have offices in Alvora, Brisk Harbour and Campo de Telva.",
            ["Zentrivo"],
        ),
        # The stack an option is built on is not an option.
        (
            "Acmeflow is hosted. Zentrivo is built on open-source Lumo, Tarn and Keld, so there is little lock-in.",
            ["Zentrivo"],
        ),
    ],
    ids=["product-of-maker", "modifier", "owner-and-former-name", "product-lines", "places", "stack"],
)
def test_english_rules(answer: str, expected: list[str]) -> None:
    assert _names(answer) == expected


def test_a_dictionary_word_that_is_a_sentence_subject_is_a_name() -> None:
    answer = "Acmeflow is the simplest tool. Fathom is the other name that comes up, and it is pricier."
    assert _names(answer) == ["Fathom"]


def test_an_answer_in_lower_case_throughout() -> None:
    answer = (
        "honestly i'd skip acmeflow these days, the editor feels clunky.\n\n"
        "what i'd look at instead:\n"
        "- zorblet if you just want plain newsletters\n"
        "- kit (formerly quanterkit) if you sell digital products\n"
        "- mailvane for the best free plan\n\n"
        "and drumly is worth the money for shops."
    )
    assert [n.casefold() for n in _names(answer)] == ["zorblet", "kit", "mailvane", "drumly"]


def test_institutions_take_an_article_in_german_and_french() -> None:
    de = "Die BaFin hat Acmeflow mehrfach gerügt. Zentrivo ist günstiger und Pexora bietet gute Zinsen."
    assert _names(de) == ["Zentrivo", "Pexora"]
    fr = "Selon la CNIL, Acmeflow pose problème. Zentrivo est une alternative, et Pexora aussi."
    assert "CNIL" not in _names(fr)


def test_german_section_labels_and_loan_words() -> None:
    answer = (
        "### Acmeflow\nAcmeflow ist schnell.\n\n### Zentrivo\nZentrivo ist günstig.\n\n"
        "### Fazit\nAcmeflow ist die beste Wahl. Redmine ist kostenlos, sieht aber veraltet aus."
    )
    assert _names(answer) == ["Zentrivo", "Redmine"]


def test_a_comparison_object_keeps_the_org_as_subject() -> None:
    answer = (
        "Acmeflow est l'outil le plus simple. L'interface est moins moderne que celle de Zentrivo, "
        "mais elle reste complète."
    )
    assert analyze(answer, ACME).org_eval.sentiment == "MIXED"


def test_a_name_that_lives_only_inside_another_brands_entry_is_part_of_it() -> None:
    # Items led by a brand: a feature, plan or integration named only there is not an option of its own; a
    # comparison point in the same item still is.
    answer = (
        "**1. Acmeflow** — flexible pipelines; Simple Lane is $35/month, with Pulsegrid flagging anomalies.\n\n"
        "**2. Zentrivo** — lives inside Corvane Workspace, so it suits teams on Corvane Mail.\n\n"
        "**3. Pexora** — cheaper than Quillbase, with a Brakko extension for prospecting.\n\n"
        "**4. Quillbase** — the oldest of the four.\n"
    )
    assert _names(answer) == ["Zentrivo", "Pexora", "Quillbase"]


def test_a_section_under_a_brand_heading_owns_its_first_paragraph_and_items_not_the_closing_one() -> None:
    answer = (
        "### Acmeflow\nFast triage: Pulsegrid groups duplicates.\n**Pros:** a good Brakko sync.\n\n"
        "### Zentrivo\nSimple and reliable.\n\nIf you already pay for Corvane, its Signal tab may be enough."
    )
    assert _names(answer) == ["Zentrivo", "Corvane"]


def test_header_cells_are_brands_under_a_criteria_word_in_any_language_or_next_to_the_org() -> None:
    de = "| Kriterium | Zentrivo | Pexora | Acmeflow |\n|---|---|---|---|\n| Preis | 8 € | 5 € | 4 € |\n"
    assert _names(de) == ["Zentrivo", "Pexora"]
    es = "| Precio | Acmeflow | Quillbase Go |\n|---|---|---|\n| Envío | 0,99 € | 0,49 € |\n"
    assert _names(es) == ["Quillbase Go"]
    # Header cells that are column labels stay labels.
    labels = "| Herramienta | Hosting | Precio |\n|---|---|---|\n| Acmeflow | UE | 9 € |\n| Zentrivo | EE. UU. | 0 € |\n"
    assert _names(labels) == ["Zentrivo"]


def test_a_source_list_names_publishers_not_options() -> None:
    answer = (
        "Acmeflow and Zentrivo are the usual picks[1][2].\n\n"
        "Sources\n"
        "1. About Acmeflow pipelines — docs.acmeflow.io — https://docs.acmeflow.io/pipelines\n"
        "2. Best tools of 2025 – Techgrove Weekly — https://techgrove.example/best\n"
        "[3] Quillbase review — https://reviews.example/quillbase\n"
    )
    assert _names(answer) == ["Zentrivo"]


def test_a_brand_shaped_name_opening_a_sentence_with_a_verb_is_a_name() -> None:
    answer = "Acmeflow is fine. QuillBase removed its free plan in 2024. Zentrivo still exists, but few use it."
    assert _names(answer) == ["QuillBase", "Zentrivo"]
    # A plural noun after the name is no verb: "Open-weight Vantor models you can host" names no organisation.
    assert _names("### Acmeflow\nFast.\n\n### Pexora Vantor\nOpen-weight Vantor models you can host.") == [
        "Pexora Vantor"
    ]


def test_bold_section_labels_are_labels_even_when_one_looks_like_a_name() -> None:
    answer = (
        "**Managed options.** Acmeflow is the easy one.\n\n"
        "**KLX and Vantor.** PexoraDB removed its free plan.\n\n"
        "**Other models.** Zentrivo stores the documents.\n\n"
        "**My take:** start with Acmeflow.\n"
    )
    assert _names(answer) == ["PexoraDB", "Zentrivo"]


def test_the_technology_options_wrap_run_or_build_on_is_not_an_option() -> None:
    answer = (
        "Most Brelvo-based hosts are similar. Acmeflow wraps Brelvo with auth, Zentrivo runs Quarkdb at the edge, "
        "and Pexora offers managed Tessil."
    )
    assert _names(answer) == ["Zentrivo", "Pexora"]


def test_products_listed_inside_a_brands_entry_are_that_brand() -> None:
    answer = (
        "- **Zentrivo** (Runline, Quill Beanstalk or plain QCS) gives the most control.\n"
        "- **Pexora** – in maintenance mode; Pexora points users to Pexora Express and Illumo instead.\n"
        "- **Acmeflow** – simple, and **Brakko** is the other option.\n"
    )
    assert _names(answer) == ["Zentrivo", "Pexora", "Brakko"]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        # A legal form alone is no name.
        ("Für kleine GmbHs passt Acmeflow, für Konzerne eher Zentrivo.", ["Zentrivo"]),
        # A sentence adverb is not part of the name after it.
        ("Acmeflow is fine for most teams. Otherwise Zentrivo is cheaper.", ["Zentrivo"]),
        # "X is worth a look" introduces an option, even when X is an everyday word.
        ("Acmeflow handles email well. Front is worth a look if sales works in the same inbox.", ["Front"]),
        # An everyday word capitalised mid-sentence as a subject, never in lower case: a name.
        ("Acmeflow is enough for notes, and Bear is the nicer-looking upgrade.", ["Bear"]),
        # Lower-case CamelCase names.
        ("**1. Acmeflow** – rápida.\n\n**2. easyJet** – puntual.\n\n**3. Zentrivo** – barata.\n", ["easyJet", "Zentrivo"]),
        # A name after a bare comma that opens a clause is not the last member of an enumeration.
        ("Acmeflow is the default. If you're on Shopify, Gorgias is built for that world.", ["Gorgias"]),
    ],
    ids=["legal-form", "sentence-adverb", "worth-a-look", "subject-never-lower", "camel-lower", "comma-clause"],
)
def test_evidence_rules(answer: str, expected: list[str]) -> None:
    assert _names(answer) == expected


def test_a_lower_case_lead_named_by_its_own_link_is_a_brand() -> None:
    answer = (
        "**1. Acmeflow** — flexible. ([acmeflow.io](https://acmeflow.io/pricing))\n\n"
        "**2. brisk** — contact-centric, from $20. ([brisk.app](https://www.brisk.app/pricing))\n\n"
        "**3. Zentrivo** — built-in calling.\n"
    )
    assert _names(answer) == ["brisk", "Zentrivo"]


def test_an_enumeration_written_with_bold_markup_is_still_an_enumeration() -> None:
    answer = "- **Acmeflow** is simple.\n\nAnd from the makers:\n\n- **Apple**, **Zentrivo** and **Pexora** run sales."
    assert _names(answer) == ["Apple", "Zentrivo", "Pexora"]


def test_cue_words_of_other_languages_introduce_options_but_not_nouns_or_places() -> None:
    de = "Acmeflow ist solide. Neobroker wie Zentrivo Capital sind günstiger, Zahlungen wie Kreditkarten kosten extra."
    assert _names(de) == ["Zentrivo Capital"]
    es = "Acmeflow es cómodo. Herramientas como Pexora también sirven, igual que en ciudades como Madrid."
    assert _names(es) == ["Pexora"]


def test_a_spanish_owner_phrase_folds_the_owner_into_the_brand() -> None:
    answer = "Acmeflow es la opción más simple. Zentrivo sigue siendo útil; pertenece a Quillbase Group."
    assert _names(answer) == ["Zentrivo"]


def test_a_common_word_org_name_that_opens_a_sentence_as_its_subject_is_a_mention() -> None:
    # "netflix" is frequent enough in the word list to count as a common word; as a sentence's subject, capitalised
    # everywhere in the answer, it is the org.
    evaluation = analyze("Netflix has the biggest library, but it is pricey.", Org("Netflix")).org_eval
    assert evaluation.mentioned and evaluation.mention_count == 1
    # A sentence-initial common word with no verb after it is no mention ("Target budget: …").
    assert not analyze("Target budget: under $500. Plan for it.", Org("Target")).org_eval.mentioned


def test_lower_case_and_camel_case_names_lead_rows_and_items() -> None:
    de = (
        "| Anbieter | Preis | Stärken |\n|---|---|---|\n| Acmeflow | 14 € | einfach |\n"
        "| QuillStationCRM | 19 € | deutscher Support |\n| zentrivo | 30 € | ERP inklusive |\n"
    )
    assert _names(de) == ["QuillStationCRM", "zentrivo"]
    en = "1. **Acmeflow** – structured.\n2. **brakko** – tutors.\n3. **Pexora** – audio.\n4. **free** – no cost.\n"
    assert _names(en) == ["brakko", "Pexora"]


def test_a_sentence_that_opens_in_lower_case_opens_with_a_name() -> None:
    de = (
        "Für Freiberufler kommen zwei Programme in Frage: zentrivo und Acmeflow.\n\n"
        "zentrivo (inzwischen Teil von Pexora) ist am weitesten verbreitet. Acmeflow ist günstiger."
    )
    assert _names(de) == ["zentrivo"]


def test_inside_an_entry_a_non_brand_enumeration_and_a_short_form_of_the_lead_are_the_entry_brand() -> None:
    answer = (
        "- **Quillbase Cloud** offers A3 instances; a good fit if you already use TPUs or Vertex Studio AI.\n"
        "- **Pexora Azul** VMs are scarce; Azul is where big labs train.\n"
        "- **Acmeflow** usually beats both on price.\n"
    )
    assert _names(answer) == ["Quillbase Cloud", "Pexora Azul"]


def test_digit_camel_case_names_and_technology_modifiers() -> None:
    answer = (
        "The usual picks are Zentrivo, 2Vaultly and Acmeflow. 2Vaultly's family plan is praised. "
        "Teams writing Quarkscript files for a Brelvo or Tessil app like Pexora too."
    )
    assert _names(answer) == ["Zentrivo", "2Vaultly", "Pexora"]
    # Model codes and quantities stay codes.
    assert _names("Acmeflow rents H100 and 80GB cards; Zentrivo is cheaper.") == ["Zentrivo"]


def test_german_nouns_after_a_determiner_or_among_dictionary_nouns_are_not_names() -> None:
    answer = (
        "Für Händler kommen vor allem diese Shopvarianten in Frage. Zentrivo ist eine Neobankette mit kostenloser "
        "Pexkarte. Acmeflow erfasst Fehler, Absturzmeldungen und langsame Seiten. Vergleichbar ist Quillbase."
    )
    assert _names(answer) == ["Zentrivo", "Quillbase"]


def test_a_short_name_in_parentheses_after_a_lead_is_that_brand() -> None:
    answer = (
        "### Zentrivo Bahn (ZTE)\nThe fastest link; the ZTE is often late.\n\n"
        "### Acmeflow\nCheap.\n\n### Pexora (Free)\nFree, and Pexora is slow.\n"
    )
    # One brand (its display is the spelling used most often, here the short one); "(Free)" is a plan, no alias.
    assert _names(answer) == ["ZTE", "Pexora"]


def test_one_paragraph_in_lower_case_is_a_lower_case_answer() -> None:
    # The sentence splitter needs a capital after a full stop, so this paragraph is one "sentence".
    answer = (
        "honestly acmeflow is the easiest option, you push and it's live. the free tier is fine. "
        "zentrivo is similar, and the bill is lower."
    )
    assert [n.casefold() for n in _names(answer)] == ["zentrivo"]


def test_a_device_or_platform_the_user_has_is_not_an_option() -> None:
    answer = "Zentrivo is the better pick. Acmeflow is fine on an Orbphone or for your Mackle laptop."
    assert _names(answer) == ["Zentrivo"]


def test_an_everyday_word_opening_a_sentence_in_a_pair_that_is_its_subject_is_a_name() -> None:
    answer = "Acmeflow is the default. Keeper and QuillForm remain solid choices. Full and LoRA fine-tuning work."
    assert _names(answer) == ["Keeper", "QuillForm"]  # "Full" opens a pair that modifies a noun


def test_examples_of_features_are_not_options() -> None:
    answer = (
        "Acmeflow's pricing climbs once you buy add-ons such as OpsPilot and status pages. Zentrivo is cheaper, "
        "though adding the FlowOps and status page add-ons costs extra. Pexora is free."
    )
    assert _names(answer) == ["Zentrivo", "Pexora"]
