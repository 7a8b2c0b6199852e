"""Deterministic answers to packed-enrichment prompts (what ``services.inference.packing`` sends).

A packed prompt carries several small items in one request; a model answers one result per item. This module
stands in for that model so that packing, validation, retries and the fallback can be tested offline.

Recognised requests (a JSON-schema response format plus a marked block in the user text; anything else is left to
the analyst):

- **a pack** — the user text holds ``<items>[{"id": "…", "input": …}, …]</items>`` and the schema's root is an
  object whose ``items`` property is an array of objects with an ``id`` property. Answer:
  ``{"items": [{"id": <echoed>, …fields}, …]}``, one element per input item, in input order.
- **one item** — the user text holds ``<item>{"id": "…", "input": …}</item>``. Answer: an instance of the schema's
  root object (no id).

Fields are filled from the item's input, deterministically, by the schema: ``const``; ``enum`` (an option the input
mentions, else one picked by a hash of the input); strings (a canonical name for ``canonical``-like keys, the item's
name for ``name``-like keys, a domain for ``domain``/``website``, else a short phrase naming the key and the item);
integers/numbers (a hash in ``minimum``..``maximum``, default 0..100); booleans (a hash bit); arrays (name variations
for ``variation``/``alias``/``variant``/``names`` keys, else 1–3 filled elements, within ``minItems``/``maxItems``);
objects (every property). Same input → same answer, in any process.

Faults, for packs only (single-item requests are never corrupted, so a fallback can succeed): the
``X-Sandbox-Fault`` header (``pack_wrong_count`` | ``pack_missing_id`` | ``pack_duplicate_id`` | ``pack_not_array``)
corrupts every pack of that request; the knobs ``pack_fault`` + ``pack_fault_times`` corrupt the next
``pack_fault_times`` packs the sandbox answers (the counter goes down by one per corrupted pack).

- ``pack_wrong_count``: the last element is dropped (an element is added to an empty pack);
- ``pack_missing_id``: the first element's id is replaced by an id that was not asked for;
- ``pack_duplicate_id``: the second element repeats the first one's id (a lone element is duplicated);
- ``pack_not_array``: ``items`` is an object keyed by id instead of an array.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .common import stable_hash
from .state import SandboxState

PACK_FAULTS = ("pack_wrong_count", "pack_missing_id", "pack_duplicate_id", "pack_not_array")

_ITEMS_RE = re.compile(r"<items>\s*(.*?)\s*</items>", re.DOTALL)
_ITEM_RE = re.compile(r"<item>\s*(.*?)\s*</item>", re.DOTALL)

#: Trailing words that do not tell two organisations apart ("Lambda Labs", "Lambda Cloud" → "Lambda").
_GENERIC_SUFFIXES = frozenset(
    {
        "labs", "lab", "cloud", "inc", "inc.", "llc", "ltd", "ltd.", "corp", "corp.", "corporation", "company",
        "co", "co.", "ai", "technologies", "technology", "systems", "group", "gmbh", "sa", "pbc", "holdings",
        "platform", "platforms", "hq", "computing", "compute", "software", "limited", ",",
    }
)
_NAME_KEYS = ("name", "org", "organization", "organisation", "company", "competitor", "brand", "title")


def answer(
    state: SandboxState,
    user_text: str,
    schema: Any,
    fault: str | None = None,
    endpoint: str = "openai.chat_completions",
) -> dict[str, Any] | None:
    """The structured answer to a packed (or single-item) enrichment prompt, or None when ``user_text`` /
    ``schema`` are not one (the caller then answers as usual). ``fault``: the request's ``X-Sandbox-Fault``;
    ``endpoint``: where an injected pack fault is counted in the stats."""
    if not isinstance(schema, dict):
        return None
    element = _pack_element_schema(schema)
    if element is not None:
        block = _last_json(_ITEMS_RE, user_text)
        if isinstance(block, list):
            out = [_element(entry, element, schema) for entry in block if isinstance(entry, dict)]
            return {"items": _corrupt(state, out, fault, endpoint)}
    entry = _last_json(_ITEM_RE, user_text)
    if isinstance(entry, dict):
        root = _resolve(schema, schema)
        value = fill(root, "", entry.get("input"), schema)
        return value if isinstance(value, dict) else {"value": value}
    return None


def _pack_element_schema(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The element schema of a pack's ``items`` array, or None when ``schema`` is not a pack's."""
    root = _resolve(schema, schema)
    items = _resolve((root.get("properties") or {}).get("items"), schema)
    if "array" not in _types(items):
        return None
    element = _resolve(items.get("items"), schema)
    if "id" not in (element.get("properties") or {}):
        return None
    return element


