"""Research input: companies from a CSV file, CSV text or a list, streamed row by row (never read whole).

The header is the first non-blank row. It must have a ``company`` or ``name`` column (case-insensitive;
``company_name`` / ``company name`` / ``organization`` also work) and may have a ``domain`` column (or ``website``
/ ``url``); other columns are ignored. A UTF-8 byte-order mark is tolerated. Rows come out as :class:`InputRow`
in input order; a blank row or a row without a company name comes out with ``skip_reason`` set, so that it is
recorded (and reported) rather than silently dropped. Duplicates (same company, case-insensitive) are detected
where the rows are stored (``Store.add_items``) so that memory does not grow with the input.

Malformed CSV is an input error naming the line: a repeated column header, an unterminated quoted field, a stray
quote (the ``csv`` module's ``strict`` mode). Inputs from a server-side path are confined to the operator's
``VANTAGE_INPUT_DIR`` (:func:`server_input_path`); an error about such a file never quotes its content.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import anyio.to_thread
import grpc

from services.orchestrator.domain import InputRow, normalise_domain
from shared.errors import InvalidArgument, VantageError

COMPANY_HEADERS = ("company", "name", "company_name", "company name", "organization", "organisation")
DOMAIN_HEADERS = ("domain", "website", "url", "company_domain")


#: Longest input_path accepted (Linux PATH_MAX), and longest host name (RFC 1035 §2.3.4).
MAX_PATH_CHARS = 4096
MAX_DOMAIN_CHARS = 253
#: Characters of client input quoted back in an error message.
ECHO_CHARS = 200


class InputError(InvalidArgument):
    """The input cannot be read (missing file, missing header, not UTF-8 text, malformed CSV, over a limit)."""


class PermissionDenied(VantageError):
    """The request asks the server to read something it may not (a path outside ``VANTAGE_INPUT_DIR``)."""

    code = grpc.StatusCode.PERMISSION_DENIED


SEND_CONTENT_HINT = (
    "send the content instead: input_csv (RESEARCH), questions_text or org_eval.questions (ORG_EVAL), or stream a "
    "large file with UploadInput and pass its upload_id"
)


def clip(text: str, limit: int = ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters (with "…") for quoting client input in a message."""
    return text if len(text) <= limit else text[:limit] + "…"


def server_input_path(path: str, input_dir: str, *, field: str = "input_path") -> Path:
    """The file a request's ``input_path`` may name: inside ``input_dir`` (relative to it, or absolute within it)
    once every symlink is resolved. Raises :class:`PermissionDenied` when ``input_dir`` is empty (the server reads
    no client-named path) or the resolved path leaves it; :class:`InputError` for an empty, over-long
    (> :data:`MAX_PATH_CHARS`) or NUL-containing path, or a missing / non-regular file."""
    if not path.strip():
        raise InputError(f"{field} is empty", field=field)
    if len(path) > MAX_PATH_CHARS or "\x00" in path:
        raise InputError(f"{field} must be a path of at most {MAX_PATH_CHARS} characters without NUL bytes",
                         field=field)
    if not input_dir:
        raise PermissionDenied(f"{field}: this server reads no file a client names (VANTAGE_INPUT_DIR is not set); "
                               + SEND_CONTENT_HINT)
    try:
        base = Path(os.path.realpath(input_dir))
        candidate = Path(path) if os.path.isabs(path) else base / path
        resolved = Path(os.path.realpath(candidate))
    except (OSError, ValueError):
        raise InputError(f"{field}: not a usable path", field=field) from None
    if not resolved.is_relative_to(base):
        raise PermissionDenied(f"{field}: {clip(path)!r} is outside VANTAGE_INPUT_DIR; " + SEND_CONTENT_HINT)
    try:
        ok = resolved.is_file()
    except OSError:
        ok = False
    if not ok:
        raise InputError(f"{field}: {clip(path)!r}: no such file under VANTAGE_INPUT_DIR", field=field)
    return resolved


