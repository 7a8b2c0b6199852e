"""A deterministic "GPU-demand analyst" standing in for an LLM behind the OpenAI emulator.

It reads a classification prompt the way a model would — company name near the top, then
sources, each with a ``URL: https://...`` line (or any markdown containing URLs) — scores the
sources with weighted phrase patterns, and returns::

    {"tier": "HOT|WARM|WATCH|COLD", "score": 0..100, "category": "<workload category>",
     "rationale": "1-3 sentences quoting the sources", "evidence_urls": ["<urls from the prompt>"]}

:func:`conform_to_schema` then fits that dict to whatever JSON schema the caller sent in
``response_format`` (providers.md §3.2): enums are matched fuzzily, key names loosely
(``gpu_tier`` → tier), unknown required keys get type-correct defaults. Same input → same output.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from .corpus import Corpus, domain_matches, domain_of

CATEGORIES = {
    "frontier": "Frontier pre-training",
    "inference": "Massive in-house inference",
    "infra": "AI infrastructure platform",
    "posttrain": "Post-training at scale",
    "specialized": "Specialized model training",
    "wrapper": "Fine-tuning or API wrapper",
    "none": "No significant AI compute",
}
# Words that identify each internal category inside a caller's own enum labels.
_CATEGORY_HINTS = {
    "frontier": ("frontier", "pre-train", "pretrain", "foundation"),
    "inference": ("inference", "serving", "in-house"),
    "infra": ("infrastructure", "platform", "cloud", "provider"),
    "posttrain": ("post-train", "posttrain", "post train", "rl", "alignment"),
    "specialized": ("specialized", "specialised", "domain", "modality", "video", "image"),
    "wrapper": ("wrapper", "fine-tun", "api", "thin"),
    "none": ("no ", "none", "not ", "minimal", "non-ai", "unknown"),
}
# (score base, span): score = base + span * strength, strength in 0..1.
_SCORE_RANGE = {
    "frontier": (80, 18),
    "infra": (77, 18),
    "inference": (66, 22),
    "posttrain": (58, 20),
    "specialized": (54, 18),
    "wrapper": (12, 14),
    "none": (3, 14),
}

_NEG = re.compile(
    r"\b(?:not|never|no|don't|doesn't|didn't|rather than|instead of|without)\b[^.;:]{0,40}$",
    re.IGNORECASE,
)

# (signal, weight, pattern, negatable)
_SIGNALS: list[tuple[str, float, str, bool]] = [
    # frontier pre-training
    ("frontier", 2.0, r"\bpre-?train(?:ing|ed|s)?\b", True),
    ("frontier", 2.0, r"\bfrontier(?:-scale)? (?:\w+ )?(?:models?|ai|labs?|pre-?training)\b", True),
    (
        "frontier",
        3.0,
        r"\b(?:tens|hundreds) of thousands of (?:\w+ ){0,2}(?:gpus|accelerators|chips|h100s)\b",
        True,
    ),
    ("frontier", 3.0, r"\b\d{2,3},\d{3}\+? (?:\w+ ){0,3}(?:gpus|accelerators|chips|superchips)\b", True),
    ("frontier", 2.0, r"\b(?:a|one) (?:hundred|million) thousand gpus|\bmillion (?:tpu )?chips\b", True),
    ("frontier", 1.5, r"\btraining clusters?\b|\bsupercomputers?\b", True),
    ("frontier", 1.0, r"\bfoundation models?\b", True),
    ("frontier", 1.0, r"\bscaling laws?\b", False),
    ("frontier", 1.5, r"\bgigawatts?\b", False),
    ("frontier", 1.0, r"\bstargate\b|\bdata center campus", False),
    # AI infrastructure platforms
    ("infra", 3.0, r"\b(?:gpu|ai) clouds?\b|\bneoclouds?\b|\bai hyperscaler|\bacceleration cloud\b", False),
    (
        "infra",
        2.0,
        r"\bserverless inference\b|\binference (?:platform|api|endpoints)\b|\bdedicated endpoints\b",
        False,
    ),
    (
        "infra",
        2.0,
        r"\bon-demand (?:gpu|cloud )?instances\b|\bgpu instances\b|\b1-click clusters\b|\bbare-metal\b",
        False,
    ),
    (
        "infra",
        2.0,
        r"\b(?:customers|ai labs|research labs|developers|research teams|enterprises) (?:\w+ ){0,2}(?:use|rent|run)\b",
        False,
    ),
    ("infra", 1.5, r"\brent(?:s|ing)? (?:\w+ ){0,2}(?:gpus?|clusters)\b|\bclusters? from \d+ to\b", False),
    # massive in-house inference
    (
        "inference",
        3.0,
        r"\bhundreds of millions of (?:\w+ ){0,2}(?:users|queries|people|messages|weekly users)\b",
        True,
    ),
    ("inference", 2.0, r"\b(?:inference )?queries per (?:second|day|month)\b|\bqueries per month\b", True),
    (
        "inference",
        2.0,
        r"\b(?:our own|in-house|own) (?:\w+ ){0,2}inference\b|\binference (?:fleet|engine|stack|infrastructure)\b",
        True,
    ),
    (
        "inference",
        1.0,
        r"\bserving (?:cost|stack|system|infrastructure)\b|\bkv caches?\b|\bspeculative decoding\b",
        False,
    ),
    ("inference", 1.5, r"\bmillions of (?:daily )?(?:users|people)\b|\bbillions of tokens\b", True),
    # post-training
    (
        "posttrain",
        1.5,
        r"\bpost-?train(?:ing|ed|s)?\b|\breinforcement learning\b|\brlhf\b|\bpreference optimi[sz]ation\b",
        True,
    ),
    # specialised model training
    (
        "specialized",
        2.0,
        r"\bvideo (?:generation|diffusion)\b|\bdiffusion (?:models?|transformers?)\b|\bimage(?:-| )generation\b|\btext-to-(?:video|image)\b|\bgenerative video\b|\bworld models?\b",
        False,
    ),
    ("specialized", 1.5, r"\bstable diffusion\b|\bgen-\d\b|\bmultimodal diffusion\b", False),
    # own training (feeds frontier/specialised/post-training)
    (
        "own_training",
        2.0,
        r"\btrain(?:s|ed|ing)? (?:its|our|their) own (?:\w+ ){0,3}models?\b|\btrained (?:from scratch|by our (?:\w+ ){0,2}team)\b|\bwe train\b",
        True,
    ),
    # raw compute scale
    (
        "gpu_scale",
        2.0,
        r"\bthousands of (?:\w+ ){0,2}(?:gpus|accelerators|chips)\b|\b\d{1,3}(?:,\d{3})?\+? gpus\b",
        True,
    ),
    ("gpu_scale", 0.7, r"\b(?:h100|h200|b200|gb200|blackwell|tpus?|trainium)\b", False),
    ("gpu_scale", 0.5, r"\binfiniband\b|\bnccl\b", False),
    # thin wrappers (never negated: "we do not train" IS the signal)
    (
        "wrapper",
        3.0,
        r"\bbuilt (?:directly )?on (?:top of )?(?:openai|gpt|the openai api)|\bwrapper around\b|\bthin wrappers?\b|\bpowered by (?:gpt|openai)\b",
        False,
    ),
    (
        "wrapper",
        2.5,
        r"\bmodel-agnostic\b|\bthird-party (?:\w+ ){0,2}(?:models?|apis?|providers?|llm apis?)\b|\bthrough (?:their|its|the) (?:\w+ )?apis?\b|\bon the openai api\b|\bopenai's api\b",
        False,
    ),
    (
        "wrapper",
        3.0,
        r"\b(?:do(?:es)? not|don't|never) (?:\w+ ){0,2}(?:train|build|operate) (?:\w+ ){0,3}(?:models?|gpu|infrastructure)",
        False,
    ),
    # not an AI business
    ("non_ai", 1.0, r"\baccounting\b|\binvoic(?:e|es|ing)\b|\bbookkeeping\b|\bpayroll\b", False),
]
_COMPILED = [(sig, w, re.compile(p, re.IGNORECASE), neg) for sig, w, p, neg in _SIGNALS]
_URL_RE = re.compile(r"https?://[^\s<>()\[\]\"'`|]+")
# "Domain: together.ai" in the prompt header: pages on that site are about the company.
_DOMAIN_RE = re.compile(
    r"(?im)^[\s*>-]*(?:domain|website)\s*:\s*(?:https?://)?(?:www\.)?([a-z0-9-]+(?:\.[a-z0-9-]+)+)"
)
_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass
class Block:
    """One source in the prompt: its URL and the text around it."""

    url: str
    text: str
    weight: float = 1.0
    signals: dict[str, float] = field(default_factory=dict)
    quotes: dict[str, tuple[float, str]] = field(default_factory=dict)


@dataclass
class Classification:
    company: str
    tier: str
    score: int
    category_key: str
    rationale: str
    evidence_urls: list[str]

    @property
    def category(self) -> str:
        return CATEGORIES[self.category_key]

    def as_dict(self, category_label: str | None = None) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "score": self.score,
            "category": category_label or self.category,
            "rationale": self.rationale,
            "evidence_urls": list(self.evidence_urls),
        }


def message_text(content: Any) -> str:
    """Text of a chat message ``content``: a string or a list of ``{type: text, text}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, dict):
                parts.append(str(p.get("text") or p.get("input_text") or ""))
            elif isinstance(p, str):
                parts.append(p)
        return "\n".join(parts)
    return "" if content is None else str(content)


