"""The answer as a document: Markdown block structure from a real parser, plus the masking and offsets it cannot
give (pure).

:func:`parse` reads an assistant's Markdown answer with **markdown-it-pyrs** (the Rust port of markdown-it, the
same CommonMark + GFM-table grammar as markdown-it-py, which rich installs): it was chosen over markdown-it-py,
mistletoe and marko because its syntax tree carries a source span (``srcmap``) for *every* node, inline ones
included (bold, links, code spans, table cells), where markdown-it-py gives line ranges for blocks only, and
because it parses a typical answer in ~60 µs against ~1 ms for markdown-it-py (the extractor's whole budget).
Nothing here re-implements block parsing: headings (ATX and setext), list items with their nesting, tables
with header and body cells, block quotes, fenced and indented code, link reference definitions and HTML blocks
are the parser's.

What this module adds:

* a :class:`Doc` whose offsets are Python string indices into the answer as received (the parser counts UTF-8
  bytes; they are converted once);
* a *masked* copy of the text, the same length, with URLs (link destinations, reference definitions, autolinks,
  bare URLs), images, citation chips such as ``([together.ai](…))`` and code blanked, so a name inside
  ``https://lambda.ai/…`` or a code sample never counts as a mention while every offset stays valid;
* a flat list of :class:`Unit` — headings, list items, table rows and prose sentences — in document order, each
  with its *sibling group* (the headings of one level; the items of one list at one nesting level; the rows of
  one table; the bold-led lines of one section), which competitor discovery uses to tell a list of brands from a
  list of feature labels. ChatGPT often writes its ranked list as paragraphs of bold numbered lines
  (``**1. Notion** – …`` on consecutive lines, no list marker): such a line is read as a list item of its own
  group, because that is what it is to a reader;
* a word index (:meth:`Doc.find_phrase`), sentence splitting and the lead name of an item or heading
  (:func:`lead_span`) — text-level facts no Markdown parser has.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, NamedTuple

from markdown_it_pyrs import MarkdownIt

from services.extraction.memo import memo
from services.extraction.urls import looks_like_domain, registrable_domain, strip_trailing_punctuation

#: An inline link ``[text](url "title")`` (not an image), for reading small fragments (:func:`plain`, leads).
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
#: The leading lookahead is the first letter every match has (h/H or w/W; IGNORECASE adds no other character for
#: them), which re tests before the costlier lookbehind: the same matches in about half the time
#: (tests/extraction/test_extraction_fast_paths.py checks it against the pattern without it).
BARE_URL_RE = re.compile(r"(?=[hw])(?<![\w@/.])(?:https?://|www\.)[^\s<>\"'`\[\]{}|\\^]+", re.IGNORECASE)
_EMPH_RE = re.compile(r"(\*{1,3}|_{1,3})(?=\S)(.{1,300}?)(?<=\S)\1")
_CODE_RE = re.compile(r"`+([^`\n]*)`+")
_TAG_RE = re.compile(r"</?[A-Za-z][^<>\n]{0,200}>")
_CITE_MARK_RE = re.compile(r"[ \t]*\[\d{1,3}(?:[,\s]+\d{1,3})*\]")
_WS_RE = re.compile(r"\s+")

#: Words after which a period does not end a sentence (lower case, without the period).
ABBREVIATIONS: frozenset[str] = frozenset(
    "e.g i.e vs etc inc ltd co corp dr mr mrs ms st approx incl no jr sr u.s u.k fig est mt dept al cf ca "
    "z.b bzw usw ggf ca sr sra p.ej etc".split()
)
_TITLE_WORD_RE = re.compile(r"[^\W\d_][\w'’-]*")
_LAST_WORD_RE = re.compile(r"([\w.]+)$")
_NOT_NEWLINE_RE = re.compile(r"[^\r\n]")
#: (``[.!?][.!?]*`` rather than ``[.!?]+``: a pattern that opens with a character class, not a repeat, gets re's
#: charset prefix, so a search skips the positions that cannot start a match without entering the pattern; ~2x
#: faster than ``[.!?]+`` led by the lookahead ``(?=[.!?])``, the same matches.)
_SENT_END_RE = re.compile(r"[.!?][.!?]*[\"')\]*_]*(?=\s+[\"'(\[*_¿¡]*[A-Z0-9ÁÉÍÓÚÑÄÖÜÀÂÇÈÊÎÔ])")

#: The parser: CommonMark + GFM tables and strikethrough (what assistants emit).
_MD = MarkdownIt("commonmark").enable_many(["table", "strikethrough"])
#: Numbering before or inside a bold lead of a paragraph line: ``1.``, ``1)``, ``1\.``, ``#1``, ``1️⃣``.
_NUM = r"(?:\d{1,3}\\?[.)]|#\d{1,3}[.:)]?|\d\ufe0f?\u20e3)"
#: A paragraph line that reads as a list item: numbered and/or led by a bold span.
_PSEUDO_ITEM_RE = re.compile(
    rf"(?P<num>{_NUM}[ \t]*)?(?P<bold>\*\*|__)(?P<num2>[ \t]*{_NUM}[ \t]+)?|(?P<num3>{_NUM}[ \t]+)(?=\S)"
)
_LINE_PREFIX_RE = re.compile(r"[ \t]*(?:>[ \t]?)*[ \t]*")


@dataclass(frozen=True)
class Unit:
    """One heading, list item, table row or prose sentence of the answer.

    ``start``/``end``: span in the answer (end exclusive); ``body``: where the content starts (after ``### ``,
    ``1. ``, a quote marker …). ``level``: heading level 1–6, or list nesting depth (0 = top level), else 0.
    ``group``: sibling-group id (``"h3"``, ``"list2.1"``, ``"table1"``, ``"nb3"`` for the bold numbered lines of
    section 3, ``"p"``). ``cells``: a table row's cell content spans. ``header``: a table's header row.
    ``parent``: index of the enclosing list item for a nested item, else -1. ``section``: index of the nearest
    heading above, else -1.
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