def read_server_text(path: Path, *, max_bytes: int, field: str = "input_path") -> str:
    """The UTF-8 text (BOM dropped) of a file :func:`server_input_path` allowed, at most ``max_bytes``. The opened
    file is checked again through ``/proc/self/fd`` (a path component swapped for a symlink after the check is
    refused). Errors never quote the file's content."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise InputError(f"{field}: cannot open: {e.strerror}", field=field) from None
    with os.fdopen(fd, "rb") as fh:
        link = f"/proc/self/fd/{fd}"
        if os.path.exists(link) and Path(os.readlink(link)) != path:
            raise PermissionDenied(f"{field}: the file changed while it was opened; " + SEND_CONTENT_HINT)
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputError(f"{field}: the file is larger than {max_bytes} bytes (VANTAGE_MAX_INPUT_BYTES)", field=field)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{field}: not UTF-8 text", field=field) from None


async def read_server_input(request_path: str, input_dir: str, *, max_bytes: int, field: str = "input_path"
                            ) -> tuple[Path, str]:
    """``(path, text)`` of the file a request's ``input_path`` names: :func:`server_input_path` then
    :func:`read_server_text` (same errors), in a worker thread (``anyio.to_thread``), so that a StartRun never holds
    the event loop while the filesystem answers."""

    def read() -> tuple[Path, str]:
        path = server_input_path(request_path, input_dir, field=field)
        return path, read_server_text(path, max_bytes=max_bytes, field=field)

    return await anyio.to_thread.run_sync(read)


def content_text(value: str | bytes, *, max_bytes: int, field: str) -> str:
    """Input content carried by a request (``input_csv``, ``questions_text``, an upload), at most ``max_bytes``
    of UTF-8 (BOM dropped)."""
    size = len(value) if isinstance(value, bytes) else len(value.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise InputError(f"{field}: at most {max_bytes} bytes (VANTAGE_MAX_INPUT_BYTES), got {size}", field=field)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InputError(f"{field}: not UTF-8 text", field=field) from None
    return value.lstrip("\ufeff")


class CompanyCsv:
    """Companies from CSV lines. The header is read and checked on construction (raising :class:`InputError`);
    :meth:`rows` then streams the remaining rows."""

    def __init__(self, lines: Iterable[str], source: str = "input", *, echo: bool = True, field: str = "input",
                 max_name_chars: int | None = None) -> None:
        """``echo=False`` (a server-side file): errors never quote the input. ``field`` is the request field errors
        name. ``max_name_chars``: a longer company name is an input error naming its line."""
        self.source = source
        self.echo = echo
        self.field = field
        self.max_name_chars = max_name_chars
        self._reader = csv.reader(iter(lines), strict=True)
        self.columns: list[str] = []
        start = 1
        try:
            while True:
                start = self._reader.line_num + 1
                row = next(self._reader, None)
                if row is None:
                    break
                if any(cell.strip() for cell in row):
                    self.columns = [c.strip().lstrip("\ufeff").strip().lower() for c in row]
                    break
        except (csv.Error, UnicodeDecodeError) as e:
            raise self._unreadable(e, start) from None
        if not self.columns:
            raise InputError(f"{source}: empty: expected a header row with a `company` or `name` column", field=field)
        line = self._reader.line_num
        repeated = sorted({c for c in self.columns if c and self.columns.count(c) > 1})
        if repeated:
            names = f": {clip(', '.join(repeated))}" if echo else ""
            raise InputError(f"{source}: line {line}: duplicate column header{'s' if len(repeated) > 1 else ''}"
                             f"{names}", field=field)
        self.company_col = _find(self.columns, COMPANY_HEADERS)
        if self.company_col is None:
            found = f" (found: {clip(', '.join(c for c in self.columns if c) or 'nothing')})" if echo else ""
            raise InputError(
                f"{source}: line {line}: missing header: expected a `company` or `name` column{found}", field=field
            )
        self.domain_col = _find(self.columns, DOMAIN_HEADERS)
        self.header_line = line

    @classmethod
    def from_text(cls, text: str, source: str = "input_csv", **kw: object) -> CompanyCsv:
        # newline="" semantics: a quoted field may hold line breaks (csv module docs, footnote on newline='').
        return cls(io.StringIO(text.lstrip("\ufeff"), newline=""), source, **kw)  # type: ignore[arg-type]

    def rows(self) -> Iterator[InputRow]:
        """The data rows, in order. Blank rows and rows without a company come with ``skip_reason``. Raises
        :class:`InputError` naming the line of a malformed row (unterminated quote, stray quote, over-long cell)."""
        while True:
            start = self._reader.line_num + 1
            try:
                row = next(self._reader, None)
            except (csv.Error, UnicodeDecodeError) as e:
                raise self._unreadable(e, start) from None
            if row is None:
                return
            seq = self._reader.line_num
            company = _cell(row, self.company_col)
            domain = normalise_domain(_cell(row, self.domain_col))
            if not any(cell.strip() for cell in row):
                yield InputRow(seq, "", "", "blank row")
            elif not company:
                yield InputRow(seq, "", domain, "no company name")
            else:
                name = " ".join(company.split())
                if self.max_name_chars is not None and len(name) > self.max_name_chars:
                    raise InputError(f"{self.source}: line {seq}: company name longer than {self.max_name_chars} "
                                     "characters (VANTAGE_MAX_NAME_CHARS)", field=self.field)
                if len(domain) > MAX_DOMAIN_CHARS:
                    raise InputError(f"{self.source}: line {seq}: domain longer than {MAX_DOMAIN_CHARS} characters",
                                     field=self.field)
                yield InputRow(seq, name, domain)

    def _unreadable(self, e: Exception, line: int) -> InputError:
        if isinstance(e, UnicodeDecodeError):
            return InputError(f"{self.source}: line {line}: not UTF-8 text", field=self.field)
        reason = str(e)
        if "unexpected end of data" in reason:
            reason = "unterminated quoted field (a \" opened here is never closed)"
        elif "expected after" in reason:
            reason = "stray quote: a quoted field must end at a comma or the end of the line"
        return InputError(f"{self.source}: line {line}: not valid CSV: {reason}", field=self.field)


class CsvFile(CompanyCsv):
    """A :class:`CompanyCsv` over a file (opened as UTF-8, BOM tolerated); use as a context manager to close it."""

    def __init__(self, path: str | Path, **kw: object) -> None:
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
            super().__init__(self._fh, str(p), **kw)  # type: ignore[arg-type]
        except BaseException:
            self._fh.close()
            raise

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> CsvFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rows_from_pairs(pairs: Iterable[tuple[str, str]], *, max_name_chars: int | None = None,
                    field: str = "research.companies") -> Iterator[InputRow]:
    """Rows from (company, domain) pairs (the RPC's inline companies); ``seq`` counts from 1. ``max_name_chars``:
    a longer name is an :class:`InputError` naming ``field[i].company`` (i from 0)."""
    for n, (company, domain) in enumerate(pairs, start=1):
        name = " ".join(company.split())
        if max_name_chars is not None and len(name) > max_name_chars:
            raise InputError(f"{field}[{n - 1}].company: at most {max_name_chars} characters (VANTAGE_MAX_NAME_CHARS)",
                             field=f"{field}[{n - 1}].company")
        dom = normalise_domain(domain)
        if len(dom) > MAX_DOMAIN_CHARS:
            raise InputError(f"{field}[{n - 1}].domain: at most {MAX_DOMAIN_CHARS} characters",
                             field=f"{field}[{n - 1}].domain")
        yield InputRow(n, name, dom, None if name else "no company name")


def at_most(rows: Iterable[InputRow], limit: int, *, field: str = "input") -> Iterator[InputRow]:
    """``rows`` as they come, failing with :class:`InputError` (naming ``field``) at the first row past ``limit``
    (``VANTAGE_MAX_RUN_ITEMS``) — a stream, so the input is never read whole."""
    for n, row in enumerate(rows, start=1):
        if n > limit:
            raise InputError(f"{field}: at most {limit} rows per run (VANTAGE_MAX_RUN_ITEMS)", field=field)
        yield row


def _find(columns: list[str], names: tuple[str, ...]) -> int | None:
    for name in names:
        if name in columns:
            return columns.index(name)
    return None


def _cell(row: list[str], col: int | None) -> str:
    if col is None or col >= len(row):
        return ""
    return row[col].strip()

