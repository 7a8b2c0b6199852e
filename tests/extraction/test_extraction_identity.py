"""Org identity (services/extraction/identity.py): the one suffix list, domains, variations, merging — and the
NormalizeOrg / MergeCompetitors RPCs the orchestrator and its report call instead of keeping copies."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from services.extraction import identity
from services.extraction.server import build
from services.extraction.urls import domain_stem
from shared.config import Settings
from shared.errors import from_rpc_error
from shared.grpc_server import serving
from vantage.extraction.v1 import extraction_pb2 as pb
from vantage.extraction.v1 import extraction_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]


def test_name_variations() -> None:
    v = identity.name_variations("Together AI", "together.ai")
    assert v[0] == "Together AI"
    for expected in ("together ai", "TogetherAI", "Together", "Together Inc", "Together Inc.", "Together Ltd",
                     "Together Labs", "together.ai", "together"):
        assert expected in v, expected
    assert len(v) == len(set(v))
    assert identity.name_variations("Lambda, Inc.", "")[:4] == ["Lambda, Inc.", "lambda, inc.", "Lambda,Inc.", "Lambda"]
    assert "hf" not in identity.name_variations("Hugging Face", "hf.co")  # a stem under 3 letters is no name
    assert identity.name_variations("X", "", ["Y", " Y ", "X"]) == ["X", "x", "X Inc", "X Inc.", "X Ltd", "X Labs",
                                                                   "X AI", "Y"]


def test_domains_have_one_rule() -> None:
    # www. and every other subdomain go the same way; the stem is the registrable label, never "docs".
    assert identity.normalize_domain("https://www.Docs.Together.ai/x?y=1") == "together.ai"
    assert identity.normalize_domain("www.together.ai") == "together.ai"
    assert identity.normalize_domain("user@cohere.com") == "cohere.com"
    assert identity.normalize_domain("news.bbc.co.uk") == "bbc.co.uk"
    assert identity.normalize_domain("") == ""
    assert domain_stem("docs.together.ai") == "together"
    assert "together" in identity.name_variations("Together AI", "docs.together.ai")
    assert "docs" not in identity.name_variations("Together AI", "docs.together.ai")


@pytest.mark.parametrize(
    ("names", "merged"),
    [
        (["Lambda", "Lambda Labs", "Lambda Cloud", "lambdalabs.com"], True),
        (["Amazon Web Services", "AWS"], True),
        (["Mistral AI", "Mistral"], True),
        (["Acme GmbH", "Acme"], True),
        (["CoreWeave", "Core Scientific"], False),
        (["Together AI", "Fireworks AI"], False),
    ],
)
def test_merge_names_merges_variants(names: list[str], merged: bool) -> None:
    shown = identity.merge_names({n: 1 for n in names})
    assert (len(set(shown.values())) == 1) is merged, (names, shown)


def test_merge_names_shows_the_most_frequent_spelling() -> None:
    shown = identity.merge_names({"Lambda Labs": 3, "Lambda": 5, "Lambda Cloud": 1, "CoreWeave": 2})
    assert shown == {"Lambda Labs": "Lambda", "Lambda": "Lambda", "Lambda Cloud": "Lambda", "CoreWeave": "CoreWeave"}
    assert identity.merge_keys("") == frozenset()


def test_one_suffix_list_and_one_domain_stem_function_in_the_tree() -> None:
    """The acceptance grep of issue 13: suffix sets and domain → stem logic exist only in the identity module and
    urls.py. Excluded on purpose: the corpus scorer's name key (the labels' oracle, independent of the extractor)
    and the sandbox (it emulates an external LLM's answers and must not share our code)."""
    out = subprocess.run(
        ["git", "grep", "-n", "-E", r"^[A-Z_]*SUFFIX(ES|_WORDS)\b|def domain_stem\b|(dom|domain|host)\w*\.split\(\"\.\"\)\[0\]",
         "--", "*.py", ":!tests/extraction/corpus_score.py", ":!tests/extraction/test_extraction_identity.py",
         ":!services/sandbox/*"],
        cwd=ROOT, capture_output=True, text=True,
    ).stdout.splitlines()
    files = sorted({line.split(":", 1)[0] for line in out})
    assert files == ["services/extraction/identity.py", "services/extraction/urls.py"], out


@pytest.fixture
async def stub() -> AsyncIterator[pb_grpc.ExtractionServiceStub]:
    async with serving("extraction", build, Settings(grace_seconds=0.5)) as srv:
        async with grpc.aio.insecure_channel(srv.address) as channel:
            yield pb_grpc.ExtractionServiceStub(channel)


@pytest.mark.integration
async def test_normalize_org_rpc(stub: pb_grpc.ExtractionServiceStub) -> None:
    r = await stub.NormalizeOrg(
        pb.NormalizeOrgRequest(org=pb.Org(name=" Together  AI ", domain="https://www.docs.together.ai/x",
                                          name_variations=["TogetherCompute"])), timeout=10)
    assert (r.name, r.domain, r.domain_stem) == ("Together AI", "together.ai", "together")
    assert r.name_variations[0] == "Together AI" and r.name_variations[-1] == "TogetherCompute"
    assert "together" in r.keys
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.NormalizeOrg(pb.NormalizeOrgRequest(org=pb.Org(name="X" * 201)), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    err = from_rpc_error(e.value)
    assert [f for f, _ in err.violations] == ["org.name"] and "200" in err.message  # type: ignore[attr-defined]


@pytest.mark.integration
async def test_merge_competitors_rpc(stub: pb_grpc.ExtractionServiceStub) -> None:
    req = pb.MergeCompetitorsRequest(names=[
        pb.WeightedName(name="Lambda Labs", weight=3), pb.WeightedName(name="Lambda", weight=5),
        pb.WeightedName(name="lambdalabs.com", weight=1), pb.WeightedName(name="CoreWeave", weight=2),
    ])
    r = await stub.MergeCompetitors(req, timeout=10)
    assert [(m.name, m.canonical) for m in r.names] == [
        ("Lambda Labs", "Lambda"), ("Lambda", "Lambda"), ("lambdalabs.com", "Lambda"), ("CoreWeave", "CoreWeave"),
    ]
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.MergeCompetitors(pb.MergeCompetitorsRequest(names=[pb.WeightedName(name="A", weight=-1)]),
                                    timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