def extract_urls(text: str) -> list[str]:
    """http(s) URLs in order of first appearance, trailing punctuation stripped."""
    seen: dict[str, None] = {}
    for m in _URL_RE.finditer(text):
        seen.setdefault(m.group(0).rstrip(".,;:!?*_>"), None)
    return list(seen)


def find_company(text: str, corpus: Corpus | None) -> str:
    """The company the prompt asks about (best effort; "the company" if unknown)."""
    patterns = [
        r"(?im)^[\s>*#-]*(?:\*\*)?(?:company|company name|organization|organisation|org|target company)(?:\*\*)?\s*[:=]\s*(?:\*\*)?[\"“']?([^\n\"”'*]{1,80}?)[\"”']?(?:\*\*)?\s*$",
        r"\"company(?:_name)?\"\s*:\s*\"([^\"]{1,80})\"",
        r"(?i)\b(?:classify|research|assess|evaluate|analy[sz]e|about)\s+(?:the\s+)?(?:company\s+)?[\"“']([^\"”'\n]{1,60})[\"”']",
        r"\b(?:[Cc]lassify|[Rr]esearch|[Aa]ssess|[Ee]valuate|[Aa]naly[sz]e)\s+(?:the\s+)?(?:company\s+)?([A-Z][\w.&'-]*(?:\s+[A-Z][\w.&'-]*){0,3})",
    ]
    for pat in patterns:
        m = re.search(pat, text)
        if m and m.group(1).strip():
            return m.group(1).strip().rstrip(".:,;")
    if corpus is not None:
        head = text[:2000]
        c = corpus.company_in_text(head)
        if c is not None:
            return c.name
    return "the company"


