"""The orchestrator's domain values, below every layer (the store ingests them, the jobs and reports use them): an
input row of a research run and the identity keys of companies and domains. Pure: no I/O, no gRPC, no database."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["InputRow", "company_key", "normalise_domain"]


@dataclass(frozen=True)
class InputRow:
    """One input row. ``seq`` is its position (the CSV line number; the header is line 1)."""

    seq: int
    company: str
    domain: str = ""
    skip_reason: str | None = None

    @property
    def key(self) -> str:
        return company_key(self.company)


def company_key(company: str) -> str:
    """Identity of a company within a run: whitespace collapsed, case-folded (``"Together  AI"`` → ``"together
    ai"``)."""
    return " ".join(company.split()).casefold()


def normalise_domain(value: str) -> str:
    """A bare lower-case host name: ``"https://www.Together.ai/about?x=1"`` → ``"together.ai"``; ``""`` stays
    ``""``."""
    v = value.strip().lower()
    if "://" in v:
        v = v.split("://", 1)[1]
    v = v.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    v = v.rsplit("@", 1)[-1].split(":", 1)[0].rstrip(".")
    return v.removeprefix("www.")
