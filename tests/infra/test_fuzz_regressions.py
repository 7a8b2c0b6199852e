"""Inputs the RPC fuzz (tests/infra/test_fuzz_rpcs.py) found to end in INTERNAL, kept as plain regression tests."""

from __future__ import annotations

from services.extraction import core, text


def test_an_unpaired_backtick_in_link_text_is_prose_not_a_parser_panic() -> None:
    # markdown-it-pyrs panicked (pyo3 PanicException → INTERNAL) on this one-bit mutation of a typical answer.
    answer = "1. **CoreWeave** – large H100 clusters ([corewe`ve.com](https://www.coreweave.com/?utm_source=chatgpt))."
    doc = text.parse(answer)
    assert [link.url for link in doc.links] == ["https://www.coreweave.com/?utm_source=chatgpt"]
    assert len(doc.masked) == len(answer)
    analysis = core.analyze(answer, core.Org(name="Together AI", domain="together.ai"), ["CoreWeave"])
    assert analysis is not None
