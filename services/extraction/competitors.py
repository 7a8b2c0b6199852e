"""Open-set discovery of the organisations an answer names, variant merging, and ranking (pure).

Where names are looked for (:func:`candidates`):

* the lead of each list item and heading (``1. **CoreWeave** – …``, ``- Lambda: …``, ``### 2. Together AI``);
* the first column of each table (header row skipped), and the header cells of a comparison table whose columns
  are brands (``| Feature | CoreWeave | Lambda |``);
* in prose: enumerations ("options include CoreWeave, Lambda and Together AI"), names introduced by a cue phrase
  ("Another good choice is Groq", "Teams also consider Baseten", "Replicate stands out for …"), names with a
  brand suffix whose other words are not everyday English ("Luma AI"), bold spans, and link texts that name the
  link's own site ("[CoreWeave blog](https://coreweave.com/blog)" → CoreWeave);
* the caller's ``known_competitors``, anywhere (they are brands by declaration).

Not names: citation chips (``([together.ai](…))``), link reference definitions, URLs, code, enumerations inside
parentheses ("Cohere (Command, Embed and Rerank)" lists products, not peers).

Each candidate is classified (:func:`classify`): **generic** (section and feature words such as "Pricing",
"Pros", "Key Features", "Option 1", "Best for", GPU model codes, questions — never a name), **strong** (shaped
like a brand: CamelCase "CoreWeave", a domain "Vast.ai", an acronym "AWS", a legal/brand suffix "Together AI";
or corroborated: a known competitor, the stem of a cited domain, a link to its own domain, a cue phrase, or a
capitalised mention in the middle of a prose sentence), **medium** (contains a word that is not common English:
"Nebius") or **weak** (only common words: "Lambda", "Runway"). Strong candidates are accepted; medium and weak
ones are accepted when their *sibling group* (the items of one list level, the headings of one level, the rows of
one table, the names of one enumeration) looks like a list of brands — fewer than half generic labels and at least
half strong or medium — so that ``- **Pricing**`` under a provider never becomes a competitor while
``2. **Lambda**`` in a list of GPU clouds does. Prose bold spans, links and cue-less names get no vote: they must
be strong, and so must the objects of "for" ("inference for Llama, DeepSeek and Qwen" names models).

Accepted names, the known competitors and the org are merged by identity keys
(:func:`~services.extraction.names.merge_keys`), mentions are counted over the whole answer by
:func:`~services.extraction.names.find_mentions`, and every organisation named is ranked by its first mention
(1 = named first), the org included — the same ordering as the org's own rank. This follows Peec AI's
"Position": "we detect your brand's position based on how many … other brand names appear before yours. This
includes all brands mentioned in the response, not just the competitors you've set up"
(https://help.peec.ai/en/articles/11913980-what-does-position-mean-exactly-how-do-you-calculate-it).
Mention counts feed share of voice (org mentions / all brand mentions, as Peec AI and Profound define it).

Display name of a merged organisation: the caller's spelling when it is a known competitor, else the spelling
used most often, the shortest on a tie ("Lambda" / "Lambda Labs" / "Lambda Cloud" → "Lambda").
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from services.extraction.identity import BRAND_MARKERS, LEGAL, STEM_SUFFIXES, SUFFIXES
from services.extraction.memo import memo
from services.extraction.names import (
    Brand,
    clean_name,
    find_mentions,
    is_common_word,
    is_lower_case_answer,
    merge_keys,
    name_forms,
    tokens,
    zipf,
)
from services.extraction.text import (
    Doc,
    Unit,
    is_citation_chip,
    is_sentence_start,
    lead_span,
    plain,
    words_of,
)
from services.extraction.urls import domain_stem, looks_like_domain, registrable_domain

#: Lower-case words and phrases that are never an organisation's name in an answer: section titles, feature
#: labels, tech vocabulary that assistants bold or list (extended by ``settings.extraction_generic_terms``).
GENERIC_TERMS: frozenset[str] = frozenset(
    """
    pricing price prices cost costs overview summary conclusion conclusions note notes pros cons option options
    key features feature best for summary verdict recommendation recommendations considerations consideration
    comparison comparisons alternatives alternative introduction intro background context details highlights
    benefits drawbacks advantages disadvantages limitations strengths weaknesses tradeoffs trade-offs risks
    requirements criteria factors factor tips tip example examples caveats caveat disclaimer sources source
    references reference answer short quick bottom line final thoughts takeaways takeaway next steps step
    steps use cases case performance scalability reliability availability support security compliance
    integration integrations ecosystem hardware networking storage latency throughput speed uptime regions
    region locations location billing contracts contract commitment free tier credits discounts onboarding
    documentation docs community developer experience enterprise enterprises startups startup reputation
    funding team founded headquarters customers market position differentiator differentiators specialization
    focus offerings offering products product services service models model data centers center capacity
    sustainability energy ideal good great better top most popular leading notable honorable mentions other
    others emerging established players hyperscalers specialized providers provider clouds cloud marketplaces
    marketplace category type rating score scores ratings gpu gpus gpu-cloud cpu cpus compute inference training
    fine-tuning finetuning serving deployment hosting platform platforms solution solutions tool tools vendor
    vendors company companies api apis sdk llm llms ai ml machine learning deep generative conversational
    responsible agentic edge applied open open-source source ethical explainable multimodal sovereign hybrid
    private public custom managed serverless on-demand spot reserved dedicated bare metal bare-metal kubernetes
    slurm pytorch tensorflow jax cuda rocm infiniband nvlink docker linux python jupyter terraform vllm triton
    tensorrt onnx ray lora qlora yes no maybe n/a tbd important warning caution tl;dr tldr faq faqs q&a question questions
    why how what when where which who whom whose should could would can will do does did is are was were be
    the a an and or of in on at to with by from as vs versus your you our we my their its this that these those
    free paid cheap cheapest expensive fast fastest easy easiest simple flexible flexibility cost-effective
    budget high low mid large small medium scale scaling multi-gpu multi-node cluster clusters instance
    instances pod pods node nodes vm vms container containers region-specific general purpose
    fazit zusammenfassung empfehlung empfehlungen tipp tipps hinweis überblick vorteile nachteile preise
    conclusión resumen recomendación recomendaciones consejo consejos ventajas desventajas precios
    résumé recommandation recommandations conseil conseils avantages inconvénients prix verdict
    """.split()
)
FUNCTION_WORDS: frozenset[str] = frozenset(
    "the a an and or of in on at to with by from as for vs versus via per into over under than & + / - de la".split()
)
#: Upper-case words that are vocabulary, not organisations.
GENERIC_ACRONYMS: frozenset[str] = frozenset(
    """gpu gpus cpu cpus api apis sla slas llm llms ai ml tpu tpus faq faqs sdk usd eur gbp roi tco hpc nlp ocr rag
    etl saas paas iaas vram ram ssd nvme k8s vm vms os ui ux io eu us uk usa apac emea tldr na tbd etc q&a ceo cto
    cfo vpc iam sso soc hipaa gdpr iso p2p b2b b2c pue kw mw gw tb gb pb hr mo yr fp8 fp16 bf16 int8 fp32 sxm pcie
    nvl hbm dgx hgx cli gui ide pdf csv json yaml http https url urls seo geo aeo kpi kpis mvp poc pov rfp sku
    note tip new hot edr xdr mdr siem soar eor peo hris hcm apm rum kyc kyb aml psp ats pos crm erp cms cdp ci cd
    okr mor smb smbs sme smes pme tpe pyme pymes dsgvo rgpd vat iva mwst dns waf cdn ddos vpn oled qr sql nosql ssl
    tls mfa 2fa otp byod mdm dlp casb ztna sase tv tvs pc pcs sms mms b2b2c d2c dtc mrr arr ltv cac nps csat sla
    w-2 1099 401k eu-us""".split()
)
#: Leading words of a phrase that is a label, a question or an instruction, not a name.
LEADING_GENERIC: frozenset[str] = frozenset(
    """best top most why how what when where which who should could would can will do does is are choose
    consider use using get check compare comparing look avoid start make pick select go try ideal great good
    great better cheapest fastest option step tier phase level plan stage part method approach scenario
    if for with without key other more less""".split()
)
_GENERIC_PATTERN = re.compile(
    r"^(?:(?:option|step|tier|phase|tip|level|plan|stage|part|method|approach|scenario|example|case|week|day|"
    r"month|year|q|round|region|zone)\s*#?\s*\d+[a-z]?|[\d$€£%.,/+x×~≈<>=\s-]+|#?\d+.*)$",
    re.IGNORECASE,
)
#: GPU/instance codes and sizes: H100, A100, MI300X, L40S, 8x, 80GB, v5e.
_CODE_RE = re.compile(r"^(?:[a-z]{0,4}\d+[a-z0-9]*|\d+[a-z]{0,3}|v\d+[a-z]?)$", re.IGNORECASE)
#: Abstract nouns that are feature labels even when rare ("Scalability", "Observability").
_ABSTRACT_RE = re.compile(r"(?:ability|ibility|ness|ment|tion|sion)$")

GENERIC, WEAK, MEDIUM, STRONG = "generic", "weak", "medium", "strong"


@dataclass(frozen=True)
class Competitor:
    """An organisation named in the answer other than the org: display name, rank among all brands (1 = named
    first, the org included), number of mentions."""

    name: str
    rank: int
    mention_count: int


@dataclass
class Candidate:
    """A name-like span found in a structural position. ``span`` in ``doc.text``; ``group`` its sibling group
    (``""`` for prose bold/links, which get no vote); ``url`` for a link text."""

    text: str
    span: tuple[int, int]
    source: str  # "lead" | "column" | "bold" | "link"
    group: str
    url: str = ""
    cls: str = GENERIC
    cued: bool = False
    mid: bool = False  # a prose name capitalised in the middle of a sentence
    #: Named as the owner, maker, former name or product line of the brand before it in the same unit
    #: ("Freshsales – by Freshworks", "Braintree, owned by PayPal", "(formerly Magento)", "**Salesforce** Sales
    #: Cloud"): one brand with it, not a brand of its own.
    fold: bool = False
    declared: bool = False  # names the org or a known competitor
    anchor: bool = False  # accepted on evidence at this very span (its mention there counts)
    casual: bool = False  # found in an answer written in lower case throughout


def _is_code(word: str) -> bool:
    return bool(_CODE_RE.match(word)) and not _DIGIT_NAME_RE.fullmatch(word)


#: A name that starts with digits and goes on in CamelCase: "1Password", "7Shifts" (not "H100", "80GB", "4K").
_DIGIT_NAME_RE = re.compile(r"(?<![\w.@/#&'’+-])\d{1,3}[A-Z][a-z]{3,}[A-Za-z]*")


@memo
def classify(name: str, threshold: float, generic: frozenset[str]) -> str:
    """GENERIC, WEAK, MEDIUM or STRONG for a cleaned candidate name (see the module docstring)."""
    name = re.sub(r"['’]s$", "", name).replace("’", "'")  # "AI's" is not CamelCase
    words = tokens(name)
    if not words or len(words) > 5 or len(name) > 50:
        return GENERIC
    if _DIGIT_NAME_RE.fullmatch(name):
        return STRONG  # "1Password": digits, then CamelCase (not a model code or a quantity)
    low = [w.lower() for w in words]
    domain_like = looks_like_domain(name)
    camel_lower = bool(re.match(r"[a-z]{1,5}[A-Z][a-z]", words[0]))  # "eBay", "iCloud", "easyJet"
    if not domain_like and not camel_lower and not words[0][:1].isupper() and not words[0][:1].isdigit():
        return GENERIC  # names are capitalised in assistant prose; "great for startups" is not a name
    if " ".join(low) in generic or _GENERIC_PATTERN.match(name) or low[0] in LEADING_GENERIC:
        return GENERIC
    if " ".join(low) in NEVER_NAMES or low[0] in HARDWARE or (
        len(words) > 1 and any(w[:1].islower() and w not in NAME_CONNECTORS for w in words[1:])
    ):
        return GENERIC  # "It"; "HR-Software für den Mittelstand" is a phrase, not a name
    if all(w in generic or w in FUNCTION_WORDS or w in GENERIC_ACRONYMS or _is_code(w) for w in low):
        return GENERIC
    if domain_like:
        return STRONG
    for w, lw in zip(words, low, strict=True):
        if lw in GENERIC_ACRONYMS or lw in FUNCTION_WORDS:
            continue
        if any(c.isupper() for c in w[1:]) and not w.isupper() and any(c.islower() for c in w[1:]):
            return STRONG  # CoreWeave, OpenAI, RunPod
        if w.isupper() and w.isalpha() and 2 <= len(w) <= 6:
            return STRONG  # AWS, IBM, NVIDIA
    others = [lw for lw in low[:-1] if lw not in generic and lw not in FUNCTION_WORDS]
    if len(words) >= 2 and low[-1] in BRAND_MARKERS and others:
        return STRONG  # Together AI, Lambda Labs
    rare = [
        lw
        for lw in low
        if lw not in generic
        and lw not in FUNCTION_WORDS
        and not _is_code(lw)
        and not is_common_word(lw, threshold)
    ]
    if rare and not all(_ABSTRACT_RE.search(lw) for lw in rare):
        return MEDIUM
    return WEAK


def _clean_candidate(raw: str) -> list[str]:
    """A candidate's name(s): Markdown, parentheticals and outer punctuation removed; ``A vs B`` → both."""
    return list(_clean_candidate_cached(raw))


