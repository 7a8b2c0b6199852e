"""The company classification contract: its JSON Schema, the classifier's system prompt, and the validator.

The orchestrator asks the extraction service for :func:`classification_schema` and :func:`system_prompt`
(``GetClassificationSchema``), sends them to inference unchanged, and hands the model's JSON back to
:func:`parse_classification` (``ParseClassification``). One module owns all three, so the prompt, the schema and
the validation cannot drift apart.

Shape of a classification (JSON object, exactly these keys)::

    {"tier": "HOT" | "WARM" | "WATCH" | "COLD",
     "score": integer 0..100,
     "category": one of settings.categories,
     "rationale": non-empty string,
     "evidence_urls": [string, ...]}        # each one of the search-result URLs the model was given

The schema is *strict-compatible* (OpenAI Structured Outputs with ``strict: true``): ``type: object``,
``additionalProperties: false``, every property listed in ``required``, only ``enum``/``minimum``/``maximum``/
``items``/``description`` keywords. Two rules the schema cannot express are checked by the validator only: the
rationale must not be blank, and every evidence URL must be one of the search results.

Decisions (documented because reasonable people differ):

* ``score`` must be a JSON integer. ``55.0``, ``55.5``, ``"55"`` and ``true`` are all rejected: a strict-mode model
  never emits them, so seeing one means the output did not come from the schema and deserves a retry rather than
  a silent repair. (JSON Schema itself would accept ``55.0`` as an integer; we are deliberately stricter.)
* ``tier`` and ``category`` are matched case-insensitively (surrounding whitespace ignored) and returned in their
  canonical spelling (``"hot"`` → ``HOT``; ``"frontier PRE-TRAINING"`` → ``"Frontier pre-training"``).
* Keys the schema does not define are rejected (``additionalProperties: false``), one violation per key.
* A JSON object wrapped in a Markdown code fence (```` ```json … ``` ````) is unwrapped first: models without
  structured outputs do that habitually, and the content is still exactly what the schema describes.
* Evidence URLs are compared with :func:`~services.extraction.urls.light_url_key` (scheme/host case, default
  port, trailing slash) and returned in the search result's own spelling, de-duplicated in order.

Every problem is reported at once as a ``google.rpc.BadRequest`` field violation (``score``,
``evidence_urls[2]``, ``classification_json`` …) through :class:`shared.errors.InvalidArgument`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.extraction.urls import light_url_key
from shared.errors import InvalidArgument

TIERS: tuple[str, ...] = ("HOT", "WARM", "WATCH", "COLD")
FIELDS: tuple[str, ...] = ("tier", "score", "category", "rationale", "evidence_urls")

#: What each tier means; shared by the schema's descriptions and the system prompt.
TIER_MEANINGS: dict[str, str] = {
    "HOT": "trains or serves frontier-scale models; runs or rents large GPU clusters (thousands of GPUs) now",
    "WARM": "significant and growing GPU needs: sizeable training or inference fleets, or clear plans to build them",
    "WATCH": "early or unclear signals: small-scale training, pilots, hiring for ML infrastructure, recent funding",
    "COLD": "little or no GPU compute of its own, e.g. a thin wrapper over third-party model APIs, or not an AI company",
}

#: Typical score bands per tier, given to the model as guidance (not enforced: the model weighs the evidence).
SCORE_BANDS: dict[str, tuple[int, int]] = {
    "HOT": (75, 100),
    "WARM": (50, 74),
    "WATCH": (25, 49),
    "COLD": (0, 24),
}


@dataclass(frozen=True)
class Classification:
    """A validated classification. ``tier`` ∈ :data:`TIERS`; ``score`` 0..100; ``category`` canonical spelling."""

    tier: str
    score: int
    category: str
    rationale: str
    evidence_urls: list[str] = field(default_factory=list)


def classification_schema(categories: Sequence[str]) -> dict[str, Any]:
    """JSON Schema (a dict) of a classification whose category is one of ``categories``."""
    return {
        "type": "object",
        "properties": {
            "tier": {
                "type": "string",
                "enum": list(TIERS),
                "description": "; ".join(f"{t} = {m}" for t, m in TIER_MEANINGS.items()),
            },
            "score": {
                "type": "integer",
                "minimum": 0,
                "maximum": 100,
                "description": "GPU-demand score from 0 (none) to 100 (frontier-scale, largest clusters).",
            },
            "category": {
                "type": "string",
                "enum": list(categories),
                "description": "The company's dominant GPU workload.",
            },
            "rationale": {
                "type": "string",
                "description": "Two to four sentences on the evidence behind the tier and score; never empty.",
            },
            "evidence_urls": {
                "type": "array",
                "items": {"type": "string"},
                "description": "URLs of the provided sources that support the rationale, copied exactly.",
            },
        },
        "required": list(FIELDS),
        "additionalProperties": False,
    }


def system_prompt(categories: Sequence[str]) -> str:
    """System prompt of the classifier; the schema above is its output format."""
    tiers = "\n".join(
        f"- {t} (score usually {SCORE_BANDS[t][0]}-{SCORE_BANDS[t][1]}): {m}."
        for t, m in TIER_MEANINGS.items()
    )
    cats = "\n".join(f"- {c}" for c in categories)
    return (
        "You are a GPU-demand analyst helping a GPU cloud sales team plan its territory. You are given one company "
        "and a set of web sources about it. Decide how much GPU compute the company itself needs, now and in the "
        "near future, based only on the sources.\n\n"
        f"Tiers:\n{tiers}\n\n"
        f"Category (pick the single dominant workload, spelled exactly as listed):\n{cats}\n\n"
        "Rules:\n"
        "- Judge the company's own compute: training runs, inference fleets, clusters it operates or rents. "
        "Using someone else's model API is not GPU demand.\n"
        "- Prefer concrete signals (cluster sizes, GPU counts, compute deals, model releases, ML infrastructure "
        "hiring, funding earmarked for compute) over marketing language.\n"
        "- When the sources are thin or contradictory, choose WATCH or COLD and say why.\n"
        "- score is an integer from 0 to 100 consistent with the tier.\n"
        "- rationale: two to four sentences naming the decisive evidence.\n"
        "- evidence_urls: cite only URLs from the provided sources, copied exactly; never invent or shorten a URL. "
        "Use an empty list when no source supports the conclusion.\n"
        "- Answer with a single JSON object matching the schema: tier, score, category, rationale, evidence_urls, "
        "and no other keys."
    )


_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n(?P<body>.*?)\n\s*```\s*$", re.DOTALL)


def _describe(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def parse_classification(
    text: str, search_result_urls: Sequence[str], categories: Sequence[str], *, company: str = ""
) -> Classification:
    """Validate the model's JSON ``text`` against the schema and the search results it was given.

    Raises :class:`InvalidArgument` listing every violation (field names as in the schema, ``evidence_urls[i]``
    for one URL, ``classification_json`` when the text is not a JSON object).
    """
    who = f" for {company}" if company else ""
    fenced = _FENCE.match(text or "")
    body = fenced.group("body") if fenced else (text or "")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:
        msg = (
            f"classification{who} is not valid JSON: {e}" if body.strip() else f"classification{who} is empty"
        )
        raise InvalidArgument(msg, field="classification_json") from None
    if not isinstance(data, dict):
        raise InvalidArgument(
            f"classification{who} must be a JSON object, got {_kind(data)}", field="classification_json"
        )

    violations: list[tuple[str, str]] = []
    for key in data:
        if key not in FIELDS:
            violations.append((str(key), f"unexpected property {key!r}; allowed: {', '.join(FIELDS)}"))
    for key in FIELDS:
        if key not in data:
            violations.append((key, f"{key} is required"))

    tier = ""
    if "tier" in data:
        raw = data["tier"]
        if isinstance(raw, str) and raw.strip().upper() in TIERS:
            tier = raw.strip().upper()
        else:
            violations.append(("tier", f"tier must be one of {', '.join(TIERS)}; got {_describe(raw)}"))

    score = 0
    if "score" in data:
        raw = data["score"]
        # bool is an int subclass in Python; JSON true is not a score.
        if not isinstance(raw, int) or isinstance(raw, bool):
            violations.append(
                ("score", f"score must be an integer 0..100; got {_kind(raw)} {_describe(raw)}")
            )
        elif not 0 <= raw <= 100:
            violations.append(("score", f"score must be between 0 and 100; got {raw}"))
        else:
            score = raw

    category = ""
    if "category" in data:
        raw = data["category"]
        canon = {" ".join(c.split()).casefold(): c for c in categories}
        if isinstance(raw, str) and " ".join(raw.split()).casefold() in canon:
            category = canon[" ".join(raw.split()).casefold()]
        else:
            violations.append(
                ("category", f"category must be one of {list(categories)}; got {_describe(raw)}")
            )

    rationale = ""
    if "rationale" in data:
        raw = data["rationale"]
        if not isinstance(raw, str):
            violations.append(("rationale", f"rationale must be a string; got {_kind(raw)}"))
        elif not raw.strip():
            violations.append(("rationale", "rationale must not be empty"))
        else:
            rationale = raw.strip()

    evidence: list[str] = []
    if "evidence_urls" in data:
        raw = data["evidence_urls"]
        if not isinstance(raw, list):
            violations.append(
                ("evidence_urls", f"evidence_urls must be an array of strings; got {_kind(raw)}")
            )
        else:
            known: dict[str, str] = {}
            for u in search_result_urls:
                known.setdefault(light_url_key(u), u)
            for i, item in enumerate(raw):
                name = f"evidence_urls[{i}]"
                if not isinstance(item, str):
                    violations.append((name, f"{name} must be a string; got {_kind(item)}"))
                    continue
                match = known.get(light_url_key(item))
                if match is None:
                    violations.append(
                        (name, f"{name} {_describe(item)} is not one of the search results given")
                    )
                elif match not in evidence:
                    evidence.append(match)

    if violations:
        summary = "; ".join(f"{f}: {d}" for f, d in violations)
        n = len(violations)
        raise InvalidArgument(
            f"invalid classification{who} ({n} problem{'s' if n != 1 else ''}): {summary}",
            violations=violations,
        )
    return Classification(
        tier=tier, score=score, category=category, rationale=rationale, evidence_urls=evidence
    )