_new_unit = object.__new__


def _unit(
    kind: str, start: int, end: int, body: int, level: int, group: str, index: int,
    cells: tuple[tuple[int, int], ...], header: bool, parent: int, section: int,
) -> Unit:
    """``Unit(kind, start, …, section)`` without the frozen dataclass's ``__init__``, which sets each of the 11
    fields through ``object.__setattr__`` (the parser makes one per sentence, item, heading and row); the instance
    is the same (same class, same field values, still frozen to its users). Checked against the constructor in
    ``tests/extraction/test_extraction_fast_paths.py``."""
    u = _new_unit(Unit)
    u.__dict__.update(
        kind=kind, start=start, end=end, body=body, level=level, group=group, index=index, cells=cells,
        header=header, parent=parent, section=section,
    )
    return u


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


@memo
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
    _lower_case: bool | None = field(default=None, repr=False)  # names.is_lower_case_answer, computed once

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
            starts, ends, words, _ = self._tok  # type: ignore[misc]
            self._tokens = [Token(*t) for t in zip(starts, ends, words, strict=True)]
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
        masked = self.masked
        if n == 1 and not case_sensitive:
            # One word, any case: every token indexed under it matches (the index is keyed by the folded token).
            for i in self._by_word.get(folded[0], ()):
                s0 = starts[i]
                if s0 == 0 or masked[s0 - 1] not in "@/#":
                    yield s0, ends[i]
            return
        have, want = (tok_words, words) if case_sensitive else (tok_folded, folded)
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


@memo  # pure; the same fragments are cleaned several times per answer
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