_PAREN_RE = re.compile(r"\s*\([^()]*\)")
_POSSESSIVE_RE = re.compile(r"['’]s(?=[\s.,;:!?)]*$)")
_DETERMINERS = frozenset(
    "the a an le la les l' un une el los las der die das ein eine im am beim zum zur vom del al au aux".split()
)
#: A hyphenated adjective before a name: "Self-hosted", "Open-source", "Cloud-based".
_ADJECTIVE_PREFIX_RE = re.compile(r"[A-Z][a-z]+-[a-z]+")
_VERSUS_RE = re.compile(r"\s+(?:vs\.?|versus)\s+|\s+/\s+", re.IGNORECASE)


@memo
def _clean_candidate_cached(raw: str) -> tuple[str, ...]:
    text = _POSSESSIVE_RE.sub("", _PAREN_RE.sub("", plain(raw)))
    words = text.split()
    while len(words) > 1 and (words[0].lower() in _DETERMINERS or _ADJECTIVE_PREFIX_RE.fullmatch(words[0])):
        words.pop(0)  # "Le TGV INOUI", "The Stripe Dashboard", "Self-hosted Prometheus", "Im B2B-Bereich"
    while len(words) > 1 and _CODE_RE.match(words[-1].rstrip("s")):
        words.pop()  # a model code is not part of the maker's name: "Milwaukee M18", "NVIDIA H100s"
    text = " ".join(words) if len(words) < len(text.split()) else text
    text = text.split("(", 1)[0]  # an unclosed parenthesis: keep what precedes it
    parts = _VERSUS_RE.split(text)
    return tuple(p for p in (clean_name(x) for x in parts) if p)


#: Lower-case words that may join the words of a name ("Bank of America", "Banco de España", "Procter & Gamble").
NAME_CONNECTORS: frozenset[str] = frozenset("of de del la le du des and y et und the for von van der da di e".split())
#: First header cell of a comparison table whose columns are brands: "| Feature | CoreWeave | Lambda |".
COLUMN_TABLE_HEADS: frozenset[str] = frozenset(
    """feature features criteria criterion aspect aspects metric metrics attribute attributes dimension
    dimensions factor factors spec specs specification specifications capability capabilities category
    comparison compare characteristic characteristics property properties parameter item
    kriterium kriterien merkmal merkmale funktion funktionen eigenschaft eigenschaften vergleich
    característica características criterio criterios aspecto función funciones comparativa
    critère critères caractéristique caractéristiques fonctionnalité fonctionnalités""".split()
)
#: "… include CoreWeave, Lambda and Together AI": capitalised names separated by commas, "and", "or".
# At most five words, and each word cannot be split two ways: keeps every match attempt bounded (linear scans).
_NAME = r"[A-Z](?:[\w&'’.+-]{0,40}[\w+])?(?:[ \t]+(?:[A-Z](?:[\w&'’.+-]{0,40}[\w+])?)){0,4}"
#: The rest of a name after its first capital (``_NAME`` = ``[A-Z]`` + this).
_NAME_REST = _NAME[len("[A-Z]") :]
# Each pattern below starts with a bare ``[A-Z]`` and checks what precedes it with a lookbehind *after* that
# character (``(?<![\w.-].)`` = "(?<![\w.-])" one character earlier): the same matches, but ``re`` can then skip
# every position that is not a capital letter without entering the pattern (a charset prefix), ~3x faster.
_ENUM_RE = re.compile(
    rf"(?P<list>[A-Z](?<![\w.-].)(?:{_NAME_REST}(?:,[ \t]+{_NAME}){{1,}},?[ \t]+(?:and|or|&|y|o|et|ou|und|oder)[ \t]+{_NAME}"
    rf"|{_NAME_REST}(?:,[ \t]+{_NAME}){{2,}}"
    rf"|{_NAME_REST}[ \t]+(?:and|or|&|y|o|et|ou|und|oder)[ \t]+{_NAME}))(?![\w-])"
)
#: A verb of a plural subject right after an enumeration ("Keeper and RoboForm remain …", "… y Ouigo son …").
_PLURAL_VERB_RE = re.compile(
    r"[*_]*[ \t]+(?:are|have|remain|offer|provide|work|run|charge|cost|support|let|give|make|both|all|each|"
    r"son|tienen|ofrecen|siguen|sind|haben|bieten|bleiben|sont|ont|offrent|restent)\b"
)
_ENUM_SPLIT_RE = re.compile(r",?[ \t]+(?:and|or|&|y|o|et|ou|und|oder)[ \t]+|,[ \t]+")
#: Imperatives that start a sentence before a name ("Use CoreWeave or Lambda", "Fine-tune Llama or Qwen").
_LEADING_VERBS: frozenset[str] = frozenset(
    """use try consider choose pick fine-tune deploy run compare check start pair combine host train serve build
    integrate evaluate contact ask visit see read test benchmark shortlist""".split()
)
#: "Luma AI", "Acme Labs", "Acme Inc." in prose — unless an ordinary noun follows ("European AI cloud").
_SUFFIXED_RE = re.compile(
    r"[A-Z](?<![\w.-].)[\w&'’.-]*[ \t]+(?:[A-Z][\w&'’.-]*[ \t]+){0,2}(?:AI|Labs|Inc\.?|Technologies)(?![\w])"
    r"(?![ \t]+(?:cloud|platform|company|startup|model|models|lab|chips?|infrastructure|workloads?|tools?|"
    r"applications?|apps?|assistants?|agents?|systems?|research|search|training|inference|compute|capabilit\w+|"
    r"services?|solutions?|products?|features?|market|space|industry|adoption|stack|teams?|strategy)\b)"
)
_LEAD_IN = r"[\[*_\s]*"
#: Phrases that introduce an organisation in prose: "Another good choice is X", "Teams also consider X",
#: "X stands out for …", "X is a strong option". A name found this way needs no vote.
_CUE_BEFORE_RE = re.compile(
    r"(?:\b(?:choice|option|alternative|pick|contender|bet|provider|vendor|platform)s?[ \t]+"
    r"(?:is|are|would be|remains|include|includes|including)|\b(?:consider|considering|recommend|try|trying|"
    r"evaluate|evaluating|check out|look at|go with|choose|choosing|such as|like|including|includes|include|"
    # the same cues in Spanish, German and French: "como Stripe", "wie Trade Republic", "comme Qonto"
    r"como|tales como|por ejemplo|incluyendo|wie|etwa|beispielsweise|z\.[ \t]?B\.|comme|notamment|par exemple)"
    rf")[ \t]+{_LEAD_IN}(?P<name>{_NAME})"
)
_CUE_AFTER_RE = re.compile(
    # "(?<![^\s(*_\[].)": at the start of the text, or after an opener (a width-2 lookbehind fails at offset 1).
    rf"(?P<name>[A-Z](?<![^\s(*_\[].){_NAME_REST})[*_\]]*[ \t]+(?:stands out|offers|provides|leads|excels|"
    r"specializes|specialises|focuses on|is known for|is best known for|is popular|is favou?red|delivers|rents|"
    r"is worth (?:a look|a try|a mention|considering|checking|trying)|"
    r"operates|is (?:a|an|the|another)[ \t]+(?:[\w-]+[ \t]+){0,3}?(?:option|choice|pick|alternative|contender|"
    r"provider|platform|vendor|company|startup|cloud|service|leader|player))\b"
)


# What every match of _ENUM_RE / _CUE_AFTER_RE / _SUFFIXED_RE must contain: a segment without it is skipped
# (these cheap scans rule out most sentences; the full patterns backtrack at every capital letter).
#: The enumeration hint ``,[ \t]+[A-Z]|[ \t](?:and|or|…)[ \t]+[A-Z]`` as two patterns: the first then has a literal
#: prefix and the second a charset prefix, which re's search skips to (the alternation has neither): ~30 % less time.
_ENUM_HINT_COMMA_RE = re.compile(r",[ \t]+[A-Z]")
_ENUM_HINT_WORD_RE = re.compile(r"[ \t](?:and|or|&|y|o|et|ou|und|oder)[ \t]+[A-Z]")


def _enum_hint(segment: str) -> bool:
    """Does ``segment`` hold a comma or a conjunction before a capital letter (an enumeration may start there)?"""
    return _ENUM_HINT_COMMA_RE.search(segment) is not None or _ENUM_HINT_WORD_RE.search(segment) is not None


# (The lookahead after the first character holds the first letters of the alternatives: at most spaces it fails
# at once instead of trying each alternative; the same matches, ~35 % less time.)
_CUE_AFTER_HINT_RE = re.compile(
    r"[ \t](?=[solpefidr])(?:stands out|offers|provides|leads|excels|specializes|specialises|focuses on|"
    r"is known for|is best known for|is popular|is favou?red|delivers|rents|operates|is worth|is (?:a|an|the|another)[ \t])"
)
#: A substring of every cue word of _CUE_BEFORE_RE (substring tests cost far less than that pattern's scan).
_CUE_BEFORE_WORDS: tuple[str, ...] = (
    "choice", "option", "alternative", "pick", "contender", "bet", "provider", "vendor", "platform", "consider",
    "recommend", "try", "trying", "evaluat", "check out", "look at", "go with", "choos", "such as", "like", "includ",
    "como", "ejemplo", "wie", "etwa", "beispielsweise", "B.", "comme", "notamment",
)
_SUFFIXED_HINT_RE = re.compile(r"[ \t](?:AI|Labs|Inc|Technologies)")


def _suffixed_hint(text: str) -> bool:
    """``bool(_SUFFIXED_HINT_RE.search(text))``: substring tests for the space-led forms (far cheaper than the
    pattern's scan), the pattern only when ``text`` has a tab."""
    return (
        " AI" in text
        or " Labs" in text
        or " Inc" in text
        or " Technologies" in text
        or ("\t" in text and _SUFFIXED_HINT_RE.search(text) is not None)
    )


_AFTER_FOR_RE = re.compile(r"\bfor[ \t]+$")
_CAPITAL_BEFORE_FOR_RE = re.compile(r"[A-Z][\w.+-]*[ \t]+for[ \t]+$")


