"""Small text helpers shared by services that must not import each other: name lists, text safe for a terminal
(:func:`printable`), CSV cells safe for a spreadsheet (:func:`csv_safe`) and the rule for idempotency keys
(:func:`idempotency_key_ok`)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

#: Idempotency keys travel as an HTTP header (``Idempotency-Key``): visible ASCII only (RFC 9110 §5.5 field-vchar).
MAX_IDEMPOTENCY_KEY_CHARS = 255
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]+")


def idempotency_key_ok(key: str) -> bool:
    """True for "" (no key) and for a key of at most :data:`MAX_IDEMPOTENCY_KEY_CHARS` visible ASCII characters."""
    return not key or (len(key) <= MAX_IDEMPOTENCY_KEY_CHARS and _IDEMPOTENCY_KEY.fullmatch(key) is not None)


def merge_variations(*lists: Iterable[str]) -> list[str]:
    """Concatenate name lists, whitespace collapsed, keeping the first occurrence of each exact spelling and
    dropping empty ones: ``merge_variations(["A", "B"], ["B", " C ", ""]) == ["A", "B", "C"]``."""
    seen: set[str] = set()
    out = []
    for lst in lists:
        for v in lst:
            v = " ".join(str(v).split())
            if v and v not in seen:
                seen.add(v)
                out.append(v)
    return out


#: Terminal escape sequences (ECMA-48: CSI, terminated OSC and DCS/SOS/PM/APC strings, two-character escapes; of
#: an unterminated string only its introducer goes, so that it cannot swallow the text after it).
_ESCAPES = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]?|\][^\x07\x1b]*(?:\x07|\x1b\\)|[PX^_][^\x1b]*\x1b\\|[ -/]*[0-~]?)"
)
#: C0 controls but tab and newline, DEL, C1 controls (0x9b is an 8-bit CSI), and the Unicode bidirectional overrides
#: and isolates that reorder what a terminal shows ("Trojan Source", CVE-2021-42574).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: escape sequences and control characters removed (tab and newline
    kept). ``"\x1b]52;c;…\x07Acme\x1b[2J"`` → ``"Acme"``."""
    if text.isprintable():
        return text
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


#: First characters that make a spreadsheet read a cell as a formula (OWASP, "CSV Injection":
#: https://owasp.org/www-community/attacks/CSV_Injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """A CSV cell that no spreadsheet evaluates: a string beginning with ``=``, ``+``, ``-``, ``@``, tab or carriage
    return gets a leading single quote (OWASP's recommendation), so ``=HYPERLINK(…)`` is exported as
    ``'=HYPERLINK(…)``. Numbers and other values are left as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_safe_row(row: dict[str, Any] | Iterable[Any]) -> Any:
    """:func:`csv_safe` over a ``csv.DictWriter`` row (dict) or a ``csv.writer`` row (sequence)."""
    if isinstance(row, dict):
        return {k: csv_safe(v) for k, v in row.items()}
    return [csv_safe(v) for v in row]
