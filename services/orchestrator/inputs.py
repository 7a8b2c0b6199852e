"""Research input: companies from a CSV file, CSV text or a list, streamed row by row (never read whole).

The header is the first non-blank row. It must have a ``company`` or ``name`` column (case-insensitive;
``company_name`` / ``company name`` / ``organization`` also work) and may have a ``domain`` column (or ``website``
/ ``url``); other columns are ignored. A UTF-8 byte-order mark is tolerated. Rows come out as :class:`InputRow`
in input order; a blank row or a row without a company name comes out with ``skip_reason`` set, so that it is
recorded (and reported) rather than silently dropped. Duplicates (same company, case-insensitive) are detected
where the rows are stored (``Store.add_items``) so that memory does not grow with the input.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from shared.errors import InvalidArgument

COMPANY_HEADERS = ("company", "name", "company_name", "company name", "organization", "organisation")
DOMAIN_HEADERS = ("domain", "website", "url", "company_domain")


class InputError(InvalidArgument):
    """The input cannot be read (missing file, missing header, not UTF-8 text)."""


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


class CompanyCsv:
    """Companies from CSV lines. The header is read and checked on construction (raising :class:`InputError`);
    :meth:`rows` then streams the remaining rows."""

    def __init__(self, lines: Iterable[str], source: str = "input") -> None:
        self.source = source
        self._reader = csv.reader(iter(lines))
        self.columns: list[str] = []
        try:
            for row in self._reader:
                if any(cell.strip() for cell in row):
                    self.columns = [c.strip().lstrip("\ufeff").strip().lower() for c in row]
                    break
        except (csv.Error, UnicodeDecodeError) as e:
            raise _unreadable(source, e) from None
        if not self.columns:
            raise InputError(f"{source}: empty: expected a header row with a `company` or `name` column", field="input")
        self.company_col = _find(self.columns, COMPANY_HEADERS)
        if self.company_col is None:
            found = ", ".join(c for c in self.columns if c) or "nothing"
            raise InputError(
                f"{source}: missing header: expected a `company` or `name` column (found: {found})", field="input"
            )
        self.domain_col = _find(self.columns, DOMAIN_HEADERS)
        self.header_line = self._reader.line_num

    @classmethod
    def from_text(cls, text: str, source: str = "input_csv") -> CompanyCsv:
        return cls(io.StringIO(text.lstrip("\ufeff")), source)

    def rows(self) -> Iterator[InputRow]:
        """The data rows, in order. Blank rows and rows without a company come with ``skip_reason``."""
        try:
            for row in self._reader:
                seq = self._reader.line_num
                company = _cell(row, self.company_col)
                domain = normalise_domain(_cell(row, self.domain_col))
                if not any(cell.strip() for cell in row):
                    yield InputRow(seq, "", "", "blank row")
                elif not company:
                    yield InputRow(seq, "", domain, "no company name")
                else:
                    yield InputRow(seq, " ".join(company.split()), domain)
        except (csv.Error, UnicodeDecodeError) as e:
            raise _unreadable(self.source, e, self._reader.line_num) from None


class CsvFile(CompanyCsv):
    """A :class:`CompanyCsv` over a file (opened as UTF-8, BOM tolerated); use as a context manager to close it."""

    def __init__(self, path: str | Path) -> None:
        p = Path(path)
        if not p.exists():
            raise InputError(f"{p}: no such file", field="input_path")
        if not p.is_file():
            raise InputError(f"{p}: not a file", field="input_path")
        try:
            self._fh: IO[str] = open(p, encoding="utf-8-sig", newline="")
        except OSError as e:
            raise InputError(f"{p}: cannot open: {e.strerror}", field="input_path") from None
        try:
            super().__init__(self._fh, str(p))
        except BaseException:
            self._fh.close()
            raise

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> CsvFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rows_from_pairs(pairs: Iterable[tuple[str, str]]) -> Iterator[InputRow]:
    """Rows from (company, domain) pairs (the RPC's inline companies); ``seq`` counts from 1."""
    for n, (company, domain) in enumerate(pairs, start=1):
        name = " ".join(company.split())
        yield InputRow(n, name, normalise_domain(domain), None if name else "no company name")


def _find(columns: list[str], names: tuple[str, ...]) -> int | None:
    for name in names:
        if name in columns:
            return columns.index(name)
    return None


def _cell(row: list[str], col: int | None) -> str:
    if col is None or col >= len(row):
        return ""
    return row[col].strip()


def _unreadable(source: str, e: Exception, line: int | None = None) -> InputError:
    where = f" (line {line})" if line else ""
    if isinstance(e, UnicodeDecodeError):
        return InputError(f"{source}: not UTF-8 text{where}", field="input")
    return InputError(f"{source}: not valid CSV{where}: {e}", field="input")