def _within(spans: list[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
    """The span of the sorted, non-overlapping ``spans`` that contains ``[start, end)``, if any."""
    i = bisect.bisect_right(spans, (start, 1 << 62)) - 1
    if i >= 0 and spans[i][0] <= start and end <= spans[i][1]:
        return spans[i]
    return None


def _in_parentheses(text: str, pos: int) -> bool:
    return text.count("(", 0, pos) > text.count(")", 0, pos)


def _prose_candidates(
    doc: Doc, leads: list[tuple[int, int]], threshold: float, generic: frozenset[str], doc_lang: str = "en"
) -> list[Candidate]:
    """Names in prose: enumerations (voted as a group), names after/before a cue phrase, and suffixed names
    ("Luma AI") whose first words are not everyday English."""
    out: list[Candidate] = []

    def add(text: str, span: tuple[int, int], source: str, group: str, cued: bool = False) -> None:
        if not cued and _within(leads, span[0], span[0] + 1):
            return  # a lead is a candidate already; a cue phrase still corroborates it
        poss = _INNER_POSSESSIVE_RE.search(text) if ("'" in text or "’" in text) else None
        if poss:  # "like Qorbix's Signal Board": the owner is the name
            text = text[: poss.start()]
            span = (span[0], span[0] + len(text))
        for name in _clean_candidate(text):
            out.append(Candidate(name, span, source, group, cued=cued))

    for unit in doc.units:
        if unit.kind not in ("sentence", "item"):
            continue
        segment = doc.masked[unit.body : unit.end]
        base = unit.body
        for m in _ENUM_RE.finditer(segment) if _enum_hint(segment) else ():
            if _in_parentheses(segment, m.start()):
                continue  # "Cohere (Command, Embed and Rerank …)": products of the name before, not peers
            # "inference for Llama, DeepSeek and Qwen": the objects of "for" are often products; no vote there.
            after_for = _AFTER_FOR_RE.search(segment[max(0, m.start() - 8) : m.start()]) is not None
            group = f"enum{unit.index}.{m.start()}" if not after_for else ""
            pos = m.start("list")
            parts = _ENUM_SPLIT_RE.split(m.group("list"))
            if _after_place_preposition(doc, base + pos, doc_lang, _ENUM_PLACE_PREPOSITIONS):
                if not is_place(parts[0]):
                    continue  # "in Alfama, Príncipe Real and Campo de Ourique": places
                # "en España, PcComponentes y Amazon suelen …": the place opens the sentence, the rest is a list
                pos = segment.find(parts[1], pos + len(parts[0]))
                parts = parts[1:]
                if len(parts) < 2:
                    continue
            elif _integration_before(segment, max(0, pos - 40), pos):
                continue  # "built on Loki, Tempo and Mimir", "runs on WordPress and …"
            if doc_lang == "en" and _ATTRIBUTIVE_RE.match(segment, m.end()):
                continue  # "if PayPal and Venmo wallets matter": the names modify a noun
            # "Microsoft Defender for Endpoint and SentinelOne": the first part ends the name before "for".
            inside_name = after_for and _CAPITAL_BEFORE_FOR_RE.search(segment[max(0, m.start() - 60) : m.start()])
            for k, part in enumerate(parts):
                at = segment.find(part, pos)
                pos = at + len(part)
                if k == 0 and inside_name:
                    continue
                words = part.split()
                if len(words) > 1 and words[0].lower() in _LEADING_VERBS:
                    cut = len(words[0]) + (len(part) - len(part.lstrip()))
                    part, at = part[cut:].lstrip(), at + cut + (len(part[cut:]) - len(part[cut:].lstrip()))
                if (
                    len(part.split()) == 1
                    and len(parts) < 3
                    and is_common_word(part, threshold)
                    and is_sentence_start(doc, base + at)
                    # unless the pair is the sentence's subject: "Keeper and RoboForm remain solid choices"
                    and not _PLURAL_VERB_RE.match(segment, m.end())
                ):
                    continue  # "Full and LoRA fine-tuning": a capital at a sentence start says nothing
                add(part, (base + at, base + at + len(part)), "enum", group)
        cues = []
        if any(w in segment for w in _CUE_BEFORE_WORDS):
            cues.append(_CUE_BEFORE_RE)
        if _CUE_AFTER_HINT_RE.search(segment):
            cues.append(_CUE_AFTER_RE)
        for rx in cues:
            for m in rx.finditer(segment):
                if not _in_parentheses(segment, m.start("name")):
                    add(m.group("name"), (base + m.start("name"), base + m.end("name")), "cue", "", cued=True)
        for m in _SUFFIXED_RE.finditer(segment) if _suffixed_hint(segment) else ():
            if any(
                not is_common_word(w, threshold) and w.lower() not in generic for w in m.group(0).split()[:-1]
            ):
                add(m.group(0), (base + m.start(), base + m.end()), "suffixed", "")
    return out


# --- prose names: capitalised spans in running text, kept only with brand evidence ------------------------------

#: Words that are never a name by themselves, in the four languages: pronouns, determiners, sentence openers.
NEVER_NAMES: frozenset[str] = frozenset(
    """it its it's they them their theirs this that these those there here we our ours you your he she his her i
    my me us also however but and or so then when while if for with without both each every either neither many
    most some any all none one other another such what which who whose how why where after before because since
    although though yet still even just only overall instead meanwhile finally first second third next last
    unlike besides compared including otherwise alternatively additionally similarly likewise ultimately
    honestly personally generally typically currently notably
    ellos ellas él ella ello esto este esta estos estas ese esa eso su sus nosotros usted ustedes para con sin
    pero y o si cuando como también además aunque mientras cada muchos muchas otro otra otros otras todos
    es er sie wir ihr ihre ihren sein seine dies diese dieser dieses das der die den dem des und oder aber wenn
    für mit ohne auch jedoch außerdem viele andere alle beide jede jeder wer was wie wo man
    il elle ils elles ce cet cette ces son sa ses leur leurs nous vous on le la les et ou mais si pour avec sans
    aussi cependant chaque beaucoup autre autres tous toutes qui quoi comme où
    i'd i'm i've i'll we're you're they're it'll let's""".split()
)
#: Plan and tier names (a plan of the org is part of the org, never a brand of its own).
PLAN_NAMES: frozenset[str] = frozenset(
    """free starter basic pro business enterprise standard team teams plus premium professional growth scale
    essentials advanced ultimate unlimited personal individual family student lite core""".split()
)
#: Regions and other places that no country list has.
_REGIONS: frozenset[str] = frozenset(
    x.strip()
    for x in """europe, asia, africa, america, americas, oceania, eu, emea, apac, latam, nordics, benelux, dach,
    northeast, northwest, southeast, southwest, midwest, middle east, far east, latin america, north america,
    south america, west coast, east coast, silicon valley, alps, pyrenees, scandinavia, balkans, caribbean,
    black friday, cyber monday, prime day""".split(",")
)
#: Hardware named as the thing rented or run, not an option.
HARDWARE: frozenset[str] = frozenset("nvidia amd intel".split())
#: German nouns are capitalised: a rare capitalised word with a noun ending is a compound, not a name.
_DE_NOUN_END_RE = re.compile(
    r"(?:ung|ungen|heit|heiten|keit|keiten|schaft|schaften|tion|tionen|ität|itäten|nis|nisse|ismus|ment|"
    r"ments|enz|anz|ling|tum|ei|eien|ierung)$"
)
_UPPER = "A-ZÀ-ÖØ-ÞĀ-Ž"
_UPPER_CHARS = _UPPER
_CAP_WORD = rf"(?:[{_UPPER}][\w'’&.+-]*[\w+]|[{_UPPER}]|[a-z]+[{_UPPER}][\w]*)"
#: A run of capitalised words (CamelCase included). It starts with a bare capital and checks what precedes it
#: with a lookbehind after that character, so ``re`` skips every other position (as :data:`_ENUM_RE` does).
_CAP_SPAN_RE = re.compile(
    rf"[{_UPPER}](?<![\w.@/#&'’+-].)(?:[\w'’&.+-]*[\w+])?"
    rf"(?:[ \t]+(?:{_CAP_WORD}|&|(?:of|for|de|del|du|des)(?=[ \t]+[{_UPPER}])))*(?<![&\s])"
)
#: Names that start with a small letter: "eBay", "iPhone", "incident.io", "monday.com" (scanned only when
#: :data:`_LOWER_CAMEL_HINT_RE` or :data:`_LOWER_DOMAIN_HINT_RE` finds one).
_LOWER_NAME_RE = re.compile(
    rf"(?<![\w.@/#&'’+-])(?:[a-z]+[{_UPPER}]\w*|[a-z][a-z0-9-]*\.(?:io|ai|com|app|co|dev|so)\b)"
    rf"(?:[ \t]+(?:{_CAP_WORD}|&))*(?<![&\s])"
)
_LOWER_CAMEL_HINT_RE = re.compile(rf"[a-z][{_UPPER}]")
_LOWER_DOMAIN_HINT_RE = re.compile(r"\.(?:io|ai|com|app|co|dev|so)\b")
_DIGIT_HINT_RE = re.compile(r"\d[A-Z][a-z]")
#: :data:`_DIGIT_HINT_RE` on ASCII text (``\d`` is ``[0-9]`` there): the same matches, ~2x faster.
_DIGIT_HINT_ASCII_RE = re.compile(r"[0-9][A-Z][a-z]")
_LOWER_RUN = frozenset("abcdefghijklmnopqrstuvwxyz")
_LOWER_DOMAIN_RUN = _LOWER_RUN | frozenset("0123456789-")


def _lower_name_matches(masked: str) -> list[re.Match[str]]:
    """``list(_LOWER_NAME_RE.finditer(masked))``, tried only where a match can start: every match holds a
    :data:`_LOWER_CAMEL_HINT_RE` or :data:`_LOWER_DOMAIN_HINT_RE` match in its first word ("eB" of "eBay", ".io" of
    "incident.io") and starts where the run of small letters (of ``[a-z0-9-]`` before a dot) that leads to it
    starts, so two cheap hint scans replace
    a full scan whose lookbehind runs at every character (perf only; tests/extraction/test_extraction_fast_paths.py)."""
    starts: set[int] = set()
    # Two hints (a charset and a literal prefix re skips to; one alternation of both would have neither): their
    # matches cannot overlap (a small letter before a capital never lies inside ".io" followed by a
    # non-word character, nor a dot inside "eB"), so no start is found twice.
    for h in (*_LOWER_CAMEL_HINT_RE.finditer(masked), *_LOWER_DOMAIN_HINT_RE.finditer(masked)):
        j = h.start()
        run = _LOWER_DOMAIN_RUN if masked[j] == "." else _LOWER_RUN
        while j > 0 and masked[j - 1] in run:
            j -= 1
        starts.add(j)
    out: list[re.Match[str]] = []
    end = 0
    for start in sorted(starts):
        if start < end:
            continue  # inside the previous match: finditer resumes after it
        m = _LOWER_NAME_RE.match(masked, start)
        if m:
            out.append(m)
            end = m.end()
    return out


_ACRONYM_RE = re.compile(r"[A-Z]{2,5}")
#: A single everyday English word capitalised mid-sentence is taken for a name below this Zipf frequency
#: ("Linear" 4.1, "Stripe" 3.5); above it ("Target" 4.8, "Internet" 5+) it needs more evidence.
_PROSE_ZIPF_MAX = 4.5
_NO_UNIT = Unit("sentence", 0, 0, 0, index=-1)
#: What precedes a platform the user is on or an integration target (not an option of the answer).
_INTEGRATION_RE = re.compile(
    r"(?:integrates? (?:well )?with|integrations? with|syncs? with|connects? (?:to|with)|plugs? into|"
    r"(?:you're|you are|if you use|already use|already on|built) on|on top of|works with|apps? for|"
    # a device or platform the user has: "iCloud+ on an iPhone", "apps for your Mac", "con algunos Mac"
    r"(?:on|for|with) (?:an?|your|their)|con (?:algunos|algunas|un|una)|"
    r"runs? on|running on|built on|based on|hosted on|(?:built|based) on open[- ]source|live in|lives in|"
    # the technology an option wraps, runs or manages: "Supabase wraps Postgres", "Turso runs SQLite", "managed Loki"
    r"wraps|wrapping|runs?|hosts|managed|self-hosted|plain|vanilla|"
    r"integración (?:nativa )?con|funciona (?:con|sobre)|basado en|basiert auf|läuft auf|basé sur|"
    r"se integra con|integra con|integriert (?:sich )?(?:mit|in)|s'intègre (?:à|avec))[ \t]+(?:the[ \t]+)?$",
    re.IGNORECASE,
)
#: A suffix (lower case) of the last word of every :data:`_INTEGRATION_RE` alternative that can match ASCII text
#: ("plugs into" → "to", "self-hosted" → "hosted"): a cheap test of the window's last word before the pattern.
_INTEGRATION_LAST: tuple[str, ...] = (
    "with", "to", "on", "of", "for", "a", "an", "your", "their", "algunos", "algunas", "un", "in", "wraps",
    "wrapping", "run", "runs", "hosts", "managed", "hosted", "plain", "vanilla", "con", "sobre", "en", "auf", "sur",
    "mit", "avec", "source",
)


#: The longest alternative of :data:`_INTEGRATION_RE` ("integración nativa con"), in characters
#: (tests/extraction/test_extraction_speed_prefilters.py reads it from the parsed pattern).
_INTEGRATION_ALT_CHARS = 22


def _integration_before(text: str, start: int, end: int) -> bool:
    """``_INTEGRATION_RE.search(text, start, end) is not None``, without the pattern's scan (an IGNORECASE
    alternation tried at every position of the window) where it cannot match: every match ends the window
    (``$``: at ``end`` or before a newline there) with an alternative's last word, spaces or tabs, and an
    optional "the" and spaces or tabs; so on ASCII text the last whitespace-separated word (or the one before a
    last "the") ends with a word of :data:`_INTEGRATION_LAST`. Text with other characters (IGNORECASE folds "ſ"
    to "s", "K" to "k") goes to the pattern. Perf only; tests/extraction/test_extraction_speed_prefilters.py
    checks it against the pattern."""
    window = text[start:end]
    if not window.isascii():
        return _INTEGRATION_RE.search(text, start, end) is not None
    if window.endswith("\n"):
        window = window[:-1]
    if not window.endswith((" ", "\t")):
        return False
    words = window.rsplit(None, 2)
    if not words:
        return False
    last = words[-1].lower()
    if not (
        last.endswith(_INTEGRATION_LAST)
        or (last == "the" and len(words) > 1 and words[-2].lower().endswith(_INTEGRATION_LAST))
    ):
        return False
    # An alternative (at most _INTEGRATION_ALT_CHARS long) ends where the window's trailing blanks, or a last
    # "the" and the blanks before it, begin: no match can start earlier than that many characters before.
    tail = window.rstrip(" \t")
    if tail[-3:].lower() == "the":
        tail = tail[:-3].rstrip(" \t")
    lo = max(start, start + len(tail) - _INTEGRATION_ALT_CHARS)
    return _INTEGRATION_RE.search(text, lo, end) is not None


#: Verbs after a sentence-initial name that make it the subject ("Deel and Remote are", "Fathom is …").
_SUBJECT_VERB_RE = re.compile(
    r"(?:['’]s)?[ \t]+(?:and[ \t]+[A-Z][\w.+-]*[ \t]+)?(?:is|are|was|has|have|offers|provides|takes|lets|gives|"
    r"charges|covers|costs|works|supports|focuses|remains|does|doesn't|can|also|added|launched|started|"
    r"es|son|tiene|ofrece|cobra|permite|sigue|suele|ist|sind|hat|bietet|kostet|bleibt|est|sont|a|propose|offre|"
    r"coûte|permet|reste|demeure)\b"
)


#: Definite articles of the languages whose institutions take one ("die BaFin", "la CNIL", "el Banco de España").
_ARTICLES: dict[str, frozenset[str]] = {
    "de": frozenset("die der das den dem des".split()),
    "fr": frozenset("la le les l' du des au aux".split()),
    "es": frozenset("el la los las del al".split()),
}
_ARTICLE_BEFORE_RE = re.compile(r"(?:^|[\s(])([A-Za-zÀ-ÿ]+'?)[ \t]*$")


def _always_after_article(doc: Doc, name: str, lang: str) -> bool:
    """Is every occurrence of ``name`` in running text right after a definite article of ``lang``?"""
    arts = _ARTICLES[lang]
    hits = 0
    for s, _e in doc.find_phrase(words_of(name), case_sensitive=True):
        m = _ARTICLE_BEFORE_RE.search(doc.masked, max(0, s - 12), s)
        word = m.group(1).lower() if m else ""
        if word not in arts and not (word.endswith("'") and word in arts):
            return False
        hits += 1
    return hits > 0


#: A cue word of examples right after a name: the name is their category ("Neobroker wie Trade Republic").
_CATEGORY_BEFORE_CUE_RE = re.compile(
    rf"[ \t]+(?:such as|like|wie|etwa|como|tales como|comme|notamment)[ \t]+[*_]*[{_UPPER}]"
)
_STACK_COMPOUND_ENDS = (
    "based", "compatible", "native", "powered", "backed", "centric", "first", "friendly", "style", "like", "only",
    "focused", "heavy", "basiert", "kompatibel",
)


def _stack_compound(doc: Doc, name: str) -> bool:
    """Does the answer write ``name`` as the head of a "-based" / "-native" / "-compatible" … compound anywhere
    ("Postgres-based", "a Kubernetes-native stack", "S3-compatible")? Then it is the technology the options build
    on, not an option."""
    at = doc.masked.find(name + "-")
    while at >= 0:
        end = at + len(name) + 1
        if (at == 0 or not (doc.masked[at - 1].isalnum() or doc.masked[at - 1] == "-")) and doc.masked.startswith(
            _STACK_COMPOUND_ENDS, end
        ):
            return True
        at = doc.masked.find(name + "-", end)
    return False


#: "add-ons such as", "features like", "modules including": what follows are features of a product.
_FEATURE_CUE_RE = re.compile(
    r"\b(?:add-ons?|addons?|features?|modules?|capabilities|extras|plugins?|functions|funciones|módulos|"
    r"Funktionen|Module|fonctionnalités|modules)[ \t]+(?:such as|like|including|e\.g\.,?|como|wie|comme)[ \t]+[*_]*$",
    re.IGNORECASE,
)


#: The characters a :data:`_FEATURE_CUE_RE` cue can end with ("such as", "like", "including", "e.g.", "e.g.,",
#: "como", "wie", "comme"), with their case-insensitive matches ("ſ" matches "s" under ``re.IGNORECASE``).
_FEATURE_CUE_LAST = frozenset("sego.,SEGOſ")


def _feature_cue_before(text: str, lo: int, at: int) -> bool:
    """``bool(_FEATURE_CUE_RE.search(text, lo, at))``, the pattern tried only when the window can end the way
    every match ends: a cue's last character, spaces or tabs, ``*``/``_`` (at ``at``, or before a newline there:
    ``$`` matches both)."""
    window = text[lo:at]
    if window.endswith("\n"):
        window = window[:-1]
    marked = window.rstrip("*_")
    word = marked.rstrip(" \t")
    if len(word) == len(marked) or word[-1:] not in _FEATURE_CUE_LAST:
        return False
    return _FEATURE_CUE_RE.search(text, lo, at) is not None


def _feature_example(doc: Doc, c: Candidate) -> bool:
    """Is the name (or the enumeration it belongs to) introduced as an example of features?"""
    at = _enumeration_start(doc, c.span[0])
    return _feature_cue_before(doc.masked, max(0, at - 40), at)


def _rare_lower_name(text: str, lang: str, generic: frozenset[str]) -> bool:
    """One lower-case word of four letters or more, shaped like a name, that is no word of English or of the
    answer's language ("italki", "weclapp", "lexoffice"; not "free", "simple", "kubernetes-native")."""
    if not (len(text) >= 4 and text[:1].islower() and _RARE_LOWER_RE.fullmatch(text)) or text in generic:
        return False
    return max(zipf(text), _zipf_in(text, lang)) < _CASUAL_ZIPF_MAX


_RARE_LOWER_RE = re.compile(r"[a-z][a-z0-9]*(?:\.[a-z]{2,})?")


def _links_to_itself(doc: Doc, c: Candidate, keys: Iterable[str]) -> bool:
    """Does a link (a citation chip included) in the candidate's unit point to a domain whose stem is its name?"""
    unit = doc.unit_at(c.span[0])
    if unit is None:
        return False
    return any(
        unit.start <= link.span[0] < unit.end and stem_match(domain_stem(link.url), keys) >= 1000
        for link in doc.links
    )


#: What joins two members of an enumeration written with markup: "**Apple**, **Dell** and **Lenovo**".
_JOIN_RE = re.compile(r"[*_]*(?:,|,?[ \t]+(?:and|or|&|y|o|und|oder|et|ou))[ \t]+[*_]*")


def _joined_to_accepted(doc: Doc, cands: Sequence[Candidate], out: list[Candidate]) -> list[Candidate]:
    """A weak or medium lead or bold name written as one member of an enumeration whose next or previous member
    is accepted is accepted too (the enumeration pattern cannot see through ``**…**`` markup)."""
    if not out:
        return out
    starts = {c.span[0] for c in out}
    ends = {c.span[0] + len(c.text) for c in out} | {c.span[1] for c in out}
    chosen = {id(c) for c in out}
    extra = []
    for c in cands:
        if id(c) in chosen or c.cls not in (WEAK, MEDIUM) or c.source not in ("lead", "bold"):
            continue
        end = c.span[0] + len(c.text)
        m = _JOIN_RE.match(doc.masked, end) or _JOIN_RE.match(doc.masked, c.span[1])
        joined = m is not None and m.end() in starts
        if not joined:
            head = doc.masked[max(0, c.span[0] - 12) : c.span[0]]
            for pm in _JOIN_RE.finditer(head):
                if pm.end() == len(head) and (c.span[0] - len(head) + pm.start()) in ends:
                    joined = True
        if joined:
            extra.append(c)
    return sorted([*out, *extra], key=lambda c: c.span) if extra else out


def _never_lower(doc: Doc, name: str) -> bool:
    """Is every occurrence of ``name`` in the answer's running text capitalised as written?"""
    return all(doc.masked[s:e] == name for s, e in doc.find_phrase(words_of(name)))


def _subject_of_verb(doc: Doc, end: int, lang: str) -> bool:
    return bool(_SUBJECT_VERB_RE.match(doc.masked, end))


#: A third-person verb after a name of several words ("Uber Eats tends", "Harbor Freight sells").
_VERB_S_RE = re.compile(
    r"[ \t]+[a-z]{2,}[^s\W]s[ \t]+(?:to|a|an|the|its|their|more|most|on|in|with|for|up|out|by|over|from|at|"
    r"no|every|all|\d)\b"
)
#: A verb in the third person or the past after a sentence-initial name that is shaped like one ("PlanetScale
#: removed …", "Turso runs …", "Evernote still exists", "CockroachDB Serverless suits …").
#: A bare "-s" word may be a plural noun ("Llama models you can host"): it counts only before a determiner,
#: a preposition, an adverb or a name.
_VERB_SHAPE_RE = re.compile(
    r"[ \t]+(?:(?:still|also|now|often|usually|even|already|only|mostly|really|just|recently|quietly)[ \t]+"
    r"[a-z]{3,}|[a-z]{3,}ed\b|[a-z]{2,}[^s\W]s[ \t]+(?:[A-Z]|[a-z]{2,}ly\b|(?:to|a|an|the|its|their|more|most|on|in|with|for|"
    r"up|out|by|over|from|at|no|every|all)\b))"
)
#: Endings of nouns of the domain that open sentences ("Onboarding is slow", "Scalability is …").
_NOUNISH_RE = re.compile(r"(?:ing|ability|ibility|ness|ment|tion|sion|ity|ance|ence|ship|ure)$")


def _sentence_subject(doc: Doc, c: Candidate, lang: str) -> bool:
    """A dictionary-word name at a sentence start that is the subject of a verb and is never written in lower
    case in the answer ("Fathom is …", "Sentry is worth adding", "Uber Eats tends to …"): a name, not a word."""
    words = c.text.split()
    end = c.span[0] + len(c.text)
    if doc.masked[c.span[0] : end] != c.text or c.mid:
        return False
    if len(words) == 1:
        low = c.text.lower()
        if _NOUNISH_RE.search(low) or max(zipf(low), _zipf_in(low, lang)) >= 4.0:
            return False
        if not _subject_of_verb(doc, end, lang):
            return False
    elif not (_subject_of_verb(doc, end, lang) or _VERB_S_RE.match(doc.masked, end)):
        return False
    return not any(
        doc.masked[s : e] != doc.text[s:e] or doc.masked[s : s + 1].islower()
        for s, e in doc.find_phrase(words_of(c.text))
    )


@memo
def _zipf_in(word: str, lang: str) -> float:
    if lang not in ("es", "de", "fr"):
        return 0.0
    from wordfreq import zipf_frequency

    return float(zipf_frequency(word, lang, wordlist="small"))
_PLURAL_ACRONYM_RE = re.compile(r"[A-Z]{2,6}s")
#: Prepositions that put a place after them ("in Lisbon", "à Lyon", "nach Berlin", "en Madrid").
_PLACE_PREPOSITIONS: dict[str, frozenset[str]] = {
    "en": frozenset("in near around from to at across throughout via".split()),
    "es": frozenset("en desde hacia cerca por".split()),
    "de": frozenset("in nach bei aus von ab zwischen".split()),
    "fr": frozenset("à en au aux dans depuis vers près entre".split()),
}
_PREV_WORD_RE = re.compile(r"(\w+)[ \t]+$")


def _after_place_preposition(
    doc: Doc, start: int, lang: str, table: dict[str, frozenset[str]] | None = None
) -> bool:
    table = table or _PLACE_PREPOSITIONS
    word = _prev_word(doc.masked, max(0, start - 20), start)
    return word is not None and word.lower() in table.get(lang, table["en"])


_PREV_WORD_REVERSED_RE = re.compile(r"[ \t]+(\w+)")


def _prev_word(text: str, lo: int, at: int) -> str | None:
    """``group(1)`` of ``_PREV_WORD_RE.search(text, lo, at)`` (or None), matched backwards from ``at`` in one step
    instead of trying every start in the window: the word right before the spaces or tabs that end the window
    (``$`` also matches before a newline at its end)."""
    window = text[lo:at]
    if window.endswith("\n"):
        window = window[:-1]
    m = _PREV_WORD_REVERSED_RE.match(window[::-1])
    return m.group(1)[::-1] if m else None


#: The prepositions that make a whole enumeration after them places ("in Chamonix, Verbier and St. Anton").
_ENUM_PLACE_PREPOSITIONS: dict[str, frozenset[str]] = {
    "en": frozenset("in near around throughout across".split()),
    "es": frozenset("en cerca".split()),
    "de": frozenset("in nach".split()),
    "fr": frozenset("à dans".split()),
}
#: One earlier member of an enumeration, read backwards: "Alfama, " / "Príncipe Real and ".
_ENUM_MEMBER_BEFORE_RE = re.compile(
    rf"(?:[{_UPPER_CHARS}][\w.'’&+-]*(?:[ \t]+(?:de|do|da|del|of|[{_UPPER_CHARS}][\w.'’&+-]*)){{0,3}}"
    r"(?:,[ \t]+|,?[ \t]+(?:and|or|y|o|et|ou|und|oder)[ \t]+))$"
)


_ENUM_JOINERS = [[w] for w in ("and", "or", "y", "o", "et", "ou", "und", "oder")]
#: What follows a member of an enumeration that is not its last one.
_ENUM_NEXT_RE = re.compile(r"[*_]*(?:,|[ \t]+(?:and|or|y|o|et|ou|und|oder|&)[ \t])")


def _enumeration_start(doc: Doc, start: int, end: int = -1) -> int:
    """Where the enumeration that the name at ``start`` belongs to begins (``start`` itself when it is first).

    With the name's ``end``: a name after a bare comma that is followed by neither a comma nor a conjunction
    opens a clause, not the last member of an enumeration ("if you're on Shopify, Gorgias is built for …")."""
    floor = max(0, start - 200)
    unit = doc.unit_at(start)
    if unit is not None:
        floor = max(floor, unit.body)
    for i in range(8):
        head = doc.masked[max(floor, start - 8) : start].rstrip(" \t")
        if not head.endswith(",") and head.rsplit(None, 1)[-1:] not in _ENUM_JOINERS:
            break  # no separator right before: the name opens its enumeration (the common case, no regex)
        if i == 0 and end >= 0 and head.endswith(",") and not _ENUM_NEXT_RE.match(doc.masked, end):
            break
        m = _ENUM_MEMBER_BEFORE_RE.search(doc.masked, max(floor, start - 60), start)
        if m is None:
            break
        start = m.start()
    return start


@lru_cache(maxsize=1)
def _places() -> frozenset[str]:
    """Country and subdivision names (pycountry's ISO 3166 data, offline) and regions, lower case."""
    import pycountry

    names = set(_REGIONS)
    for c in pycountry.countries:
        for attr in ("name", "common_name", "official_name"):
            v = getattr(c, attr, None)
            if v:
                names.add(v.lower())
    for s in pycountry.subdivisions:
        names.add(s.name.lower())
    import gettext

    for lang in ("de", "es", "fr"):  # pycountry ships the iso-codes translations
        try:
            tr = gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=[lang])
        except OSError:
            continue
        for c in pycountry.countries:
            names.add(tr.gettext(c.name).lower())
    return frozenset(names)


def is_place(name: str) -> bool:
    return name.lower() in _places()


def _is_common(word: str, threshold: float, lang: str) -> bool:
    if is_common_word(word, threshold):
        return True
    if lang in ("es", "de", "fr"):
        from wordfreq import zipf_frequency

        return all(zipf_frequency(p, lang, wordlist="small") >= threshold for p in word.lower().split("-") if p)
    return False


@memo
def _rule_out(name: str, lang: str, prose: bool = True) -> bool:
    """Pronouns, plan names, places, hardware, category acronyms: never brands (rule, not evidence). German
    compounds are ruled out from seven letters in running text, from ten in a list or heading ("Lufthansa")."""
    low = name.lower().replace("’", "'")
    words = low.split()
    if not words or low in NEVER_NAMES or low in PLAN_NAMES or low in HARDWARE or is_place(name):
        return True
    if len(words) == 1 and (low in GENERIC_ACRONYMS or _PLURAL_ACRONYM_RE.fullmatch(name) or (len(name) <= 2 and not name.isupper())):
        return True
    if len(words) == 1 and SUFFIXES.get(low[:-1] if low.endswith("s") and len(low) > 3 else low) == LEGAL:
        return True  # a legal form alone: "kleine GmbHs", "an LLC"
    # German nouns are capitalised and never CamelCase: "lexoffice", "CentralStationCRM" are no compounds.
    if lang == "de" and len(words) == 1 and name[:1].isupper() and not _INNER_CAPITAL_RE.search(name) and (
        _DE_NOUN_END_RE.search(low)
        or len(low) >= 15
        or (len(low) >= (7 if prose else 10) and low.isalpha() and _de_compound(low))
    ):
        return True
    if len(words) == 1 and "-" in low and low.rsplit("-", 1)[1] and (
        name.rsplit("-", 1)[1][:1].islower() or lang == "de"
    ):
        return True  # "Shopify-focused", "Kubernetes-native"; German "B2B-Bereich", "US-Tool"
    return False


#: A capital after the first letter: CamelCase names ("CentralStationCRM") are no German compound nouns.
_INNER_CAPITAL_RE = re.compile(r"(?<=[a-zäöüß])[A-ZÄÖÜ]")


@memo
def _de_compound(word: str) -> bool:
    """A German compound noun: its tail (≥ 4 letters) is a common German word and its head ≥ 3 letters
    ("entwicklerteam" = entwickler + team, "zusatzkosten" = zusatz + kosten)."""
    from wordfreq import zipf_frequency

    for i in range(3, len(word) - 3):
        if zipf_frequency(word[i:], "de", wordlist="small") >= 3.0:
            head = word[:i]
            if zipf_frequency(head, "en", wordlist="small") > zipf_frequency(head, "de", wordlist="small"):
                continue  # an English head ("red" + "mine" = Redmine) makes a loan word, not a compound
            for h in (head, head[:-1] if head.endswith("s") else head, head + "e", head + "en"):
                de = zipf_frequency(h, "de", wordlist="small")
                # A head that is an English word ("red" + "mine") is a loan, not a German compound's head.
                if de >= 2.5 and de > zipf_frequency(h, "en", wordlist="small"):
                    return True
    return False


def _prose_names(doc: Doc, leads: list[tuple[int, int]], threshold: float, lang: str) -> list[Candidate]:
    """Capitalised spans in sentences and list items that are not already leads: candidates that must carry
    brand evidence (:func:`accept`). A leading determiner or opener is dropped from the span."""
    out: list[Candidate] = []
    masked = doc.masked
    matches = list(_CAP_SPAN_RE.finditer(masked))
    lower = _lower_name_matches(masked)  # [] without a hint match: no separate search for one first
    if lower:
        matches = sorted([*matches, *lower], key=lambda m: m.start())
    if (_DIGIT_HINT_ASCII_RE if masked.isascii() else _DIGIT_HINT_RE).search(masked):
        matches = sorted([*matches, *_DIGIT_NAME_RE.finditer(masked)], key=lambda m: m.start())
    for m in matches:
        s, e = m.span()
        unit = doc.unit_at(s)
        if unit is None or unit.kind not in ("sentence", "item") or e > unit.end or _within(leads, s, e):
            continue
        text = m.group(0)
        words = text.split()
        # A leading determiner or opener is not part of the name ("The Stripe Dashboard", "Overall Stripe").
        while words and (words[0].lower() in NEVER_NAMES or words[0].lower() in FUNCTION_WORDS):
            cut = text.index(words[0]) + len(words[0])
            rest = text[cut:]
            s += cut + (len(rest) - len(rest.lstrip()))
            text = rest.lstrip()
            words = words[1:]
        if not words:
            continue
        poss = _INNER_POSSESSIVE_RE.search(text) if ("'" in text or "’" in text) else None
        if poss:  # "Harbor Freight's Hercules line": the owner is the name, what follows is its product
            text = text[: poss.start()]
            words = text.split()
        before = masked[max(unit.body, s - 40) : s]
        # The word right before the name decides which of the (costlier) patterns below can match at all.
        stripped = before.rstrip(" \t")
        tail_words = stripped.rsplit(None, 1)
        last = tail_words[-1] if tail_words else ""
        bare = last.strip("*_(").lower()
        if (bare in _POSSESSIVE_DETS and _POSSESSIVE_DET_RE.search(before)) or (
            last[:1].isupper() and _OWNER_POSSESSIVE_RE.search(before)
        ):
            continue  # "its Security Graph", "Fastly's Next-Gen WAF": a product named through its maker
        if stripped.endswith("(") and _NOUN_PAREN_RE.search(before) and masked.startswith(")", s + len(text)):
            continue  # "the deepest ecosystem (AppExchange)": the subject's product or feature, named in passing
        if (last[-1:].isdigit() or last in ("%", "€", "$", "£")) and _QUANTITY_BEFORE_RE.search(before):
            continue  # "1 % Saveback", "2 Stunden": a quantity's unit or feature, not an organisation
        if (
            lang == "en"
            and masked[s + len(text) : s + len(text) + 1] in _ATTRIBUTIVE_FIRST
            and _ATTRIBUTIVE_RE.match(masked, s + len(text))
            and not is_sentence_start(doc, s)
        ):
            continue  # "a Shopify store", "other Atlassian products", "Venmo wallets": a reference, not an option
        if lang == "de":
            # German capitalises nouns: a leading dictionary noun is not part of the name
            # ("Die Verwaltungskonsole Sophos Central", "1 Stunde Flugzeit").
            while len(words) > 1 and _german_word(words[0]):
                cut = text.index(words[0]) + len(words[0])
                rest = text[cut:]
                s += cut + (len(rest) - len(rest.lstrip()))
                text = rest.lstrip()
                words = words[1:]
        if lang in ("fr", "es") and len(words) >= 3:
            # "les Issues de GitHub", "la Cloud de Google": a common word, "de", then its maker
            m_de = _OF_MAKER_RE.fullmatch(text)
            if (
                m_de
                and all(_is_common(w, threshold, lang) for w in m_de.group(1).split())
                and classify(m_de.group(2), threshold, GENERIC_TERMS) == STRONG
                and not is_place(m_de.group(2))
            ):
                s += m_de.start(2)
                text = m_de.group(2)
                words = text.split()
        fold = (
            (bare in _HISTORY_LAST_WORDS or bare.endswith("by")) and bool(_HISTORY_CUE_RE.search(before))
        ) or (stripped.endswith(("**", "__")) and bool(_AFTER_BOLD_NAME_RE.search(before)))
        mid = None
        for name in _clean_candidate(text):
            if _rule_out(name, lang):
                continue
            if mid is None:
                mid = not is_sentence_start(doc, s)
            c = Candidate(name, (s, s + len(text)), "prose", "")
            c.mid = mid
            c.fold = fold
            out.append(c)
    return out


_POSSESSIVE_DETS = frozenset(
    "its their sus seine seinen seiner ihre ihren ihrer son sa ses leur leurs".split()
)
#: Last words of :data:`_HISTORY_CUE_RE` (a cheap test before the pattern).
_HISTORY_LAST_WORDS = frozenset(
    "formerly previously of by the antes de früher ehemals zu von anciennement ex- à par a".split()
)
#: "its", "their" … right before a name: the name is a product or feature of the subject.
_POSSESSIVE_DET_RE = re.compile(
    r"(?:^|[\s(])(?:its|their|sus|seine|seinen|seiner|ihre|ihren|ihrer|son|sa|ses|leur|leurs)[ \t]+[*_]*$",
    re.IGNORECASE,
)
#: "Fastly's Next-Gen WAF": a capitalised owner with a possessive right before the name.
_OWNER_POSSESSIVE_RE = re.compile(r"[A-Z][\w.&+-]*['’]s?[ \t]+$")
_OF_MAKER_RE = re.compile(r"(.+?)[ \t]+(?:de|del|du|des)[ \t]+([A-Z].*)")
_NOUN_PAREN_RE = re.compile(r"\b[a-z]{3,}[ \t]+\($")
_QUANTITY_BEFORE_RE = re.compile(r"\d[\d.,]*[ \t]*[%€$£]?[ \t]+$")
_INNER_POSSESSIVE_RE = re.compile(r"['’]s[ \t]+(?=[A-Z])")
#: The characters an :data:`_ATTRIBUTIVE_RE` match can start with (a cheap test before the pattern).
_ATTRIBUTIVE_FIRST = frozenset("*_ \t")
#: Lower-case nouns after a name that make it a modifier: the platform, ecosystem or account it refers to.
_ATTRIBUTIVE_RE = re.compile(
    # "a Django or Rails app": a name joined to another before the noun modifies it as well
    r"[*_]*(?:[ \t]+(?:or|and|/)[ \t]+(?:[A-Z][\w.+#-]*|[a-z]+[ \t]+[a-z]+))?"
    r"[ \t]+(?:store|stores|shop|shops|brands|products|users|customers|accounts?|wallets?|integrations?|"
    # technology a thing is written in or runs ("MySQL workloads", "Markdown files"; not "functions": "AWS Lambda
    # functions" names the product's own unit)
    r"files|code|codebases?|workloads?|projects|repos|repositories|servers|databases|queries|scripts|"
    r"libraries|packages|devices|laptops|phones|alerts|syntax|"
    r"ecosystem|suite|stack|apps?|plugins?|extensions?|members|membership|subscription|subscribers|merchants|"
    r"sellers|instances?|environments?|estates?|setups?|templates?|points|rewards|ads|campaigns|shops|"
    r"workflows?|pipelines?|data|dashboards|certifications?|partners?|marketplace|listings?|fans?|features?|"
    r"plans?|tiers?|add-ons?|modules?|points|agents|assistants|bots)\b"
)
#: What makes the next name the owner, maker or former name of the brand before it.
_HISTORY_CUE_RE = re.compile(
    r"(?:\b(?:formerly|previously|now part of|part of|owned by|acquired by|bought by|a subsidiary of|"
    r"a division of|from the makers of|made by|built by|by|antes|ahora parte de|propiedad de|"
    r"früher|ehemals|gehört zu|teil von|anciennement|ex-|filiale de|appartient à|racheté par|pertenece a|forma parte de|"
    r"filial de)"
    r"|[–—][ \t]*by)[ \t]+(?:the[ \t]+)?[*_]*$",
    re.IGNORECASE,
)
#: "**Salesforce** Sales Cloud": a name right after a bold name is that brand's product line.
_AFTER_BOLD_NAME_RE = re.compile(r"[A-Za-z0-9)](?:\*\*|__)[ \t]+$")


#: Words before a German noun that a brand does not take: indefinite, negative and demonstrative determiners,
#: quantifiers, and inflected adjectives ("kostenloser Visa Debitkarte").
_DE_NOUN_DETERMINERS = frozenset(
    """ein eine einen einem einer eines kein keine keinen keinem keiner diese dieser diesen diesem dieses jede
    jeder jedes jeden alle viele mehrere einige manche solche welche""".split()
)
_DE_WORD_BEFORE_RE = re.compile(r"(?:^|[\s(])([a-zäöüß]+)[ \t]+$")
_DE_JOINED_RE = re.compile(r"(?:,|[ \t]+(?:und|oder|sowie))[ \t]+([A-ZÄÖÜ][a-zäöüß]+)\b")
_DE_JOINED_BEFORE_RE = re.compile(r"\b([A-ZÄÖÜ][a-zäöüß]+)(?:,|[ \t]+(?:und|oder|sowie))[ \t]+$")


def _german_noun_context(doc: Doc, c: Candidate) -> bool:
    """Is a name of a German answer used as a noun: after a determiner or an inflected adjective ("keine
    Heatmaps", "eine Neobank", "kostenloser Visa Debitkarte"), or enumerated with German dictionary nouns
    ("Fehler, Abstürze und langsame Transaktionen", "Zeitleisten, Workloads und Regeln")?"""
    masked = doc.masked
    m = _DE_WORD_BEFORE_RE.search(masked, max(0, c.span[0] - 25), c.span[0])
    if m:
        w = m.group(1)
        if w in _DE_NOUN_DETERMINERS or (
            len(w) >= 5 and w.endswith(("e", "en", "er", "es", "em")) and _zipf_in(w, "de") >= 3.0 > zipf(w)
        ):
            return True
    end = c.span[0] + len(c.text)
    for rx, at in ((_DE_JOINED_RE, end), (_DE_JOINED_BEFORE_RE, -1)):
        if at >= 0:
            n = rx.match(masked, at)
        else:
            n = rx.search(masked, max(0, c.span[0] - 30), c.span[0])
        if n and _german_word(n.group(1)) and not _is_common(n.group(1), 3.0, "en"):
            return True
    return False


@memo
def _german_word(word: str) -> bool:
    """A capitalised German dictionary word or compound (``Verwaltungskonsole``, ``Stunde``, ``DACH-Raum``)."""
    from wordfreq import zipf_frequency

    low = word.lower()
    if "-" in low:
        return True
    if zipf_frequency(low, "de", wordlist="small") >= 3.0 > zipf_frequency(low, "en", wordlist="small"):
        return True
    return len(low) >= 8 and low.isalpha() and (bool(_DE_NOUN_END_RE.search(low)) or _de_compound(low))


def _link_name(text: str, url: str) -> str:
    """The name a link's text gives for its own site: the longest leading words of the text whose identity
    keys match the URL's domain stem ("[CoreWeave blog](https://coreweave.com/blog)" → "CoreWeave"), or ""."""
    stem = domain_stem(url)
    if not stem:
        return ""
    words = re.sub(r"['’]s\b", "", plain(text)).split()
    for n in range(min(4, len(words)), 0, -1):
        name = clean_name(" ".join(words[:n]))
        if name and stem_match(stem, merge_keys(name)):
            return name
    return ""


def candidates(
    doc: Doc, threshold: float = 3.0, generic: frozenset[str] = GENERIC_TERMS, lang: str = "en"
) -> list[Candidate]:
    """Every name-like span in a structural position or a prose enumeration, in document order."""
    out: list[Candidate] = []
    leads: list[tuple[int, int]] = []
    for unit in doc.units:
        if unit.kind in ("item", "heading") or (unit.kind == "row" and not unit.header):
            span = lead_span(doc, unit)
            if span:
                leads.append(span)
                source = "column" if unit.kind == "row" else "lead"
                for name in _clean_candidate(doc.text[span[0] : span[1]]):
                    out.append(Candidate(name, span, source, unit.group))
        elif unit.kind == "row" and unit.header and len(unit.cells) >= 3:
            first = clean_name(doc.text[unit.cells[0][0] : unit.cells[0][1]]).lower()
            # Any other header row may still name brands: its cells are kept only when one of them is the org or
            # a known competitor (:func:`accept`), as in "| Preis | Glovo | Uber Eats |".
            suffix = ".cols" if not first or first in COLUMN_TABLE_HEADS else ".hdr"
            for s, e in unit.cells[1:]:
                if suffix == ".cols":
                    leads.append((s, e))
                for name in _clean_candidate(doc.text[s:e]):
                    out.append(Candidate(name, (s, e), "column", unit.group + suffix))
    leads.sort()
    for s, e in doc.bold:
        if _within(leads, s, e):
            continue
        at = doc.unit_at(s)
        if at is not None and at.kind == "row":
            continue  # table cells other than the first column are values, not names
        for name in _clean_candidate(doc.text[s:e]):
            out.append(Candidate(name, (s, e), "bold", ""))
    by_span: dict[tuple[int, int], list[Candidate]] = {}
    for c in out:
        by_span.setdefault(c.span, []).append(c)
    for link in doc.links:
        lead = _within(leads, *link.text_span)
        if lead:
            for c in by_span.get(lead, ()):
                c.url = link.url  # a lead that is a link: its URL corroborates it
            continue
        if is_citation_chip(link):
            continue
        name = _link_name(link.text, link.url)
        if name:
            out.append(Candidate(name, link.text_span, "link", "", url=link.url))
    out.extend(_prose_candidates(doc, leads, threshold, generic, lang))
    out.extend(_prose_names(doc, leads, threshold, lang))
    if is_lower_case_answer(doc):
        out.extend(_casual_names(doc, leads, threshold, generic, lang))
    else:
        out.extend(_lower_sentence_starts(doc, generic, lang))
    out.sort(key=lambda c: c.span)
    return out


_LOWER_START_RE = re.compile(r"[*_\[(]*([a-z][a-z0-9]*(?:\.[a-z]{2,})?)(?![\w'’-])")


def _lower_sentence_starts(doc: Doc, generic: frozenset[str], lang: str) -> list[Candidate]:
    """In an answer written with capitals, a sentence that opens with a word in lower case that no dictionary
    knows opens with a name written in lower case ("lexoffice (inzwischen Teil von Lexware) ist …")."""
    out = []
    for unit in doc.units:
        if unit.kind != "sentence":
            continue
        m = _LOWER_START_RE.match(doc.masked, unit.body, unit.end)
        if m and _rare_lower_name(m.group(1), lang, generic):
            c = Candidate(m.group(1), m.span(1), "casual", "")
            c.casual = True
            out.append(c)
    return out


_CASUAL_LEAD_RE = re.compile(r"[a-z][\w+.-]*[\w+]")
_CASUAL_WORD_RE = re.compile(r"(?<![\w@/#.'’-])[a-z][a-z0-9]*(?:[.+][a-z0-9]*)?(?![\w'’-])")


def _casual_names(
    doc: Doc, leads: list[tuple[int, int]], threshold: float, generic: frozenset[str], lang: str
) -> list[Candidate]:
    """Names in an answer written in lower case throughout ("i'd skip mailchimp", "- buttondown if you …"):
    the first word of each list item (voted as a list), and words that no dictionary of the answer's language
    knows, or shaped like a brand ("disney+"), in running text."""
    out: list[Candidate] = []
    for unit in doc.units:
        if unit.kind == "item":
            m = _CASUAL_LEAD_RE.match(doc.masked, unit.body, unit.end)
            if m and m.group(0) not in NEVER_NAMES and m.group(0) not in FUNCTION_WORDS:
                c = Candidate(m.group(0), m.span(), "lead", "casual" + unit.group.split(".")[0])
                c.casual = True
                out.append(c)
        if unit.kind not in ("sentence", "item"):
            continue
        for m in _CASUAL_WORD_RE.finditer(doc.masked, unit.body, unit.end):
            w = m.group(0)
            if len(w) < 4 or w in generic or (unit.kind == "item" and m.start() == unit.body):
                continue
            shaped = w.endswith("+") or (any(ch.isdigit() for ch in w) and w[0].isalpha() and len(w) >= 5)
            rare = w.isalpha() and max(zipf(w), _zipf_in(w, lang)) < _CASUAL_ZIPF_MAX
            history = _HISTORY_CUE_RE.search(doc.masked, max(unit.body, m.start() - 40), m.start())
            if shaped or (rare and (history or _CASUAL_SUBJECT_RE.match(doc.masked, m.end()))):
                c = Candidate(w, m.span(), "casual", "")
                c.casual = True
                c.fold = bool(history)  # "kit (formerly convertkit)"
                out.append(c)
    return out


#: In a lower-case answer, a word rarer than this (Zipf) that is a sentence's subject is a name ("klaviyo is
#: worth the money", "doordash isn't much better").
_CASUAL_ZIPF_MAX = 2.5
_CASUAL_SUBJECT_RE = re.compile(
    r"[ \t]+(?:is|isn't|are|aren't|was|wasn't|has|hasn't|does|doesn't|can|can't|will|won't|would|gets|got|"
    r"keeps|charges|offers|works|feels|looks|seems|actually|also|still|just|really)\b"
)


_STEM_PREFIX_RE = re.compile(r"^(?:get|try|use|join|go|hey|with|the|my)(?=[a-z]{3})")
_STEM_SUFFIX_RE = re.compile(r"(?<=[a-z]{3})(?:" + "|".join(STEM_SUFFIXES) + ")$")


@memo
def _stem_forms(stem: str) -> tuple[str, str]:
    """(lower-case stem without hyphens, the same without a usual prefix/suffix) for :func:`stem_match`."""
    stem = stem.lower().replace("-", "")
    return stem, _STEM_SUFFIX_RE.sub("", _STEM_PREFIX_RE.sub("", stem))


def stem_match(stem: str, keys: Iterable[str]) -> int:
    """How well a domain stem (``lambdalabs``) matches an organisation's identity keys (0 = not at all).

    Exact key > key with a usual prefix/suffix (``getjasper``, ``runwayml``, ``modal-labs``) > a long key the stem
    starts with (``lambda`` ⊂ ``lambdalabs``, keys of five letters or more only, to keep ``meta`` from matching
    ``metacritic``).
    """
    stem, bare = _stem_forms(stem)
    if len(stem) < 2:
        return 0
    best = 0
    for k in keys:
        if stem == k:
            best = max(best, 1000 + len(k))
        elif bare == k:
            best = max(best, 500 + len(k))
        elif len(k) >= 5 and stem.startswith(k):
            best = max(best, len(k))
    return best


def _prose_capitalised_at(doc: Doc, name: str) -> list[int]:
    """Offsets where ``name`` appears capitalised in the middle of a prose sentence (not in a lead or a
    Title-Case line)."""
    out = []
    for start, _end in doc.find_phrase(words_of(name), case_sensitive=True):
        unit = doc.unit_at(start)
        if unit is None or unit.kind not in ("sentence", "item"):
            continue
        lead = lead_span(doc, unit) if unit.kind == "item" else None
        if lead and lead[0] <= start < lead[1]:
            continue
        if doc.is_title_case(unit) or is_sentence_start(doc, start):
            continue
        out.append(start)
    return out


#: A line that opens a source list ("Sources", "**Quellen:**", "Fuentes", "References").
_SOURCES_LABEL_RE = re.compile(
    r"[#*_\s]*(?:sources?|references?|citations?|quellen|fuentes|referencias|références)[*_:\s]*",
    re.IGNORECASE,
)
#: A footnote marker opening a line: "[1] …", "[^2]: …" (a numbered line "3. …" is a source only in a source list).
_FOOTNOTE_LINE_RE = re.compile(r"[ \t]*\[\^?\d{1,3}\]:?[ \t]")


def _source_entries(doc: Doc) -> list[Unit]:
    """The units that are entries of a source list: a line with a URL that opens with a footnote marker, or that
    follows a "Sources" label (directly or after other entries)."""
    text = doc.text
    if "://" not in text:
        return []
    out: list[Unit] = []
    in_list = False
    for u in doc.units:
        line = text[u.start : u.end]
        if _SOURCES_LABEL_RE.fullmatch(line):
            in_list = True
            continue
        has_url = "://" in line
        line_start = text.rfind("\n", 0, u.start) + 1
        if has_url and (in_list or _FOOTNOTE_LINE_RE.match(text, line_start)):
            out.append(u)
        elif not has_url:
            in_list = False
    return out


def accept(
    doc: Doc,
    cands: Sequence[Candidate],
    known_keys: set[str],
    cited_stems: set[str],
    threshold: float,
    generic: frozenset[str],
    lang: str = "en",
    org_keys: frozenset[str] | set[str] = frozenset(),
) -> list[Candidate]:
    """The candidates taken for organisation names (see the module docstring for the rule)."""
    cache: dict[str, list[int]] = {}

    def capitalised(name: str) -> list[int]:
        if name not in cache:
            cache[name] = _prose_capitalised_at(doc, name)
        return cache[name]

    sources = _source_entries(doc)
    known_or_org = known_keys | org_keys  # neither set changes below
    for c in cands:
        c.cls = classify(c.text[:1].upper() + c.text[1:] if c.casual else c.text, threshold, generic)
        keys = merge_keys(c.text)
        if sources and doc.unit_at(c.span[0]) in sources and not keys & known_or_org:
            c.cls = GENERIC  # a source list names publishers and page titles, not options
            continue
        if c.source in ("prose", "cue", "enum") and not keys & known_keys and _feature_example(doc, c):
            c.cls = GENERIC  # "add-ons such as AIOps and status pages": examples of features, not options
            continue
        if c.casual and c.source == "casual":
            declared = bool(keys & known_keys) or not _integration_before(
                doc.masked, max(0, c.span[0] - 40), c.span[0]
            )
            c.cls = STRONG if c.cls != GENERIC and declared and not _rule_out(c.text, lang) else GENERIC
            c.anchor = c.cls == STRONG
            continue
        c.declared = bool(keys & known_or_org)
        if c.cls == GENERIC and c.source == "lead" and c.text[:1].islower() and _links_to_itself(doc, c, keys):
            c.cls = STRONG  # "**2. folk** — … ([folk.app](…))": a lead in lower case that its own link names
            c.anchor = True
        elif c.cls == GENERIC and c.source in ("lead", "column") and _rare_lower_name(c.text, lang, generic):
            # "**italki**", "| weclapp |": a word in lower case that no dictionary knows, leading an item or row,
            # is a name written in lower case; its list or table votes on it as on any other medium name.
            c.cls = MEDIUM
            c.anchor = True
        if c.declared and c.source != "prose":
            c.cls = STRONG  # the org or a known competitor in a list ("Best Buy") votes for its siblings
            continue
        if c.cls == GENERIC:
            continue
        declared = bool(
            c.cued
            or keys & known_keys
            or any(stem_match(s, keys) for s in cited_stems)
            or (c.url and stem_match(domain_stem(c.url), keys))
        )
        if c.cls == MEDIUM and lang != "en" and all(
            _is_common(w, threshold, lang) or w.lower() in FUNCTION_WORDS for w in c.text.split()
        ):
            c.cls = WEAK  # every word is a dictionary word of the answer's language ("Fazit", "Stunde Flugzeit")
        if c.source != "prose" and not declared and _rule_out(c.text, lang, False):
            c.cls = GENERIC  # German compounds, places, plans … are no names in a heading or a list either
            continue
        if c.source == "cue" and not keys & known_keys and (
            _rule_out(c.text, lang) or (lang == "de" and _german_word(c.text.split()[0]))
        ):
            c.cls = GENERIC  # a cue before a place, a plan or a German noun: "wie Kreditkarten", "like Europe"
            continue
        if c.source == "prose":
            # A name in running text is a brand on evidence only: declared, or shaped like one / not a dictionary
            # word and capitalised where a capital means a name (mid-sentence; German capitalises every noun),
            # or a dictionary word capitalised mid-sentence in two more places.
            if _rule_out(c.text, lang) and not keys & known_keys:
                c.cls = GENERIC
            elif declared:
                c.cls = STRONG
            elif lang in _ARTICLES and _always_after_article(doc, c.text, lang):
                c.cls = GENERIC  # "Die BaFin hat …", "la CNIL a estimé …": institutions take an article, brands not
            elif lang == "de" and c.cls != STRONG and _german_noun_context(doc, c):
                c.cls = GENERIC  # "keine Heatmaps", "eine Neobank", "Fehler, Abstürze und …": German nouns
            elif _after_place_preposition(doc, c.span[0], lang) or (
                (at := _enumeration_start(doc, c.span[0], c.span[0] + len(c.text))) != c.span[0]
                and _after_place_preposition(doc, at, lang, _ENUM_PLACE_PREPOSITIONS)
            ):
                c.cls = GENERIC  # "in Lisbon", "à Lyon", "nach Berlin", "in Alfama, Príncipe Real and …"
            elif _CATEGORY_BEFORE_CUE_RE.match(doc.masked, c.span[0] + len(c.text)):
                c.cls = GENERIC  # "Neobroker wie Trade Republic", "Plataformas como …": the category, then examples
            elif _stack_compound(doc, c.text):
                c.cls = GENERIC  # "Postgres-based", "Kubernetes-native": what the options are built on
            elif _ACRONYM_RE.fullmatch(c.text):
                # An acronym in running text is a brand when it recurs (category acronyms are ruled out above).
                c.cls = STRONG if len(list(doc.find_phrase([c.text], case_sensitive=True))) >= 2 else GENERIC
            elif _integration_before(doc.masked, max(0, c.span[0] - 40), c.span[0]) or (
                (at := _enumeration_start(doc, c.span[0], c.span[0] + len(c.text))) != c.span[0]
                and _integration_before(doc.masked, max(0, at - 40), at)
            ):
                c.cls = GENERIC  # a platform or integration target: "if you're on Shopify", "syncs with Slack"
            elif c.cls in (STRONG, MEDIUM) and (
                c.mid
                or lang == "de"
                or _subject_of_verb(doc, c.span[1], lang)
                or (lang == "en" and _VERB_SHAPE_RE.match(doc.masked, c.span[1]))
            ):
                c.cls = STRONG  # "Deel and Remote are …", "Fathom is the other name …"
            elif c.cls == WEAK and lang != "de" and (
                c.mid or (len(c.text.split()) > 1 and _subject_of_verb(doc, c.span[1], lang))
            ) and (
                len(c.text.split()) > 1
                or max(zipf(c.text.lower()), _zipf_in(c.text.lower(), lang)) < _PROSE_ZIPF_MAX
                # an everyday word capitalised mid-sentence as a verb's subject, never written in lower case in
                # the answer: "and Bear is the nicer-looking upgrade"
                or (_subject_of_verb(doc, c.span[1], lang) and _never_lower(doc, c.text))
            ) and not doc.is_title_case(doc.unit_at(c.span[0]) or _NO_UNIT):
                c.cls = STRONG  # capitalised mid-sentence: "teams on Linear", "Simple Analytics takes …"
            elif c.cls == WEAK and lang != "de" and len(
                [p for p in capitalised(c.text) if not (c.span[0] <= p < c.span[1])]
            ) >= 2:
                c.cls = STRONG
            elif c.cls == WEAK and lang != "de" and _sentence_subject(doc, c, lang):
                c.cls = STRONG  # "Fathom is the other name …", "Uber Eats tends to …"
                c.anchor = True
            else:
                c.cls = GENERIC
            continue
        if c.cls in (WEAK, MEDIUM):
            if declared or any(not (c.span[0] <= p < c.span[1]) for p in capitalised(c.text)):
                c.cls = STRONG
                # A cue phrase is evidence at this very span, even for an everyday word ("Front is worth a look").
                c.anchor = c.anchor or c.cued
    groups: dict[str, list[Candidate]] = {}
    for c in cands:
        groups.setdefault(c.group, []).append(c)
    # Tables whose first header cell names a category ("| ATS | Best for |", "| Provider | Price |") list brands in
    # their first column; the header cells of a comparison table ("| | Square | Toast |") are brands by position.
    declared_columns = {
        u.group
        for u in doc.units
        if u.kind == "row" and u.header and u.cells and _is_category(doc.text[u.cells[0][0] : u.cells[0][1]])
    }
    out: list[Candidate] = []
    label_spans: list[tuple[int, int]] = []
    for group, members in groups.items():
        labels = [c for c in members if c.cls == GENERIC]
        names = [c for c in members if c.cls != GENERIC]
        brandish = [c for c in names if c.cls in (STRONG, MEDIUM)]
        if group.endswith(".hdr") and not any(c.declared for c in members):
            continue  # header cells that are column labels ("| Tool | Hosting | Preis |")
        by_position = group.endswith((".cols", ".hdr")) or group in declared_columns
        # A list or set of headings that holds the org or a known competitor and no label is a list of brands.
        sure = not labels and len(members) >= 3 and any(c.declared for c in names)
        listy = (
            bool(group)
            and len(names) >= 2
            and len(labels) * 2 < len(members)
            and (by_position or sure or len(brandish) * 2 >= len(names))
            # "Google Search and Workspace": a two-name phrase in prose needs one brand-shaped name.
            and (not group.startswith("enum") or len(members) >= 3 or any(c.cls == STRONG for c in names))
        )
        # The leads of a set of section labels ("**Postgres-based.**", "**MySQL and SQLite.**", "**My take:**")
        # are labels even when one is shaped like a name: it is a brand only through evidence elsewhere.
        label_set = group[:2] in ("bl", "nb") and len(members) >= 3 and len(labels) * 2 >= len(members)
        for c in names:
            if label_set and not c.declared:
                label_spans.append(c.span)
                continue
            if c.cls == STRONG or listy:
                # "Amazon, Walmart and Best Buy all run …"; "- kit (formerly convertkit) if you sell …"
                c.anchor = c.anchor or (listy and (c.source == "enum" or c.casual))
                out.append(c)
    if label_spans:
        out = [c for c in out if c.declared or not any(s <= c.span[0] < e for s, e in label_spans)]
    out.sort(key=lambda c: c.span)
    out = _joined_to_accepted(doc, cands, out)
    return _drop_entry_parts(doc, out, lang)


#: Words right before a name that make it a comparison point or an alternative, not a part of the entry it is in
#: ("cheaper than Clockify", "Help Scout over Zendesk", "an alternative to Heroku", "más cara que ClickUp").
_COMPARED_BEFORE_RE = re.compile(
    r"(?:\b(?:than|over|vs\.?|versus|like|unlike|to|instead of|rather than|compared (?:to|with)|que|als|wie|como|"
    r"comme|contre|gegenüber))[ \t]+(?:the[ \t]+|old[ \t]+)*[*_]*$",
    re.IGNORECASE,
)
#: A comparative after a name: "Iberia Express es más puntual que Vueling", "Acme is cheaper than Zentrivo".
_COMPARED_AFTER_RE = re.compile(r"[^.,;:!?\n]{0,40}?\b(?:than|que|als)\b")


#: Sources of names found in running text (not by structure, enumeration or cue).
_RUNNING_TEXT = frozenset({"prose", "suffixed"})


def _in_running_text(c: Candidate) -> bool:
    """Found in running text, or in an enumeration that is not a list of brands ("TPUs or Vertex AI")."""
    return c.source in _RUNNING_TEXT or (c.source == "enum" and not c.anchor)


def _drop_entry_parts(doc: Doc, accepted: list[Candidate], lang: str) -> list[Candidate]:
    """Names that only live inside the entry of another brand are parts of it, not options of the answer.

    An *entry* is a list item or bold-led line whose lead is an accepted name (``**Copper** — lives inside Google
    Workspace …``), or the first paragraph, list items and bold-led lines of the section under a heading whose lead
    is one (``### Linear — …`` then ``**Pros:** great GitHub sync``). A name found in running text (not a lead, bold span, enumeration or cue), every occurrence of
    which is inside one such entry, and which is neither bold nor written as a comparison point ("cheaper than
    X", "over X", "X is more punctual than Y"), is that brand's product, plan, feature, integration or stack ("Sales
    Hub", "Watchtower", "Simple Start", "LinkedIn prospecting"): dropped."""
    if not any(c.source in _RUNNING_TEXT for c in accepted):
        return accepted
    spans = {c.span for c in accepted}
    other = {c.span for c in accepted if not _in_running_text(c)}
    lead_of: dict[int, tuple[int, int] | None] = {}

    def entry(unit: Unit) -> int | None:
        # A section's list items, bold-led lines and first paragraph are its entry; a later paragraph, such as the
        # closing one under the last heading, often is not ("If you already pay for Datadog, …").
        head = doc.units[unit.section] if unit.section >= 0 else None
        if head is not None and unit.kind != "item":
            first = len(doc.text) - len(doc.text[head.end :].lstrip())
            if doc.text.find("\n\n", first, unit.start) >= 0:
                head = None
        for u in (unit, head):
            if u is None or u.kind not in ("item", "heading"):
                continue
            if u.index not in lead_of:
                lead_of[u.index] = lead_span(doc, u)
            ls = lead_of[u.index]
            if ls is not None and any(a[0] >= ls[0] and a[1] <= ls[1] for a in spans):
                return u.index
        return None

    out = []
    for c in accepted:
        unit = doc.unit_at(c.span[0])
        if not _in_running_text(c) or c.declared or c.span in other or unit is None or doc.in_bold(*c.span):
            out.append(c)
            continue
        home = entry(unit)
        if (
            home is None
            or _COMPARED_BEFORE_RE.search(doc.masked, max(unit.body, c.span[0] - 20), c.span[0])
            or _COMPARED_AFTER_RE.match(doc.masked, c.span[1], unit.end)
        ):
            out.append(c)
            continue
        own = True
        ls = lead_of.get(home)
        # A word of the entry's own lead is a short form of that brand ("Azure" under "**Microsoft Azure**").
        short_form = ls is not None and len(c.text.split()) == 1 and c.text in doc.text[ls[0] : ls[1]].split()
        for s, _e in doc.find_phrase(words_of(c.text)):
            u = doc.unit_at(s)
            if u is None or entry(u) != home or (ls is not None and ls[0] <= s < ls[1] and not short_form):
                own = False
                break
        if not own:
            out.append(c)
    return out


#: First-column headers that say the column lists organisations or products.
_CATEGORY_HEADS: frozenset[str] = frozenset(
    """tool tools provider providers platform platforms vendor vendors app apps service services company companies
    brand brands bank banks airline airlines retailer retailers store stores option options name product products
    software solution solutions marketplace marketplaces network carrier carriers exchange broker brokers
    herramienta proveedor plataforma empresa banco aerolínea tienda opción producto anbieter plattform werkzeug
    unternehmen bank marke produkt outil fournisseur plateforme entreprise banque compagnie enseigne produit""".split()
)


def _is_category(cell: str) -> bool:
    low = clean_name(cell).lower()
    return low in _CATEGORY_HEADS or (bool(low) and low in GENERIC_ACRONYMS)


def _display(brand: Brand, known_names: dict[str, str]) -> str:
    """Display name: the caller's spelling for a known competitor; else the spelling used most often, the
    shortest on a tie ("Lambda" over "Lambda Labs"), preferring a capitalised, non-domain spelling."""
    for k in brand.keys:
        if k in known_names:
            return known_names[k]
    surfaces = brand.surfaces or sorted(brand.forms)
    non_domain = [s for s in surfaces if not looks_like_domain(s)] or surfaces
    by_fold = Counter(s.casefold() for s in non_domain)
    first_seen: dict[str, int] = {}
    for i, s in enumerate(non_domain):
        first_seen.setdefault(s.casefold(), i)
    fold = min(by_fold, key=lambda f: (-by_fold[f], len(f), first_seen[f]))
    spellings = Counter(s for s in non_domain if s.casefold() == fold)
    return min(spellings, key=lambda s: (not s[:1].isupper(), s.isupper(), -spellings[s], s))


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # The lower index (the org is 0) stays the root, so the org's group is always the org's.
            self.parent[max(ra, rb)] = min(ra, rb)


def discover(
    doc: Doc,
    org: Brand,
    known_competitors: Sequence[str],
    cited_urls: Iterable[str],
    threshold: float,
    generic: frozenset[str],
    lang: str = "en",
) -> tuple[Brand, list[Brand]]:
    """The org (mentions filled) and every other organisation named, merged, with mentions, in rank order."""
    known = [clean_name(k) for k in known_competitors if clean_name(k)]
    known_names: dict[str, str] = {}
    known_keys: set[str] = set()
    for k in known:
        for key in merge_keys(k):
            known_names.setdefault(key, k)
            known_keys.add(key)
    cited_stems = {domain_stem(u) for u in cited_urls} - {""}
    accepted = accept(
        doc, candidates(doc, threshold, generic, lang), known_keys, cited_stems, threshold, generic, lang, org.keys
    )

    raw: list[Brand] = [org]
    for k in known:
        raw.append(Brand(display=k, forms=name_forms(k), keys=set(merge_keys(k)), known=True))
    for c in accepted:
        forms = name_forms(c.text)
        keys = set(merge_keys(c.text))
        alias = _lead_alias(doc, c, generic)
        if alias:  # "### Deutsche Bahn (ICE)": the short name in parentheses is the same brand
            forms |= name_forms(alias)
            keys |= merge_keys(alias)
        anchors = {(c.span[0], c.span[0] + len(c.text))} if c.anchor else set()
        raw.append(Brand(display=c.text, forms=forms, keys=keys, anchors=anchors))
    uf = _UnionFind(len(raw))
    base = 1 + len(known)
    for j, c in enumerate(accepted):
        if c.fold:
            target = _fold_target(doc, accepted, j)
            if target is not None:
                uf.union(base + target, base + j)
    owner: dict[str, int] = {}
    for i, b in enumerate(raw):
        # The initials of a long name match an acronym written in the text ("AWS"), not another long name with
        # the same initials ("Salesforce Sales Cloud" / "SAP Sales Cloud").
        skip = _initials(b.display) if len(tokens(b.display)) >= 3 else ""
        for key in b.keys:
            if key in owner:
                if key == skip and len(tokens(raw[owner[key]].display)) >= 3:
                    continue
                uf.union(owner[key], i)
            else:
                owner[key] = i
    # A product line is its maker's when the maker is named too (or is the org): "CrowdStrike Falcon" with
    # "CrowdStrike", "HubSpot Free CRM" for org HubSpot, "Microsoft Defender" with "Microsoft".
    for i, b in enumerate(raw):
        words = tokens(b.display)
        for n in range(len(words) - 1, 0, -1):
            hit = next((owner[key] for key in merge_keys(" ".join(words[:n])) if key in owner), None)
            if hit is not None and uf.find(hit) != uf.find(i):
                uf.union(hit, i)
                break
    maker_of = _fold_shared_maker(doc, raw, uf, threshold, generic)
    merged: dict[int, Brand] = {}
    for i, b in enumerate(raw):
        root = uf.find(i)
        if root not in merged:
            merged[root] = Brand(display=b.display, is_org=(root == 0))
        m = merged[root]
        m.forms |= b.forms
        m.keys |= b.keys
        m.known = m.known or b.known
        m.anchors |= b.anchors
    brands = list(merged.values())
    org_brand = merged[0]
    org_brand.display = org.display
    find_mentions(doc, brands, threshold, generic)
    others = [b for b in brands if not b.is_org and b.mentions]
    makers = {id(merged[uf.find(i)]): w for i, w in maker_of.items()}
    for b in others:
        b.display = _display(b, known_names)
        maker = makers.get(id(b))
        lines = {x.casefold() for x in b.surfaces if x.split()[:1] == [maker] and len(x.split()) > 1}
        if maker and not any(k in known_names for k in b.keys) and len(lines) > 1:
            b.display = maker  # "Google Analytics 4" + "Google BigQuery" → Google
    others.sort(key=lambda b: b.first_offset)
    return org_brand, others


_LEAD_ALIAS_RE = re.compile(r"[*_ \t]*\(([A-Z][A-Za-z0-9&+-]{1,15})\)")


def _lead_alias(doc: Doc, c: Candidate, generic: frozenset[str]) -> str:
    """The one capitalised word in parentheses right after a lead's name ("Deutsche Bahn (ICE)", "Amazon Web
    Services (AWS)"): an alias or the flagship product of that brand, or ""."""
    if c.source not in ("lead", "column"):
        return ""
    at = doc.text.find(c.text, c.span[0], c.span[1])
    if at < 0:
        return ""
    unit = doc.unit_at(c.span[0])
    m = _LEAD_ALIAS_RE.match(doc.text, at + len(c.text), unit.end if unit is not None else c.span[1])
    if not m:
        return ""
    alias = m.group(1)
    low = alias.lower()
    if low in generic or low in PLAN_NAMES or low in GENERIC_ACRONYMS or _is_code(alias) or is_place(alias):
        return ""
    return alias


def _initials(name: str) -> str:
    return "".join(w[0] for w in tokens(name) if w[:1].isalpha()).lower()


def _maker_word(doc: Doc, word: str, generic: frozenset[str]) -> bool:
    """Can ``word`` (the first word of two names) be their maker? A capitalised word that is no function word,
    label, plan or place, and that the answer never writes in lower case ("Google", "Adobe", "Uber")."""
    low = word.lower()
    if len(low) < 3 or not word[:1].isupper() or not word.isalpha():
        return False
    if low in FUNCTION_WORDS or low in NEVER_NAMES or low in generic or low in LEADING_GENERIC:
        return False
    if low in PLAN_NAMES or low in _DETERMINERS or low in BRAND_MARKERS or is_place(word):
        return False
    return all(doc.masked[s : s + 1].isupper() for s, _e in doc.find_phrase([low]))


def _fold_shared_maker(
    doc: Doc, raw: Sequence[Brand], uf: _UnionFind, threshold: float, generic: frozenset[str]
) -> dict[int, str]:
    """Product lines of one maker are one brand: names that start with the same maker word ("Google Analytics 4"
    and "Google BigQuery", "Marriott Homes & Villas" and "Marriott Bonvoy"), and a one-word name that ends a
    longer one ("Azure" in "Microsoft Azure") or two names that end with the same rare word ("Grupo Santander",
    "Banco Santander"). The org is left out: its own products come from the request. Returns the maker word
    of each group joined by its first word (index of one member → word)."""
    by_first: dict[str, list[int]] = {}
    last: dict[str, int] = {}
    singles: list[tuple[int, str]] = []
    for i, b in enumerate(raw):
        if b.is_org or uf.find(i) == 0:
            continue
        words = tokens(b.display)
        if not words:
            continue
        if len(words) == 1:
            singles.append((i, words[0]))
            continue
        by_first.setdefault(words[0], []).append(i)
        tail = words[-1].lower()
        if len(tail) >= 4 and tail.isalpha() and not is_common_word(tail, threshold) and (
            tail not in generic and tail not in BRAND_MARKERS
        ):
            if tail in last:
                uf.union(last[tail], i)
            else:
                last[tail] = i
    makers: dict[int, str] = {}
    verdicts: dict[str, bool] = {}
    one_word = {w for _i, w in singles}
    for word, members in by_first.items():
        distinct = {raw[i].display.casefold() for i in members}
        if len(distinct) < 2 and word not in one_word:
            continue  # only one product line of that word: nothing to fold
        verdicts[word] = _maker_word(doc, word, generic)
        if verdicts[word]:
            for i in members[1:]:
                uf.union(members[0], i)
                makers[i] = word
    for i, word in singles:
        if uf.find(i) == 0:
            continue
        lines = by_first.get(word)
        if lines and verdicts.get(word) and uf.find(lines[0]) != 0:
            uf.union(lines[0], i)
        elif word.lower() in last and uf.find(last[word.lower()]) != 0:
            uf.union(last[word.lower()], i)  # "Azure" with "Microsoft Azure"
    return makers


def _fold_target(doc: Doc, accepted: Sequence[Candidate], j: int) -> int | None:
    """Index of the accepted name that ``accepted[j]`` (an owner, maker, former name or product line) belongs
    to: the nearest name before it in its unit, else the lead of the heading its unit sits under."""
    c = accepted[j]
    unit = doc.unit_at(c.span[0])
    if unit is None:
        return None
    for i in range(j - 1, -1, -1):
        if accepted[i].span[1] <= c.span[0] and accepted[i].span[0] >= unit.start:
            return i
        if accepted[i].span[0] < unit.start:
            break
    # "Campaign Monitor, which is part of Marigold": the brand named earlier in the unit, accepted elsewhere.
    head = doc.text[unit.start : c.span[0]]
    best: tuple[int, int] | None = None
    for i in range(j - 1, -1, -1):
        at = head.rfind(accepted[i].text)
        if at >= 0 and (best is None or at > best[0]):
            best = (at, i)
    if best is not None:
        return best[1]
    if unit.section >= 0:
        section = doc.units[unit.section]
        lead = lead_span(doc, section)
        if lead:
            for i in range(j - 1, -1, -1):
                if accepted[i].span == lead:
                    return i
    return None


def known_brands(known_competitors: Sequence[str]) -> list[Brand]:
    """Brands for the caller's known competitors (for citations from a competitor the answer does not name)."""
    out = []
    for k in known_competitors:
        name = clean_name(k)
        if name:
            out.append(Brand(display=name, forms=name_forms(name), keys=set(merge_keys(name)), known=True))
    return out


def rank_all(org: Brand, others: Sequence[Brand]) -> tuple[int, list[Competitor]]:
    """The org's rank (0 when not named) and the competitors with their ranks, ranked together by first mention."""
    everyone = sorted([b for b in [org, *others] if b.mentions], key=lambda b: (b.first_offset, not b.is_org))
    ranks = {id(b): i + 1 for i, b in enumerate(everyone)}
    comps = [Competitor(name=b.display, rank=ranks[id(b)], mention_count=len(b.mentions)) for b in others]
    return ranks.get(id(org), 0), comps


def brand_domains(brand: Brand) -> set[str]:
    """Registrable domains spelled out among a brand's forms (``Vast.ai`` → ``vast.ai``)."""
    return {registrable_domain(f) for f in brand.forms if looks_like_domain(f)} - {""}
