"""Research input parsing: headers, bad rows, BOM, extra columns, domains (pure, no I/O but tmp files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.orchestrator.app.inputs import CompanyCsv, CsvFile, InputError, rows_from_pairs
from services.orchestrator.domain import InputRow, company_key, normalise_domain


def rows(text: str) -> list[InputRow]:
    return list(CompanyCsv.from_text(text).rows())


def test_company_and_domain_columns_case_insensitive_with_extra_columns() -> None:
    got = rows("Employees, COMPANY ,Notes,Domain\n10,Together AI,gpu cloud,https://www.together.ai/about\n")
    assert got == [InputRow(2, "Together AI", "together.ai")]


def test_name_header_is_accepted_and_domain_is_optional() -> None:
    assert rows("name\nAnthropic\nMistral AI\n") == [InputRow(2, "Anthropic"), InputRow(3, "Mistral AI")]


def test_blank_rows_and_rows_without_company_are_reported_not_dropped() -> None:
    got = rows("company,domain\nA,a.com\n\n , \n,b.com\nB,\n")
    assert [(r.seq, r.company, r.skip_reason) for r in got] == [
        (2, "A", None),
        (3, "", "blank row"),
        (4, "", "blank row"),
        (5, "", "no company name"),
        (6, "B", None),
    ]


def test_bom_from_a_file_and_from_text(tmp_path: Path) -> None:
    p = tmp_path / "bom.csv"
    p.write_bytes("\ufeffCompany,Domain\r\nCohere,cohere.com\r\n".encode())
    with CsvFile(p) as f:
        assert list(f.rows()) == [InputRow(2, "Cohere", "cohere.com")]
    assert rows("\ufeffcompany\nCohere\n") == [InputRow(2, "Cohere")]


def test_header_after_leading_blank_lines_and_quoted_fields() -> None:
    got = rows('\n\ncompany,domain\n"Acme, Inc.",acme.com\n"Multi\nLine",x.io\n')
    assert [(r.company, r.domain) for r in got] == [("Acme, Inc.", "acme.com"), ("Multi Line", "x.io")]
    assert got[0].seq < got[1].seq  # seq follows input order even across multi-line records


def test_short_rows_get_an_empty_domain() -> None:
    assert rows("company,domain\nJasper\n") == [InputRow(2, "Jasper", "")]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("foo,bar\n1,2\n", "missing header: expected a `company` or `name` column (found: foo, bar)"),
        ("", "empty"),
        ("\n\n", "empty"),
    ],
)
def test_bad_headers_are_one_line_input_errors(text: str, needle: str) -> None:
    with pytest.raises(InputError) as e:
        CompanyCsv.from_text(text)
    assert needle in e.value.message
    assert "\n" not in e.value.message
    assert e.value.violations  # a BadRequest field for the RPC


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        CsvFile(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="not a file"):
        CsvFile(tmp_path)


def test_not_utf8_is_reported(tmp_path: Path) -> None:
    p = tmp_path / "latin1.csv"
    p.write_bytes("company\nSoci\xe9t\xe9 G\xe9n\xe9rale\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"), CsvFile(p) as f:
        list(f.rows())


def test_rows_are_streamed_not_read_whole() -> None:
    consumed = 0

    def lines():
        nonlocal consumed
        yield "company\n"
        for n in range(1_000_000):
            consumed += 1
            yield f"c{n}\n"

    it = CompanyCsv(lines()).rows()
    first = [next(it) for _ in range(3)]
    assert [r.company for r in first] == ["c0", "c1", "c2"]
    assert consumed <= 4


def test_company_key_and_domains() -> None:
    assert company_key("  Together   AI ") == company_key("together ai") == "together ai"
    assert normalise_domain("HTTPS://www.Mistral.AI:443/en?x=1#y") == "mistral.ai"
    assert normalise_domain("user@cohere.com") == "cohere.com"
    assert normalise_domain("") == ""


def test_rows_from_pairs() -> None:
    got = list(rows_from_pairs([("OpenAI", "openai.com"), ("  ", "x.com")]))
    assert got == [InputRow(1, "OpenAI", "openai.com"), InputRow(2, "", "x.com", "no company name")]