def blank_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with every ``[start, end)`` of ``spans`` blanked except line breaks (spans may overlap, be empty or
    reversed: what :func:`_blank` on the list of characters gives, built from slices of ``text`` instead of a
    list of its characters; checked against it in tests/extraction/test_extraction_fast_paths.py)."""
    pieces: list[str] = []
    pos = 0
    for s, e in sorted(spans):
        if e > len(text):
            e = len(text)
        if e <= pos or s >= e:
            continue
        if s < pos:
            s = pos
        pieces.append(text[pos:s])
        seg = text[s:e]
        pieces.append(_NOT_NEWLINE_RE.sub(" ", seg) if "\n" in seg or "\r" in seg else " " * (e - s))
        pos = e
    if not pieces:
        return text
    pieces.append(text[pos:])
    return "".join(pieces)


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
            _bare_urls(text, low) if "http" in low or "www." in low else [],
        )


def _bare_urls(text: str, low: str) -> list[re.Match[str]]:
    """``list(BARE_URL_RE.finditer(text))`` (``low`` is ``text.lower()``). On ASCII text a match can only start
    where ``low`` has "http" or "www.", so the pattern is matched there alone, in order, each start after the
    previous match (as finditer resumes) instead of being tried at every position; other text (where IGNORECASE
    folds "ſ" to "s" and lower() may change lengths) is scanned whole as before."""
    if not text.isascii():
        return list(BARE_URL_RE.finditer(text))
    starts = []
    for needle in ("http", "www."):
        i = low.find(needle)
        while i != -1:
            starts.append(i)
            i = low.find(needle, i + 1)
    out: list[re.Match[str]] = []
    end = 0
    for i in sorted(starts):
        if i < end:
            continue
        m = BARE_URL_RE.match(text, i)
        if m:
            out.append(m)
            end = m.end()
    return out


def is_citation_chip(link: Link) -> bool:
    """A link whose text is its own URL or its lower-case domain — ``([together.ai](https://www.together.ai/x))``
    as ChatGPT writes citations — is a citation, not a mention: its text is masked like a URL. A capitalised
    domain-like name ("[Character.ai](https://character.ai)") stays a name."""
    return _is_chip(link.text, link.url)


@memo
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


def split_sentences(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Sentence spans of ``text[start:end]`` (one prose line): split after ``.!?`` followed by space and a
    capital or digit, except after abbreviations (``e.g.``, ``Inc.``, ``U.S.``) and single initials."""
    out: list[tuple[int, int]] = []
    s = start
    segment = text[start:end]
    for m in _SENT_END_RE.finditer(segment):
        cut = start + m.end()
        at = m.start()
        word = _LAST_WORD_RE.search(segment[max(0, at - 40) : at])
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


def _utf8_len(c: str) -> int:
    o = ord(c)
    return 1 if o < 0x80 else 2 if o < 0x800 else 3 if o < 0x10000 else 4


class _Reader:
    """One walk over the parser's tree, collecting units, links, bold spans and code spans (char offsets)."""

    def __init__(self, text: str, parsed: str) -> None:
        self.text = text
        self._n = len(text)
        # srcmap counts UTF-8 bytes of what was parsed (``parsed``: ``text`` with NUL as U+FFFD, same length).
        if parsed.isascii():
            self._starts: list[int] | None = None
        else:
            self._starts = list(accumulate(map(_utf8_len, parsed), initial=0))
        self.units: list[Unit] = []
        self.links: list[Link] = []
        self.bold: list[tuple[int, int]] = []
        self.code: list[tuple[int, int]] = []
        self.inline_code: list[tuple[int, int]] = []
        self.section = -1
        self.list_id = 0
        self.table_id = 0

    def span(self, node: Any) -> tuple[int, int] | None:
        sm = node.srcmap
        if sm is None:
            return None
        s, e = sm
        if self._starts is not None:
            s, e = bisect.bisect_left(self._starts, s), bisect.bisect_left(self._starts, e)
        # markdown-it-pyrs' source map can end past the text on odd input (a 200k-character random answer gave a
        # list item ending beyond it: IndexError → INTERNAL); clamp so every span indexes the text.
        n = self._n
        if s <= n and e <= n:
            return s, e
        return min(s, n), min(e, n)

    def add(
        self, kind: str, start: int, end: int, body: int, level: int = 0, group: str = "p",
        cells: tuple[tuple[int, int], ...] = (), header: bool = False, parent: int = -1,
    ) -> int:
        idx = len(self.units)
        self.units.append(_unit(kind, start, end, body, level, group, idx, cells, header, parent, self.section))
        return idx

    # --- inline ---------------------------------------------------------------------------------------------

    def inline(self, nodes: Sequence[Any]) -> None:
        stack = list(reversed(nodes))
        text = self.text
        span = self.span
        while stack:
            n = stack.pop()
            name = n.name
            if name == "text":
                continue
            # A node's span only where it is read (strong, link, inline code), and its children fetched once: both
            # are attribute reads on the parser's Rust objects, and the children come back as a new list each time.
            if name == "strong":
                sp = span(n)
                if sp and sp[1] - sp[0] > 4:
                    self.bold.append((sp[0] + 2, sp[1] - 2))
            elif name == "link":
                sp = span(n)
                if sp:
                    children = n.children
                    kids = [k for k in (span(c) for c in children) if k]
                    ts = (kids[0][0], kids[-1][1]) if kids else (sp[0] + 1, sp[0] + 1)
                    # Inline links only: a reference use ("[1]" with a "[1]: url" definition) is a citation marker.
                    if text.startswith("](", ts[1]) or (not kids and text.startswith("[](", sp[0])):
                        self.links.append(Link(sp, ts, text[ts[0] : ts[1]], str(n.meta.get("url", ""))))
                    if children:
                        stack.extend(reversed(children))
                    continue
            elif name == "code_inline":
                sp = span(n)
                if sp:
                    self.inline_code.append(sp)
                    continue
            elif name == "image":
                continue
            children = n.children
            if children:
                stack.extend(reversed(children))

    def _content_span(self, nodes: Sequence[Any]) -> tuple[int, int] | None:
        spans = [s for s in (self.span(c) for c in nodes) if s]
        return (spans[0][0], spans[-1][1]) if spans else None

    # --- blocks ---------------------------------------------------------------------------------------------

    def paragraph(self, node: Any) -> None:
        sp = self.span(node)
        self.inline(node.children)
        if sp:
            self.lines(*sp)

    def lines(self, start: int, end: int) -> None:
        """Prose lines of a paragraph: bold-led / numbered lines are items, the rest sentences."""
        text = self.text
        pos = start
        while pos < end:
            nl = text.find("\n", pos, end)
            line_end = end if nl == -1 else nl
            m = _LINE_PREFIX_RE.match(text, pos, line_end)
            s = m.end() if m else pos
            e = line_end
            while e > s and text[e - 1] in " \t\r":
                e -= 1
            if s < e:
                pm = _PSEUDO_ITEM_RE.match(text, s, e)
                if pm and (pm.group("bold") is None or self._bold_at(pm.start("bold") + 2)):
                    numbered = bool(pm.group("num") or pm.group("num2") or pm.group("num3"))
                    self.add(kind="item", start=s, end=e, body=s, group=f"{'nb' if numbered else 'bl'}{self.section}")
                else:
                    for a, b in split_sentences(text, s, e):
                        self.add(kind="sentence", start=a, end=b, body=a)
            pos = line_end + 1

    def _bold_at(self, content_start: int) -> bool:
        i = bisect.bisect_left(self.bold, (content_start, -1))
        return i < len(self.bold) and self.bold[i][0] == content_start

    def heading(self, node: Any) -> None:
        sp = self.span(node)
        if not sp:
            return
        children = node.children  # a new list on each read
        self.inline(children)
        content = self._content_span(children)
        body, end = content if content else (sp[1], sp[1])
        level = int(node.meta.get("level", 1))
        self.section = len(self.units)  # a heading is the head of its own section
        self.add(kind="heading", start=sp[0], end=end, body=body, level=level, group=f"h{level}")

    def table(self, node: Any) -> None:
        self.table_id += 1
        group = f"table{self.table_id}"
        for part in node.children:
            header = part.name == "thead"
            for row in part.children:
                sp = self.span(row)
                if not sp:
                    continue
                cells = []
                for cell in row.children:
                    cs = self.span(cell)
                    self.inline(cell.children)
                    if cs:
                        cells.append(cs)
                end = sp[1]
                while end > sp[0] and self.text[end - 1] in "\r\n":
                    end -= 1
                self.add(kind="row", start=sp[0], end=end, body=sp[0], group=group, cells=tuple(cells), header=header)

    def list_(self, node: Any, depth: int, list_id: int, parent: int) -> None:
        for item in node.children:
            sp = self.span(item)
            if not sp:
                continue
            own: list[Any] = []
            rest: list[Any] = []
            for c in item.children:
                # The item's own text: its leading paragraphs / inline content; nested lists and other blocks
                # (code, tables, quotes) are read after it, as their own units.
                if rest or c.name in _BLOCKS:
                    rest.append(c)
                else:
                    own.append(c)
            idx = parent
            content = self._content_span(own)
            if content:
                for c in own:
                    self.inline(c.children if c.name == "paragraph" else [c])
                end = content[1]
                while end > content[0] and self.text[end - 1] in " \t\r\n":
                    end -= 1
                idx = self.add(
                    kind="item", start=sp[0], end=end, body=content[0], level=depth,
                    group=f"list{list_id}.{depth}", parent=parent,
                )
            for c in rest:
                if c.name in ("bullet_list", "ordered_list"):
                    self.list_(c, depth + 1, list_id, idx)
                else:
                    self.block(c, depth=depth)

    def block(self, node: Any, depth: int = 0) -> None:
        name = node.name
        if name == "paragraph":
            self.paragraph(node)
        elif name in ("heading", "lheading"):
            self.heading(node)
        elif name in ("bullet_list", "ordered_list"):
            self.list_id += 1
            self.list_(node, 0, self.list_id, -1)
        elif name == "table":
            self.table(node)
        elif name in ("fence", "code_block"):
            sp = self.span(node)
            if sp:
                self.code.append(sp)
        elif name == "html_block":
            sp = self.span(node)
            if sp:
                self.lines(*sp)
        elif name in ("blockquote", "root"):
            for c in node.children:
                self.block(c, depth)
        # definition, hr: nothing to read (definitions are masked as URLs)


#: Block nodes that end a list item's own text (read after it as their own units).
_BLOCKS = frozenset(
    "bullet_list ordered_list fence code_block table heading lheading blockquote html_block hr definition".split()
)
_CODE_NAME_RE = re.compile(r"[A-Z][\w.+-]*(?: [A-Z][\w.+-]*){0,3}")


def _tree(parsed: str) -> Any:
    """``_MD.tree(parsed)``. markdown-it-pyrs (markdown-it 0.6.0, ``code_pair.rs``) panics on an unpaired backtick
    inside link text (``[a`b](https://x.io)``); the panic is a pyo3 ``PanicException``, a ``BaseException``. Then
    the text is parsed again with backticks read as apostrophes (same length, so every offset holds), and as
    nothing (no markup) if even that fails: an answer is never an error (issue 11 fuzz)."""
    try:
        return _MD.tree(parsed)
    except BaseException as e:
        if type(e).__name__ != "PanicException":
            raise
    try:
        return _MD.tree(parsed.replace("`", "'"))
    except BaseException as e:
        if type(e).__name__ != "PanicException":
            raise
    return _MD.tree("")


def parse(text: str) -> Doc:
    """Parse an answer; never raises (anything the parser cannot read is prose)."""
    parsed = text.replace("\x00", "\ufffd")  # as CommonMark does; the parser must not see NUL
    reader = _Reader(text, parsed)
    reader.block(_tree(parsed))
    reader.bold.sort()
    found = UrlMatches.scan(text)
    links = reader.links
    spans: list[tuple[int, int]] = [(link.text_span[1], link.span[1]) for link in links]  # "](url)"
    spans.extend(m.span() for m in found.images)
    spans.extend(m.span() for m in found.refdefs)  # "[1]: url "title"" is citation metadata
    spans.extend(m.span() for m in found.autolinks)
    for m in found.bare:
        if any(s <= m.start() < e for s, e in (link.span for link in links)):
            continue
        # Only the URL itself: "(see https://x.io/a)." keeps its ")." so parentheses stay balanced.
        spans.append((m.start(), m.start() + len(strip_trailing_punctuation(m.group(0)))))
    spans.extend(reader.code)
    for s, e in reader.inline_code:
        # `Notion` in backticks is still a name; `pip install notion-client` is code.
        if not _CODE_NAME_RE.fullmatch(text[s:e].strip("` ")):
            spans.append((s, e))
    spans.extend(link.span for link in links if is_citation_chip(link))
    masked = blank_spans(text, spans)
    bold = [b for b in reader.bold if masked[b[0] : b[1]].strip()]
    return Doc(text=text, masked=masked, units=reader.units, links=links, bold=bold, _url_matches=found)


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