def split_blocks(text: str) -> list[Block]:
    """Cut the prompt into one block per source URL.

    A block starts at its URL line, extended upwards over adjacent non-blank lines without
    URLs (typically "[1] Title: ..."), and ends where the next block starts. Text before the
    first block (instructions, category definitions) is never treated as evidence.
    """
    lines = text.splitlines()
    url_lines = [i for i, line in enumerate(lines) if _URL_RE.search(line)]
    if not url_lines:
        return []
    starts: list[int] = []
    prev_end = -1
    for i in url_lines:
        s = i
        while s - 1 > prev_end and lines[s - 1].strip() and not _URL_RE.search(lines[s - 1]) and i - s < 3:
            s -= 1
        starts.append(s)
        prev_end = i
    blocks: list[Block] = []
    for n, (s, i) in enumerate(zip(starts, url_lines, strict=True)):
        e = starts[n + 1] if n + 1 < len(starts) else len(lines)
        url = extract_urls(lines[i])[0]
        body = "\n".join(lines[s:e])
        # Several URLs on one line (a markdown link list) → one block per URL sharing the text.
        for u in extract_urls(lines[i]):
            blocks.append(Block(url=u, text=body))
        del url
    # Merge duplicate URLs (same page listed twice).
    merged: dict[str, Block] = {}
    for b in blocks:
        if b.url in merged:
            merged[b.url].text += "\n" + b.text
        else:
            merged[b.url] = b
    return list(merged.values())


