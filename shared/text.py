"""Small text helpers shared by services that must not import each other."""

from __future__ import annotations

from collections.abc import Iterable


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