def _last_json(pattern: re.Pattern[str], text: str) -> Any:
    """The last block matched by ``pattern`` in ``text``, parsed as JSON (None when absent or not JSON)."""
    blocks = pattern.findall(text or "")
    if not blocks:
        return None
    try:
        return json.loads(blocks[-1])
    except ValueError:
        return None


def _element(entry: dict[str, Any], element: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    props = element.get("properties") or {}
    out: dict[str, Any] = {}
    for key, sub in props.items():
        out[key] = entry.get("id") if key == "id" else fill(_resolve(sub, root), key, entry.get("input"), root)
    return out


def _corrupt(state: SandboxState, elements: list[dict[str, Any]], fault: str | None, endpoint: str) -> Any:
    kind = fault.lower() if fault and fault.lower() in PACK_FAULTS else None
    if kind is None and state.knobs.pack_fault and state.knobs.pack_fault_times > 0:
        kind = state.knobs.pack_fault
        state.knobs.pack_fault_times -= 1  # "the next N packs": a counter visible in GET /_sandbox/config
    if kind is None:
        return elements
    state.stats.fault(endpoint, kind)
    out = [dict(e) for e in elements]
    if kind == "pack_wrong_count":
        return out[:-1] if out else [{"id": "extra"}]
    if kind == "pack_missing_id":
        if out:
            out[0]["id"] = f"not-asked-{out[0].get('id')}"
        return out
    if kind == "pack_duplicate_id":
        if len(out) >= 2:
            out[1]["id"] = out[0].get("id")
        elif out:
            out.append(dict(out[0]))
        return out
    return {str(e.get("id")): e for e in out}  # pack_not_array


# --- filling a schema from an item's input ----------------------------------------------------------------------


def fill(schema: dict[str, Any], key: str, data: Any, root: dict[str, Any]) -> Any:
    """A value for property ``key`` that matches ``schema``, derived from the item input ``data``."""
    schema = _resolve(schema, root)
    seed = stable_hash(key, _canonical(data))
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return _pick_enum(schema["enum"], data, seed)
    kind = _types(schema)[0]
    if kind == "object":
        return {k: fill(_resolve(s, root), k, data, root) for k, s in (schema.get("properties") or {}).items()}
    if kind == "array":
        return _array(schema, key, data, root, seed)
    if kind == "boolean":
        return bool(seed & 1)
    if kind in ("integer", "number"):
        return _number(schema, seed, integer=kind == "integer")
    if kind == "null":
        return None
    return _string(schema, key, data)


def _array(schema: dict[str, Any], key: str, data: Any, root: dict[str, Any], seed: int) -> list[Any]:
    lo = int(schema.get("minItems", 0) or 0)
    hi = schema.get("maxItems")
    items = _resolve(schema.get("items") or {"type": "string"}, root)
    k = key.lower()
    if _types(items)[0] == "string" and not items.get("enum") and any(
        w in k for w in ("variation", "alias", "variant", "names", "synonym", "spelling")
    ):
        values: list[Any] = name_variations(primary_name(data))
    else:
        singular = key[:-1] if key.endswith("s") else key
        count = 1 + seed % 3
        values = [fill(items, f"{singular}{i + 1}", data, root) for i in range(count)]
    if hi is not None:
        values = values[: int(hi)]
    while len(values) < lo:
        values.append(fill(items, f"{key}{len(values) + 1}", data, root))
    return values


def _number(schema: dict[str, Any], seed: int, *, integer: bool) -> int | float:
    lo = schema.get("minimum", schema.get("exclusiveMinimum", 0))
    hi = schema.get("maximum", schema.get("exclusiveMaximum", max(100, lo)))
    if integer:
        lo_i, hi_i = int(lo) + ("exclusiveMinimum" in schema), int(hi) - ("exclusiveMaximum" in schema)
        return lo_i + seed % max(1, hi_i - lo_i + 1)
    return round(lo + (hi - lo) * (seed % 10_000) / 10_000, 4)


def _string(schema: dict[str, Any], key: str, data: Any) -> str:
    k = key.lower()
    name = primary_name(data)
    if any(w in k for w in ("canonical", "normalized", "normalised", "merged", "parent", "group")):
        value = canonical_name(name)
    elif any(w in k for w in _NAME_KEYS):
        value = name
    elif "domain" in k or "website" in k or k.endswith("url"):
        slug = re.sub(r"[^a-z0-9]", "", canonical_name(name).lower()) or "example"
        value = f"https://{slug}.com" if "url" in k else f"{slug}.com"
    else:
        value = f"{key.replace('_', ' ') or 'value'} of {name}"
    min_len = int(schema.get("minLength", 0) or 0)
    if len(value) < min_len:
        value = value + "." * (min_len - len(value))
    if "maxLength" in schema:
        value = value[: int(schema["maxLength"])]
    return value


def _pick_enum(options: list[Any], data: Any, seed: int) -> Any:
    """An option the input mentions (as a whole word), else one picked by ``seed``."""
    text = _canonical(data).lower()
    for o in options:
        if isinstance(o, str) and o and re.search(rf"\b{re.escape(o.lower())}\b", text):
            return o
    return options[seed % len(options)]


def primary_name(data: Any) -> str:
    """The name an item is about: its ``name``-like field, else its first string value, else its JSON."""
    if isinstance(data, str):
        return data.strip() or "item"
    if isinstance(data, dict):
        for k in _NAME_KEYS:
            for key, v in data.items():
                if key.lower() == k and isinstance(v, str) and v.strip():
                    return v.strip()
        for v in data.values():
            if isinstance(v, str) and v.strip():
                return v.strip()
    return _canonical(data)[:60] or "item"


def canonical_name(name: str) -> str:
    """``name`` without trailing generic words: "Lambda Labs" / "Lambda Cloud" → "Lambda", "Mistral AI" → "Mistral"."""
    words = name.replace(",", " ").split()
    while len(words) > 1 and words[-1].lower() in _GENERIC_SUFFIXES:
        words.pop()
    return " ".join(words) or name


def name_variations(name: str) -> list[str]:
    """Ways a text may write organisation ``name``: itself, its canonical form, "<canonical> Inc", its initials (three
    words or more) and its squashed lower-case form — each once, in that order."""
    canon = canonical_name(name)
    words = name.split()
    out = [name, canon, f"{canon} Inc"]
    if len(words) >= 3:  # "Amazon Web Services" → "AWS"; two-word initials are rarely a name
        out.append("".join(w[0].upper() for w in words if w[:1].isalnum()))
    out.append(re.sub(r"[^a-z0-9]", "", name.lower()))
    unique: dict[str, str] = {}
    for v in out:
        if v:
            unique.setdefault(v.lower(), v)
    return list(unique.values())


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _resolve(schema: Any, root: dict[str, Any]) -> dict[str, Any]:
    """Follow local ``$ref``s and take the first non-null branch of ``anyOf``/``oneOf``."""
    for _ in range(20):
        if not isinstance(schema, dict):
            return {}
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            node: Any = root
            for part in ref[2:].split("/"):
                node = node.get(part, {}) if isinstance(node, dict) else {}
            schema = node
            continue
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list):
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
    if isinstance(t, str):
        return [t]
    if "properties" in schema:
        return ["object"]
    if "items" in schema:
        return ["array"]
    return ["string"]