def _score_block(block: Block, company: str, domain: str | None = None) -> None:
    """Accumulate weighted signals and the best quote per signal for one source.

    A source *about* the company (its own domain, or the company named in its title/URL)
    counts fully. In other sources only sentences naming the company count fully; the rest
    count a little, so an industry roundup listing ten GPU clouds does not make each of them
    a GPU cloud by association.
    """
    about = _about(block, company) or bool(domain and domain_matches(block.url, [domain]))
    mention_rx = _mention_rx(company)
    weak = 0.25 if block.weight >= 1.0 else 0.1
    if block.signals or block.quotes:
        _accumulate(block.signals, block.quotes, block.text, about, mention_rx, weak)
        return
    # When the source is about the company every sentence weighs 1.0: the mention pattern and weak weight are moot.
    signals, quotes = _text_signals(block.text, about, None if about else mention_rx, 1.0 if about else weak)
    block.signals.update(signals)
    block.quotes.update(quotes)


# Pure in its arguments; prompts are built from the bundled corpus, so the same source texts come back request after
# request (docs/benchmarks.md, "Sandbox CPU per researched item").
@lru_cache(maxsize=4096)
def _text_signals(
    text: str, about: bool, mention_rx: re.Pattern[str] | None, weak: float
) -> tuple[tuple[tuple[str, float], ...], tuple[tuple[str, tuple[float, str]], ...]]:
    signals: dict[str, float] = {}
    quotes: dict[str, tuple[float, str]] = {}
    _accumulate(signals, quotes, text, about, mention_rx, weak)
    return tuple(signals.items()), tuple(quotes.items())


def _accumulate(
    signals: dict[str, float],
    quotes: dict[str, tuple[float, str]],
    text: str,
    about: bool,
    mention_rx: re.Pattern[str] | None,
    weak: float,
) -> None:
    for sent in _sentences(text):
        if about or mention_rx is None:
            sw = 1.0
        elif mention_rx.search(sent):
            sw = 0.9
        else:
            sw = weak
        for sig, w, hits in sentence_signals(sent):
            # Diminishing returns: a page repeating "H100" ten times is not ten signals.
            gain = sw * w * (1 + math.log(hits))
            signals[sig] = signals.get(sig, 0.0) + gain
            best = quotes.get(sig)
            if best is None or gain > best[0]:
                quotes[sig] = (gain, _clean_quote(sent))


@lru_cache(maxsize=4096)
def _sentences(text: str) -> tuple[str, ...]:
    """The non-blank sentences of a source text (:data:`_SENT_SPLIT`)."""
    return tuple(s for s in _SENT_SPLIT.split(text) if s.strip())


# Pure in the sentence; prompts are built from the bundled corpus, so the same sentences come back request after
# request and the ~60 pattern scans per sentence were most of the sandbox's CPU (docs/benchmarks.md).
@lru_cache(maxsize=1 << 16)
def sentence_signals(sent: str) -> tuple[tuple[str, float, int], ...]:
    """``(signal, weight, hits)`` for every signal pattern matching ``sent``, in :data:`_SIGNALS` order; a
    negatable pattern's match preceded by a negation (:data:`_NEG`) does not count."""
    out = []
    for sig, w, rx, negatable in _COMPILED:
        hits = 0
        for m in rx.finditer(sent):
            if negatable and _NEG.search(sent[: m.start()]):
                continue
            hits += 1
        if hits:
            out.append((sig, w, hits))
    return tuple(out)


@lru_cache(maxsize=1024)
def _mention_rx(company: str) -> re.Pattern[str] | None:
    if company == "the company":
        return None
    names = {company, company.split()[0]} if len(company.split()[0]) >= 4 else {company}
    return re.compile(
        r"(?<!\w)(?:" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) + r")(?!\w)",
        re.IGNORECASE,
    )


