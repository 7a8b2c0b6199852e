"""URL normalisation and registrable domains (offline Public Suffix List)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.extraction.urls import (
    domain_stem,
    light_url_key,
    normalize_url,
    registrable_domain,
    strip_trailing_punctuation,
)


@pytest.mark.parametrize(
    "raw, expected",
    [
        (
            "HTTPS://Docs.Together.AI:443/inference/?utm_source=x&id=3#pricing",
            "https://docs.together.ai/inference?id=3",
        ),
        ("http://Example.com:80", "http://example.com/"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com/", "https://example.com/"),
        ("https://example.com/a/b/", "https://example.com/a/b"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("https://example.com/a?utm_campaign=x&UTM_MEDIUM=y", "https://example.com/a"),
        (
            "https://example.com/a?gclid=1&fbclid=2&msclkid=3&ref=hn&ref_src=twsrc&mc_cid=4&mc_eid=5&_hsenc=6&_hsmi=7"
            "&igshid=8&yclid=9&q=gpu",
            "https://example.com/a?q=gpu",
        ),
        ("https://example.com/a?b=2&a=1", "https://example.com/a?b=2&a=1"),  # order and spelling kept
        ("https://example.com/search?q=a%20b&&x=", "https://example.com/search?q=a%20b&x="),
        ("https://example.com/a#section", "https://example.com/a"),
        ("www.Example.com/x", "https://www.example.com/x"),
        ("<https://example.com/x>", "https://example.com/x"),
        ("https://en.wikipedia.org/wiki/Lambda_(company)", "https://en.wikipedia.org/wiki/Lambda_(company)"),
        ("https://user@Example.com/x", "https://user@example.com/x"),
        ("https://[2001:DB8::1]:443/x", "https://[2001:db8::1]/x"),
    ],
)
def test_normalize_url(raw: str, expected: str) -> None:
    assert normalize_url(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "mailto:sales@together.ai",
        "/docs/pricing",
        "#top",
        "ftp://x.org/a",
        "https://",
        "http://x.io:99999/",
    ],
)
def test_not_a_citable_url(raw: str) -> None:
    assert normalize_url(raw) is None


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("https://lambdalabs.com/blog).", "https://lambdalabs.com/blog"),
        ("https://a.io/x,", "https://a.io/x"),
        ("https://a.io/x;", "https://a.io/x"),
        ("https://a.io/x!?", "https://a.io/x"),
        ("https://en.wikipedia.org/wiki/Lambda_(company)", "https://en.wikipedia.org/wiki/Lambda_(company)"),
        (
            "https://en.wikipedia.org/wiki/Lambda_(company)).",
            "https://en.wikipedia.org/wiki/Lambda_(company)",
        ),
        ("https://a.io/x]", "https://a.io/x"),
    ],
)
def test_strip_trailing_punctuation(raw: str, expected: str) -> None:
    assert strip_trailing_punctuation(raw) == expected


@pytest.mark.parametrize(
    "host, registrable, stem",
    [
        ("docs.together.ai", "together.ai", "together"),
        ("https://news.bbc.co.uk/x", "bbc.co.uk", "bbc"),
        ("www.coreweave.com", "coreweave.com", "coreweave"),
        ("lambdalabs.com", "lambdalabs.com", "lambdalabs"),
        ("Docs.Together.AI", "together.ai", "together"),
        ("aws.amazon.com", "amazon.com", "amazon"),
        ("127.0.0.1", "127.0.0.1", ""),
        ("localhost", "localhost", ""),
        ("", "", ""),
    ],
)
def test_registrable_domain_offline(host: str, registrable: str, stem: str) -> None:
    assert registrable_domain(host) == registrable
    assert domain_stem(host) == stem


def test_light_key_forgives_only_case_port_and_trailing_slash() -> None:
    assert light_url_key("HTTPS://Example.COM:443/a/") == light_url_key("https://example.com/a")
    assert light_url_key("https://example.com/a?x=1") != light_url_key("https://example.com/a")
    assert light_url_key("https://example.com/A") != light_url_key("https://example.com/a")


_url = st.builds(
    lambda scheme, host, path, query, frag: f"{scheme}://{host}{path}{query}{frag}",
    st.sampled_from(["http", "https", "HTTPS", "Http"]),
    st.sampled_from(
        ["example.com", "Docs.Together.AI", "a.b.co.uk", "x.io:443", "x.io:80", "x.io:8080", "127.0.0.1"]
    ),
    st.from_regex(r"(/[A-Za-z0-9_.~%()-]{0,6}){0,3}/?", fullmatch=True),
    st.from_regex(r"(\?([a-z_]{1,6}=[A-Za-z0-9%+]{0,4})(&[a-z_]{1,8}=[a-z0-9]{0,3}){0,3})?", fullmatch=True),
    st.from_regex(r"(#[a-z]{0,5})?", fullmatch=True),
)


@settings(max_examples=300, deadline=None)
@given(_url)
def test_normalisation_is_idempotent(url: str) -> None:
    once = normalize_url(url)
    assert once is not None
    assert normalize_url(once) == once
    assert "utm_" not in once and "#" not in once
    assert registrable_domain(once) == registrable_domain(url)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_normalisation_never_raises(text: str) -> None:
    out = normalize_url(text)
    if out is not None:
        assert normalize_url(out) == out
