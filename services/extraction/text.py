"""Markdown helpers shared by org evaluation, competitor discovery and citation extraction (pure).

:func:`parse` turns an assistant's Markdown answer into a :class:`Doc`: the original text, a *masked* copy of the
same length in which URLs and fenced code are blanked (so a name inside ``https://lambda.ai/…`` or a code sample
is never counted as a mention, while every offset stays valid; citation chips such as ``([together.ai](…))``
and link reference definitions ``[1]: url "Title"`` are blanked too, being citations rather than prose), a word
index over the masked text, and a flat list of :class:`Unit` — headings,
list items (with their continuation lines), table rows and prose sentences — in document order, each with its
character span and its *sibling group* (all ``###`` headings; the items of one list at one nesting level; the rows
of one table), which competitor discovery uses to tell a list of brands from a list of feature labels.

Offsets are Python string indices (Unicode code points) into the answer as received.

This is a line-based reading of CommonMark/GFM that covers what assistants actually emit (ATX headings, ``-``/
``*``/``+``/``1.``/``1)`` lists with nesting, GFM pipe tables, fenced code, block quotes, inline links, bold),
not a full CommonMark parser: setext headings, HTML blocks and link reference *uses* are read as prose.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import accumulate
from typing import NamedTuple

from services.extraction.urls import looks_like_domain, registrable_domain, strip_trailing_punctuation

HEADING_RE = re.compile(r"^ {0,3}(#{1,6})[ \t]+(\S.*)$")
LIST_RE = re.compile(r"^([ \t]*)([-*+•]|\d{1,3}[.)])[ \t]+(?=\S)")
TABLE_SEP_RE = re.compile(r"^[ \t]*\|?[ \t]*:?-{2,}:?[ \t]*(?:\|[ \t]*:?-{2,}:?[ \t]*)*\|?[ \t]*$")
FENCE_RE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})")
QUOTE_RE = re.compile(r"^[ \t]{0,3}(?:>[ \t]?)+")
RULE_RE = re.compile(r"^[ \t]{0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$")

#: An inline link ``[text](url "title")`` (not an image). One level of brackets in the text and of parentheses in
#: the URL (``…/wiki/Lambda_(company)``) is allowed; alternatives are disjoint, so matching stays linear.
LINK_RE = re.compile(
    r"(?<!!)\[(?P<text>(?:[^\[\]\n]|\[[^\[\]\n]*\])*)\]"
    r"\([ \t]*<?(?P<url>[^()\s<>]+(?:\([^()\s<>]*\)[^()\s<>]*)*)>?"
    r"(?:[ \t]+(?:\"[^\"\n]*\"|'[^'\n]*'|\([^()\n]*\)))?[ \t]*\)"
)
IMAGE_RE = re.compile(r"!\[(?P<text>[^\[\]\n]*)\]\([^()\n]*(?:\([^()\n]*\)[^()\n]*)*\)")
#: ``[1]: https://… "Title"`` — a link reference definition (how Perplexity-style answers list their sources).
REFDEF_RE = re.compile(
    r"^[ \t]{0,3}\[(?P<label>[^\[\]\n]+)\]:[ \t]*<?(?P<url>\S+?)>?(?:[ \t]+[\"'(](?P<title>[^\n]*?)[\"')])?[ \t]*$",
    re.MULTILINE,
)
AUTOLINK_RE = re.compile(r"<(?P<url>https?://[^<>\s]+)>", re.IGNORECASE)
#: A bare URL: an http(s) scheme or ``www.``; trailing sentence punctuation is trimmed afterwards.
BARE_URL_RE = re.compile(r"(?<![\w@/.])(?:https?://|www\.)[^\s<>\"'`\[\]{}|\\^]+", re.IGNORECASE)
# Bounded spans (a name or a label is short; unbounded lazy scans are quadratic on "**a **a **a …").
BOLD_RE = re.compile(r"\*\*(?=[^\s*])(?P<a>[^\n]{0,300}?[^\s*])\*\*|__(?=[^\s_])(?P<b>[^\n]{0,300}?[^\s_])__")
_EMPH_RE = re.compile(r"(\*{1,3}|_{1,3})(?=\S)(.{1,300}?)(?<=\S)\1")
_CODE_RE = re.compile(r"`+([^`\n]*)`+")
_TAG_RE = re.compile(r"</?[A-Za-z][^<>\n]{0,200}>")
_CITE_MARK_RE = re.compile(r"[ \t]*\[\d{1,3}(?:[,\s]+\d{1,3})*\]")
_WS_RE = re.compile(r"\s+")

#: Words after which a period does not end a sentence (lower case, without the period).
ABBREVIATIONS: frozenset[str] = frozenset(
    "e.g i.e vs etc inc ltd co corp dr mr mrs ms st approx incl no jr sr u.s u.k fig est mt dept al cf ca".split()
)
_TITLE_WORD_RE = re.compile(r"[^\W\d_][\w'’-]*")
_LAST_WORD_RE = re.compile(r"([\w.]+)$")
_CLOSING_HASHES_RE = re.compile(r"(?:[ \t]+#+)?[ \t]*$")
_NOT_NEWLINE_RE = re.compile(r"[^\r\n]")
_SENT_END_RE = re.compile(r"[.!?]+[\"')\]*_]*(?=\s+[\"'(\[*_]*[A-Z0-9])")


@dataclass(frozen=True)
class Unit:
    """One heading, list item, table row or prose sentence of the answer.

    ``start``/``end``: span in the answer (end exclusive); ``body``: where the content starts (after ``### ``,
    ``1. ``, a quote marker …). ``level``: heading level 1–6, or list nesting depth (0 = top level), else 0.
    ``group``: sibling-group id (``"h3"``, ``"list2.1"``, ``"table1"``, ``"p"``). ``cells``: a table row's cell
    content spans. ``parent``: index of the enclosing list item for a nested item, else -1. ``section``: index of
    the nearest heading above, else -1.
    """

    kind: str  # "heading" | "item" | "row" | "sentence"
    start: int
    end: int
    body: int
    level: int = 0
    group: str = "p"
    index: int = 0
    cells: tuple[tuple[int, int], ...] = ()
    header: bool = False
    parent: int = -1
    section: int = -1


@dataclass(frozen=True)
class Link:
    """An inline link: ``span`` of the whole ``[text](url)``, ``text_span`` of its text, the raw ``url``."""

    span: tuple[int, int]
    text_span: tuple[int, int]
    text: str
    url: str


#: A word: letters/digits, joined by ``. & ' ’ + -`` inside ("together.ai", "AT&T", "fine-tune", "AI's").
TOKEN_RE = re.compile(r"[^\W_]+(?:[.&'’+-][^\W_]+)*")
_TOKEN_SPLIT_RE = re.compile(f"({TOKEN_RE.pattern})")
#: The same on ASCII text ([^\W_] is [A-Za-z0-9] there), which re scans faster than the Unicode class.
_TOKEN_SPLIT_ASCII_RE = re.compile(r"([A-Za-z0-9]+(?:[.&'+-][A-Za-z0-9]+)*)")


class Token(NamedTuple):
    """A word of the masked answer: ``[start, end)`` and its text (a trailing possessive ``'s`` removed)."""

    start: int
    end: int
    text: str


def words_of(name: str) -> list[str]:
    """The tokens of a name, as :attr:`Doc.tokens` would cut it."""
    return list(_words_of(name))


@lru_cache(maxsize=65_536)
def _words_of(name: str) -> tuple[str, ...]:
    out = []
    for m in TOKEN_RE.finditer(name):
        w = m.group(0)
        out.append(w[:-2] if w[-2:] in ("'s", "’s") and len(w) > 2 else w)
    return tuple(out)


@dataclass
class Doc:
    """A parsed answer. ``masked`` has the same length as ``text``; see the module docstring."""

    text: str
    masked: str
    units: list[Unit]
    links: list[Link]
    bold: list[tuple[int, int]]
    _starts: list[int] = field(default_factory=list, repr=False)
    _link_starts: list[int] = field(default_factory=list, repr=False)
    _title_case: dict[int, bool] = field(default_factory=dict, repr=False)
    _tokens: list[Token] | None = field(default=None, repr=False)
    _by_word: dict[str, list[int]] = field(default_factory=dict, repr=False)
    # (starts, ends, words, casefolded words) of the tokens, built on first use.
    _tok: tuple[list[int], list[int], list[str], list[str]] | None = field(default=None, repr=False)
    _leads: dict[int, tuple[int, int] | None] = field(default_factory=dict, repr=False)
    _url_matches: UrlMatches | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._starts = [u.start for u in self.units]
        self._link_starts = [link.text_span[0] for link in self.links]

    @property
    def url_matches(self) -> UrlMatches:
        """The URL-ish matches of :attr:`text` (see :class:`UrlMatches`)."""
        if self._url_matches is None:
            self._url_matches = UrlMatches.scan(self.text)
        return self._url_matches

    def unit_at(self, offset: int) -> Unit | None:
        """The unit whose span contains ``offset`` (None in blank lines, code, rules). Units never overlap."""
        i = bisect.bisect_right(self._starts, offset) - 1
        if i >= 0 and offset < self.units[i].end:
            return self.units[i]
        return None

    def is_title_case(self, unit: Unit) -> bool:
        """True when most longer words of the unit are capitalised (``## Putting It All Together``): there a
        capital letter says nothing about a word being a name."""
        cached = self._title_case.get(unit.index)
        if cached is None:
            words = [
                w for w in _TITLE_WORD_RE.findall(self.masked[unit.body : unit.end]) if len(w) >= 4
            ]
            caps = sum(1 for w in words if w[0].isupper())
            cached = len(words) >= 3 and caps / len(words) >= 0.7
            self._title_case[unit.index] = cached
        return cached

    def in_bold(self, start: int, end: int) -> tuple[int, int] | None:
        """The bold content span that contains ``[start, end)``, if any (bold spans never nest)."""
        i = bisect.bisect_right(self.bold, (start, len(self.text) + 1)) - 1
        if i >= 0 and self.bold[i][0] <= start and end <= self.bold[i][1]:
            return self.bold[i]
        return None

    def in_link_text(self, start: int, end: int) -> Link | None:
        """The inline link whose text contains ``[start, end)``, if any."""
        i = bisect.bisect_right(self._link_starts, start) - 1
        if i >= 0:
            s, e = self.links[i].text_span
            if s <= start and end <= e:
                return self.links[i]
        return None

    def _index_tokens(self) -> None:
        # Parallel lists built with C-level calls (findall/map) rather than a Python loop over match objects:
        # this runs on every answer.
        masked = self.masked
        # split() with one group gives [gap, token, gap, token, …, gap]; running lengths give the offsets.
        parts = (_TOKEN_SPLIT_ASCII_RE if masked.isascii() else _TOKEN_SPLIT_RE).split(masked)
        bounds = list(accumulate(map(len, parts)))
        words, starts, ends = parts[1::2], bounds[0:-1:2], bounds[1::2]
        if "'s" in masked or "’s" in masked:
            for i, w in enumerate(words):
                if w[-2:] in ("'s", "’s") and len(w) > 2:  # possessive: "CoreWeave's" is "CoreWeave"
                    words[i], ends[i] = w[:-2], ends[i] - 2
        folded = list(map(str.casefold, words))
        by_word = self._by_word
        for i, k in enumerate(folded):
            hit = by_word.get(k)
            if hit is None:
                by_word[k] = [i]
            else:
                hit.append(i)
        self._tok = (starts, ends, words, folded)

    @property
    def tokens(self) -> list[Token]:
        """Word tokens of :attr:`masked` in order (built once)."""
        if self._tokens is None:
            if self._tok is None:
                self._index_tokens()
            self._tokens = [Token(*t) for t in zip(*self._tok[:3], strict=True)]  # type: ignore[misc]
        return self._tokens

    def find_phrase(self, words: Sequence[str], *, case_sensitive: bool = False) -> Iterator[tuple[int, int]]:
        """Spans where the token sequence ``words`` occurs (tokens separated by whitespace only), in order.
        A token preceded by ``@``, ``/`` or ``#`` (handles, paths, hashtags) never starts a match."""
        if not words:
            return
        if self._tok is None:
            self._index_tokens()
        starts, ends, tok_words, tok_folded = self._tok  # type: ignore[misc]
        n = len(words)
        folded = [w.casefold() for w in words]
        have, want = (tok_words, words) if case_sensitive else (tok_folded, folded)
        masked = self.masked
        total = len(starts)
        for i in self._by_word.get(folded[0], ()):
            if i + n > total:
                continue
            s0 = starts[i]
            if s0 > 0 and masked[s0 - 1] in "@/#":
                continue
            ok = True
            for j in range(n):
                if have[i + j] != want[j]:
                    ok = False
                    break
                if j and not masked[ends[i + j - 1] : starts[i + j]].isspace():
                    ok = False
                    break
            if ok:
                yield s0, ends[i + n - 1]


@lru_cache(maxsize=4096)  # pure; the same fragments are cleaned several times per answer
def plain(markdown: str) -> str:
    """Readable text of a Markdown fragment: links → their text, emphasis/code/HTML markers and citation markers
    like ``[1]`` removed, whitespace collapsed."""
    text = IMAGE_RE.sub(lambda m: m.group("text"), markdown)
    text = LINK_RE.sub(lambda m: m.group("text"), text)
    text = _CODE_RE.sub(lambda m: m.group(1), text)
    for _ in range(3):  # nested emphasis (***x***, **_x_**)
        new = _EMPH_RE.sub(lambda m: m.group(2), text)
        if new == text:
            break
        text = new
    text = _TAG_RE.sub(" ", text)
    text = _CITE_MARK_RE.sub("", text)
    return _WS_RE.sub(" ", text).strip()


def _blank(chars: list[str], text: str, start: int, end: int) -> None:
    """Blank ``chars[start:end]`` (the list form of ``text``) except line breaks."""
    seg = text[start:end]  # line breaks are never blanked, so the original text tells where they are
    if "\n" in seg or "\r" in seg:
        chars[start:end] = _NOT_NEWLINE_RE.sub(" ", seg)
    else:
        chars[start:end] = " " * (end - start)


@dataclass(frozen=True)
class UrlMatches:
    """Every match of :data:`IMAGE_RE`, :data:`REFDEF_RE`, :data:`AUTOLINK_RE` and :data:`BARE_URL_RE` in a text,
    in order: found once by :func:`parse` (for masking) and reused for citations."""

    images: list[re.Match[str]]
    refdefs: list[re.Match[str]]
    autolinks: list[re.Match[str]]
    bare: list[re.Match[str]]

    @classmethod
    def scan(cls, text: str) -> UrlMatches:
        # Each pattern needs a literal that a substring test (far cheaper than a regex scan) can rule out.
        low = text.lower()
        return cls(
            list(IMAGE_RE.finditer(text)) if "![" in text else [],
            list(REFDEF_RE.finditer(text)) if "]:" in text else [],
            list(AUTOLINK_RE.finditer(text)) if "<" in text else [],
            list(BARE_URL_RE.finditer(text)) if "http" in low or "www." in low else [],
        )


def url_spans(
    text: str, found: UrlMatches | None = None
) -> tuple[list[Link], list[tuple[int, int]]]:
    """Inline links (in order) and the spans of every URL in ``text`` (link destinations, autolinks, reference
    definitions, bare URLs) — the latter to be masked. ``found``: ``UrlMatches.scan(text)`` if already done."""
    found = found or UrlMatches.scan(text)
    links = [
        Link(span=m.span(), text_span=m.span("text"), text=m.group("text"), url=m.group("url"))
        for m in (LINK_RE.finditer(text) if "](" in text else ())
    ]
    spans: list[tuple[int, int]] = []
    for link in links:
        spans.append((link.text_span[1], link.span[1]))  # "](url)"
    spans.extend(m.span() for m in found.images)
    spans.extend(m.span() for m in found.refdefs)  # "[1]: url "title"" is citation metadata
    spans.extend(m.span() for m in found.autolinks)
    for m in found.bare:
        if any(s <= m.start() < e for s, e in (link.span for link in links)):
            continue
        # Only the URL itself: "(see https://x.io/a)." keeps its ")." so parentheses stay balanced.
        spans.append((m.start(), m.start() + len(strip_trailing_punctuation(m.group(0)))))
    return links, spans


def is_citation_chip(link: Link) -> bool:
    """A link whose text is its own URL or its lower-case domain — ``([together.ai](https://www.together.ai/x))``
    as ChatGPT writes citations — is a citation, not a mention: its text is masked like a URL. A capitalised
    domain-like name ("[Character.ai](https://character.ai)") stays a name."""
    return _is_chip(link.text, link.url)


@lru_cache(maxsize=65_536)
def _is_chip(text: str, url: str) -> bool:
    label = plain(text).strip("()[] ")
    if not label or " " in label:
        return False
    if label.lower().startswith(("http://", "https://", "www.")):
        return True
    return (
        label.islower()
        and looks_like_domain(label)
        and registrable_domain(label) == registrable_domain(url)
    )


def _split_cells(line: str, offset: int) -> tuple[tuple[int, int], ...]:
    """Content spans of a pipe-table row (outer pipes optional, ``\\|`` escapes a pipe)."""
    cells: list[tuple[int, int]] = []
    start = 0
    i = 0
    bounds: list[tuple[int, int]] = []
    while i < len(line):
        if line[i] == "\\":
            i += 2
            continue
        if line[i] == "|":
            bounds.append((start, i))
            start = i + 1
        i += 1
    bounds.append((start, len(line)))
    if bounds and not line[bounds[0][0] : bounds[0][1]].strip() and line.lstrip().startswith("|"):
        bounds = bounds[1:]
    if bounds and not line[bounds[-1][0] : bounds[-1][1]].strip():
        bounds = bounds[:-1]
    for s, e in bounds:
        seg = line[s:e]
        lead = len(seg) - len(seg.lstrip())
        trail = len(seg.rstrip())
        cells.append((offset + s + lead, offset + s + max(lead, trail)))
    return tuple(cells)


def split_sentences(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Sentence spans of ``text[start:end]`` (one prose line): split after ``.!?`` followed by space and a
    capital or digit, except after abbreviations (``e.g.``, ``Inc.``, ``U.S.``) and single initials."""
    out: list[tuple[int, int]] = []
    s = start
    segment = text[start:end]
    for m in _SENT_END_RE.finditer(segment):
        cut = start + m.end()
        before = segment[: m.start()]
        word = _LAST_WORD_RE.search(before[-40:])
        w = word.group(1).lower().rstrip(".") if word else ""
        if m.group(0).startswith(".") and (w in ABBREVIATIONS or (len(w) == 1 and w.isalpha())):
            continue
        if text[s:cut].strip():
            out.append((s, cut))
        s = cut
        while s < end and text[s].isspace():
            s += 1
    if text[s:end].strip():
        out.append((s, end))
    return out


def _lines(text: str) -> list[tuple[int, str]]:
    out = []
    pos = 0
    for raw in text.splitlines(keepends=True):
        out.append((pos, raw.rstrip("\r\n")))
        pos += len(raw)
    return out


def parse(text: str) -> Doc:
    """Parse an answer; never raises (anything unrecognised is prose)."""
    found = UrlMatches.scan(text)
    links, spans = url_spans(text, found)
    chars = list(text)
    for s, e in spans:
        _blank(chars, text, s, e)
    for link in links:
        if is_citation_chip(link):
            _blank(chars, text, *link.span)

    units: list[Unit] = []
    lines = _lines(text)
    n = len(lines)
    fence: str | None = None
    section = -1
    list_id = 0
    in_list = False
    indent_stack: list[tuple[int, int]] = []  # (indent, unit index) of open list items
    table_id = 0

    def add(**kw: object) -> int:
        idx = len(units)
        units.append(Unit(index=idx, section=section, **kw))  # type: ignore[arg-type]
        return idx

    i = 0
    while i < n:
        off, line = lines[i]
        fm = FENCE_RE.match(line) if "```" in line or "~~~" in line else None
        if fence is not None:
            _blank(chars, text, off, off + len(line))
            if fm and fm.group(1)[0] == fence[0] and len(fm.group(1)) >= len(fence):
                fence = None
            i += 1
            continue
        if fm:
            fence = fm.group(1)
            _blank(chars, text, off, off + len(line))
            i += 1
            continue
        q = QUOTE_RE.match(line) if ">" in line else None
        shift = q.end() if q else 0
        content = line[shift:]
        base = off + shift
        if not content.strip() or RULE_RE.match(content):
            i += 1
            continue

        hm = HEADING_RE.match(content) if "#" in content else None
        if hm:
            in_list = False
            indent_stack.clear()
            body = base + hm.start(2)
            # Closing "##" and trailing blanks are not part of the title ("## Pricing ##").
            title = _CLOSING_HASHES_RE.sub("", hm.group(2)[-200:])
            end = base + hm.start(2) + len(hm.group(2)) - (min(200, len(hm.group(2))) - len(title))
            section = len(units)  # a heading is the head of its own section
            add(
                kind="heading",
                start=base,
                end=end,
                body=body,
                level=len(hm.group(1)),
                group=f"h{len(hm.group(1))}",
            )
            i += 1
            continue

        if (
            "|" in content
            and i + 1 < n
            and TABLE_SEP_RE.match(lines[i + 1][1][shift:])
            and "|" in lines[i + 1][1]
        ):
            in_list = False
            indent_stack.clear()
            table_id += 1
            add(
                kind="row",
                start=base,
                end=base + len(content),
                body=base,
                group=f"table{table_id}",
                cells=_split_cells(content, base),
                header=True,
            )
            i += 2
            while i < n:
                off2, line2 = lines[i]
                q2 = QUOTE_RE.match(line2) if shift else None
                c2 = line2[q2.end() :] if q2 else line2
                b2 = off2 + (len(line2) - len(c2))
                if not c2.strip() or "|" not in c2:
                    break
                add(
                    kind="row",
                    start=b2,
                    end=b2 + len(c2),
                    body=b2,
                    group=f"table{table_id}",
                    cells=_split_cells(c2, b2),
                )
                i += 1
            continue

        lm = LIST_RE.match(content)
        if lm:
            indent = len(lm.group(1).expandtabs(4))
            if not in_list:
                list_id += 1
                in_list = True
                indent_stack.clear()
            while indent_stack and indent_stack[-1][0] >= indent:
                indent_stack.pop()
            parent = indent_stack[-1][1] if indent_stack else -1
            depth = len(indent_stack)
            content_col = lm.end()
            end = base + len(content)
            j = i + 1
            # Continuation lines: anything up to the next list item, heading, table, fence or (after a blank
            # line) a paragraph that is not indented under this item.
            while j < n:
                o3, l3 = lines[j]
                c3 = l3[shift:] if shift and QUOTE_RE.match(l3) else l3
                if not c3.strip():
                    k = j + 1
                    while k < n and not lines[k][1].strip():
                        k += 1
                    if k < n:
                        nxt = lines[k][1][shift:] if shift else lines[k][1]
                        ind = len(nxt) - len(nxt.lstrip())
                        if ind >= content_col and not LIST_RE.match(nxt) and not FENCE_RE.match(nxt):
                            j = k
                            continue
                    break
                if LIST_RE.match(c3) or HEADING_RE.match(c3) or FENCE_RE.match(c3) or RULE_RE.match(c3):
                    break
                if "|" in c3 and j + 1 < n and TABLE_SEP_RE.match(lines[j + 1][1]):
                    break
                end = o3 + len(l3)
                j += 1
            idx = add(
                kind="item",
                start=base,
                end=end,
                body=base + lm.end(),
                level=depth,
                group=f"list{list_id}.{depth}",
                parent=parent,
            )
            indent_stack.append((indent, idx))
            i = j
            continue

        # Prose: a paragraph line at the left margin ends any list; each line is split into sentences.
        if len(content) - len(content.lstrip()) < 2:
            in_list = False
            indent_stack.clear()
        lead = len(content) - len(content.lstrip())
        for s, e in split_sentences(text, base + lead, base + len(content)):
            add(kind="sentence", start=s, end=e, body=s)
        i += 1

    masked = "".join(chars)
    bold = sorted(
        (m.span("a") if m.group("a") is not None else m.span("b"))
        for m in (BOLD_RE.finditer(masked) if "**" in masked or "__" in masked else ())
    )
    return Doc(text=text, masked=masked, units=units, links=links, bold=bold, _url_matches=found)


_OPENERS = set(" \t*_[(\"'“‘`>~#")
_ENDERS = set(".!?:–—")


def is_sentence_start(doc: Doc, offset: int) -> bool:
    """True when ``offset`` begins a sentence: only Markdown openers, quotes or brackets lie between it and the
    start of its unit or the previous ``.``, ``!``, ``?``, ``:`` or dash (``1. **X** – Text`` starts at "Text")."""
    unit = doc.unit_at(offset)
    floor = unit.body if unit else 0
    i = offset - 1
    text = doc.masked
    while i >= floor and text[i] in _OPENERS:
        i -= 1
    if i < floor:
        return True
    if text[i] == "\n":
        return True
    if unit and unit.kind == "row":
        for s, _e in unit.cells:
            if s <= offset and not text[s:offset].strip(" *_[`\"'"):
                return True
    return text[i] in _ENDERS


def unit_text(doc: Doc, unit: Unit) -> str:
    """Readable text of a unit (a table row as ``cell | cell``)."""
    if unit.kind == "row":
        return " | ".join(plain(doc.text[s:e]) for s, e in unit.cells)
    body = unit.body
    if unit.kind == "heading":
        m = _NUMBERING_RE.match(doc.text, body, unit.end)
        body = m.end() if m else body
    return plain(doc.text[body : unit.end])


_NUMBERING_RE = re.compile(r"(?:#?\d{1,3}[.):]?|[IVX]{1,4}[.)])[ \t]+")
#: "Option 1: CoreWeave", "Pick #2 – Lambda": the ordinal label is not the name; what follows it is
#: (also when only the label is bold: "**Option 1:** CoreWeave").
_ORDINAL_RE = re.compile(
    r"(?:option|choice|pick|alternative|tier|rank|no\.)[ \t]*#?\d{1,3}[ \t]*(?:[:.)]|[–—-])[ \t]*",
    re.IGNORECASE,
)
_BOLD_ORDINAL_RE = re.compile(
    r"(\*\*|__)(?:option|choice|pick|alternative|tier|rank)[ \t]*#?\d{1,3}[ \t]*[:.)–—-]?[ \t]*\1[ \t]*[:.)–—-]?[ \t]*",
    re.IGNORECASE,
)
_BOLD_LEAD_RE = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
#: What ends the name at the head of a list item or heading: a dash, a colon, an opening parenthesis, a pipe,
#: a question mark, or the end of a sentence.
_LEAD_END_RE = re.compile(
    r"[ \t]+[–—-][ \t]|[ \t]*[–—][ \t]*|:(?:\s|$)|[ \t]+\(|[ \t]+\|[ \t]|[?!]|\.(?:\s|$)"
)
MAX_LEAD_WORDS = 6
MAX_LEAD_CHARS = 60


def _trim(text: str, s: int, e: int, chars: str) -> tuple[int, int]:
    while s < e and text[s] in chars:
        s += 1
    while e > s and text[e - 1] in chars:
        e -= 1
    return s, e


def lead_span(doc: Doc, unit: Unit) -> tuple[int, int] | None:
    """Span (in ``doc.text``) of the name-like text that leads a list item or heading, or a table row's first
    cell: ``1. **CoreWeave** – …`` → ``CoreWeave``; ``### 2. Lambda Labs: on-demand`` → ``Lambda Labs``;
    ``- Vast.ai: marketplace`` → ``Vast.ai``; ``- [RunPod](https://runpod.io) …`` → ``RunPod``.

    A plain list item (no bold, no link) has a lead only when a separator follows within a few words, or when
    the whole item is a few words. None when nothing qualifies.
    """
    # Discovery, mention matching and the org evaluation all ask for the same units' leads.
    if unit.index < len(doc.units) and doc.units[unit.index] is unit:
        try:
            return doc._leads[unit.index]
        except KeyError:
            span = doc._leads[unit.index] = _lead_span(doc, unit)
            return span
    return _lead_span(doc, unit)


def _lead_span(doc: Doc, unit: Unit) -> tuple[int, int] | None:
    text = doc.text
    if unit.kind == "row":
        if not unit.cells:
            return None
        s, e = unit.cells[0]
        s, e = _trim(text, s, e, " \t*_`")
        return (s, e) if s < e else None
    if unit.kind not in ("item", "heading"):
        return None
    s = unit.body
    nl = text.find("\n", s, unit.end)
    line_end = nl if nl != -1 else unit.end
    for rx in (_NUMBERING_RE, _BOLD_ORDINAL_RE, _ORDINAL_RE):
        m = rx.match(text, s, line_end)
        if m:
            s = m.end()
    if s >= line_end:
        return None
    bm = _BOLD_LEAD_RE.match(text, s, line_end)
    if bm:
        bs, be = bm.span(2)
        for rx in (_NUMBERING_RE, _ORDINAL_RE):
            nm = rx.match(text, bs, be)
            if nm:
                bs = nm.end()
        bs, be = _trim(text, bs, be, " \t:–—-.*_")
        return (bs, be) if bs < be and be - bs <= MAX_LEAD_CHARS else None
    lm = LINK_RE.match(text, s, line_end)
    if lm:
        ls, le = _trim(text, *lm.span("text"), " \t*_`")
        return (ls, le) if ls < le and le - ls <= MAX_LEAD_CHARS else None
    window = text[s:line_end]
    cut = _LEAD_END_RE.search(window)
    if cut:
        e = s + cut.start()
    elif unit.kind == "heading" or len(window.split()) <= 4:
        e = line_end
    else:
        return None
    s, e = _trim(text, s, e, " \t*_`\"'")
    if s >= e or e - s > MAX_LEAD_CHARS or len(text[s:e].split()) > MAX_LEAD_WORDS:
        return None
    return s, e