def _about(block: Block, company: str) -> bool:
    if company == "the company":
        return True
    squashed = re.sub(r"[^a-z0-9]", "", company.lower())
    if len(squashed) < 3:
        return False
    host = re.sub(r"[^a-z0-9]", "", domain_of(block.url))
    path = re.sub(r"[^a-z0-9]", "", block.url.lower().split("://", 1)[-1])
    head = re.sub(r"[^a-z0-9]", "", " ".join(_first_lines(block.text, 2)).lower())
    return squashed in host or squashed in path or squashed in head


@lru_cache(maxsize=1 << 14)
def _clean_quote(sentence: str) -> str:
    s = re.sub(r"[*_`#>]+|\[\.\.\.\]", "", sentence)
    s = re.sub(r"^\s*(?:\[\d+\]\s*)?(?:content|snippet|title)\s*:\s*", "", s, flags=re.IGNORECASE)
    s = re.sub(r"\s+", " ", s).strip()
    if len(s) > 160:
        cut = s[:157]
        s = cut[: cut.rfind(" ")] + "..."
    return s


def _mentions(block: Block, company: str) -> bool:
    if company == "the company":
        return True
    squashed = re.sub(r"[^a-z0-9]", "", company.lower())
    host = re.sub(r"[^a-z0-9]", "", domain_of(block.url))
    first = company.split()[0]
    text = block.text
    # ASCII only, where IGNORECASE is lower-casing: a name absent from the text cannot match its pattern.
    ascii_text = text.isascii() and company.isascii()
    return bool(
        ((not ascii_text or company.lower() in text.lower())
         and re.search(rf"(?<!\w){re.escape(company)}(?!\w)", text, re.IGNORECASE))
        or (first in text and re.search(rf"(?<!\w){re.escape(first)}(?!\w)", text))
        or (len(squashed) >= 4 and squashed[:12] in host)
    )


def _first_lines(text: str, n: int) -> list[str]:
    """``text.splitlines()[:n]`` without splitting the whole text when its first lines are short."""
    head = text[:4096].splitlines()
    # n + 1 pieces in the prefix: the first n lines ended inside it, so they are the text's first n lines.
    return head[:n] if len(head) > n else text.splitlines()[:n]


def classify(user_text: str, corpus: Corpus | None = None) -> Classification:
    """Classify the company a prompt asks about from the sources in the prompt."""
    company = find_company(user_text, corpus)
    dm = _DOMAIN_RE.search(user_text)
    domain = dm.group(1).lower() if dm else None
    blocks = split_blocks(user_text)
    for b in blocks:
        own_site = bool(domain and domain_matches(b.url, [domain]))
        b.weight = 1.0 if own_site or _mentions(b, company) else 0.3
        _score_block(b, company, domain)

    def total(sig: str) -> float:
        return sum(b.weight * b.signals.get(sig, 0.0) for b in blocks)

    t = {sig: total(sig) for sig in {s[0] for s in _SIGNALS}}
    own, scale = t["own_training"], t["gpu_scale"]
    cat_scores = {
        "frontier": t["frontier"] + 0.5 * own + 0.3 * scale,
        "infra": t["infra"] + 0.3 * scale,
        "inference": t["inference"] + 0.2 * scale,
        "posttrain": t["posttrain"] + 0.3 * own,
        "specialized": (t["specialized"] * (1.0 if own + scale > 0 else 0.5)) + 0.6 * own,
        "wrapper": t["wrapper"],
    }
    # A specialised-modality company that also trains at scale is still specialised unless
    # the language-model evidence is clearly stronger.
    if t["specialized"] >= 4:
        cat_scores["frontier"] *= 0.6
    best = max(cat_scores, key=lambda k: (cat_scores[k], k))
    best_score = cat_scores[best]
    compute = cat_scores["frontier"] + cat_scores["infra"] + cat_scores["inference"]
    if t["wrapper"] >= 2.5 and t["wrapper"] >= 0.5 * compute:
        best, best_score = "wrapper", t["wrapper"]
    if t["non_ai"] >= 2 and compute < 4:
        best, best_score = "none", t["non_ai"]
    elif best_score < 2.0:
        best = "none"

    base, span = _SCORE_RANGE[best]
    if best == "none":
        ai_signal = sum(v for k, v in t.items() if k not in ("non_ai", "wrapper"))
        strength = 1 - math.exp(-ai_signal / 4)
    else:
        strength = 1 - math.exp(-best_score / 10)
    score = round(base + span * strength)
    score = max(0, min(100, score))
    tier = "HOT" if score >= 75 else "WARM" if score >= 55 else "WATCH" if score >= 35 else "COLD"

    sig_keys = {
        "frontier": ("frontier", "own_training", "gpu_scale"),
        "infra": ("infra", "gpu_scale"),
        "inference": ("inference", "gpu_scale"),
        "posttrain": ("posttrain", "own_training"),
        "specialized": ("specialized", "own_training"),
        "wrapper": ("wrapper",),
        "none": ("non_ai", "wrapper"),
    }[best]
    ranked = sorted(
        ((sum(b.weight * b.signals.get(k, 0.0) for k in sig_keys), n, b) for n, b in enumerate(blocks)),
        key=lambda x: (-x[0], x[1]),
    )
    evidence = [(v, b) for v, _, b in ranked if v >= 1.0 and b.weight >= 1.0][:5]
    quotes: list[str] = []
    for _, b in evidence[:2]:
        sig = max(sig_keys, key=lambda k: (b.quotes.get(k, (0.0, ""))[0], k))
        if sig in b.quotes:
            quotes.append(f'"{b.quotes[sig][1]}" ({domain_of(b.url)})')
    label = CATEGORIES[best]
    if quotes:
        rationale = f"{company} is best described as {label}; the sources say " + " and ".join(quotes) + "."
    elif blocks:
        rationale = (
            f"None of the {len(blocks)} sources shows {company} training or serving models "
            "on its own GPUs, so there is no significant compute demand to report."
        )
    else:
        rationale = f"No sources were provided for {company}, so there is no evidence of AI compute demand."
    if best in ("wrapper", "none") and quotes:
        rationale += " There is no sign of its own training or inference infrastructure."
    return Classification(
        company=company,
        tier=tier,
        score=score,
        category_key=best,
        rationale=rationale,
        evidence_urls=[b.url for _, b in evidence],
    )


# -- fitting the answer to the caller's JSON schema -----------------------------------------------


def _resolve(schema: Any, root: dict[str, Any]) -> dict[str, Any]:
    """Follow local ``$ref``s and pick the non-null branch of ``anyOf``/``oneOf`` (Optional)."""
    seen = 0
    while isinstance(schema, dict) and seen < 20:
        seen += 1
        if "$ref" in schema and isinstance(schema["$ref"], str) and schema["$ref"].startswith("#/"):
            node: Any = root
            for part in schema["$ref"][2:].split("/"):
                node = node.get(part, {}) if isinstance(node, dict) else {}
            schema = node
            continue
        for key in ("anyOf", "oneOf", "allOf"):
            if key in schema and isinstance(schema[key], list):
                options = [o for o in schema[key] if not (isinstance(o, dict) and o.get("type") == "null")]
                schema = options[0] if options else {}
                break
        else:
            return schema
    return schema if isinstance(schema, dict) else {}


def _types(schema: dict[str, Any]) -> list[str]:
    t = schema.get("type")
    if isinstance(t, list):
        return [x for x in t if x != "null"] or ["null"]
    if t:
        return [t]
    if "enum" in schema:
        return ["enum"]
    if "properties" in schema:
        return ["object"]
    return ["string"]


def match_enum(value: str, options: list[Any], hints: tuple[str, ...] = ()) -> Any:
    """Best enum option for ``value``: exact (case-insensitive), then hint words, then overlap."""
    if not options:
        return value
    low = value.lower()
    for o in options:
        if str(o).lower() == low:
            return o
    for o in options:
        if any(h in str(o).lower() for h in hints):
            return o
    words = set(re.findall(r"[a-z]+", low))
    return max(
        options, key=lambda o: (len(words & set(re.findall(r"[a-z]+", str(o).lower()))), -options.index(o))
    )


def _default_for(schema: dict[str, Any], root: dict[str, Any]) -> Any:
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    t = _types(schema)[0]
    if t == "object":
        return _fill_object({}, schema, root, None)
    return {"string": "", "integer": 0, "number": 0, "boolean": False, "array": [], "null": None}.get(t, "")


def _fill_object(
    values: dict[str, Any], schema: dict[str, Any], root: dict[str, Any], cls: Classification | None
) -> dict[str, Any]:
    props: dict[str, Any] = schema.get("properties", {}) or {}
    out: dict[str, Any] = {}
    for key, sub in props.items():
        sub_r = _resolve(sub, root)
        v = _value_for_key(key, sub_r, root, cls) if cls is not None else None
        out[key] = v if v is not None else _default_for(sub_r, root)
    return out


def _clamp_number(x: float, schema: dict[str, Any], integer: bool) -> float | int:
    lo = schema.get("minimum", schema.get("exclusiveMinimum"))
    hi = schema.get("maximum", schema.get("exclusiveMaximum"))
    if hi is not None and hi <= 1 and x > 1:
        x = x / 100.0  # a 0..1 confidence-style field
    if lo is not None:
        x = max(x, lo)
    if hi is not None:
        x = min(x, hi)
    return round(x) if integer else round(float(x), 4)


def _value_for_key(key: str, schema: dict[str, Any], root: dict[str, Any], cls: Classification) -> Any:
    k = key.lower()
    types = _types(schema)
    enum = schema.get("enum")
    if "tier" in k or k in ("priority", "label", "classification"):
        return match_enum(cls.tier, enum) if enum else cls.tier
    if "categor" in k or "workload" in k or k in ("segment", "type"):
        if enum:
            return match_enum(cls.category, enum, _CATEGORY_HINTS[cls.category_key])
        return cls.category
    if ("score" in k or k in ("gpu_demand", "rating")) and ("integer" in types or "number" in types):
        return _clamp_number(cls.score, schema, "integer" in types)
    if "confidence" in k and ("integer" in types or "number" in types):
        conf = 0.55 + 0.08 * min(len(cls.evidence_urls), 5)
        return _clamp_number(
            conf if schema.get("maximum", 100) <= 1 else conf * 100, schema, "integer" in types
        )
    if "array" in types and ("url" in k or "source" in k or "evidence" in k or "citation" in k):
        items = _resolve(schema.get("items", {}), root)
        urls = list(cls.evidence_urls)
        if "maxItems" in schema:
            urls = urls[: schema["maxItems"]]
        if _types(items)[0] == "object":
            return [_object_with_url(u, items, root) for u in urls]
        return urls
    if "string" in types and any(
        w in k for w in ("rationale", "reason", "explanation", "summary", "justification", "analysis")
    ):
        return cls.rationale
    if "string" in types and ("company" in k or k in ("name", "organization", "org")):
        return cls.company
    if "boolean" in types and ("gpu" in k or "compute" in k or "ai" in k):
        return cls.category_key not in ("wrapper", "none")
    return None


def _object_with_url(url: str, schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, sub in (schema.get("properties") or {}).items():
        out[key] = url if "url" in key.lower() else _default_for(sub, root)
    return out


def conform_to_schema(cls: Classification, schema: dict[str, Any] | None) -> dict[str, Any]:
    """The classification as an instance of ``schema`` (the default shape if there is none)."""
    if not schema or not isinstance(schema, dict):
        return cls.as_dict()
    root = schema
    top = _resolve(schema, root)
    if _types(top)[0] != "object" or not top.get("properties"):
        return cls.as_dict()
    return _fill_object({}, top, root, cls)


def plain_text(cls: Classification) -> str:
    """A short prose verdict, used when the caller asked for no structured output."""
    urls = ", ".join(cls.evidence_urls[:3]) or "no sources"
    return (
        f"{cls.company}: {cls.tier} (score {cls.score}/100) — {cls.category}. "
        f"{cls.rationale} Sources: {urls}."
    )
