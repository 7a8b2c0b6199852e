"""grpcurl as a real external client of every service, started as separate processes: `list`, `describe`, health,
and one call each (issue acceptance: Route names Bright Data ChatGPT for "chatgpt" and OpenAI for "gpt-4.1";
Extract on a pasted answer returns org eval, competitors and citations)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.procs import Stack, start_stack

GRPCURL = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
pytestmark = pytest.mark.skipif(not Path(GRPCURL).exists(), reason="grpcurl binary not installed")

SERVICES = {
    "search": "vantage.search.v1.SearchService",
    "inference": "vantage.inference.v1.InferenceService",
    "extraction": "vantage.extraction.v1.ExtractionService",
    "orchestrator": "vantage.orchestrator.v1.OrchestratorService",
}

ANSWER = """Here are the best GPU clouds for training:

1. **CoreWeave** – large H100 clusters ([coreweave.com](https://www.coreweave.com/?utm_source=chatgpt)).
2. **Together AI** – fast inference and fine-tuning, see https://www.together.ai/pricing.
3. **Lambda Labs** – on-demand instances.

Lambda is popular with researchers.
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    db = tmp_path_factory.mktemp("grpcurl") / "v.db"
    s = start_stack(env={"VANTAGE_LOG_LEVEL": "WARNING", "VANTAGE_DATABASE_URL": f"sqlite+aiosqlite:///{db}"})
    yield s
    s.stop(grace=5)


def grpcurl(*args: str) -> str:
    """Run grpcurl (v1.8 prints proto field names, e.g. `cost_usd`); fail with its stderr."""
    p = subprocess.run([GRPCURL, "-plaintext", *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"grpcurl {' '.join(args)} failed: {p.stderr}"
    return p.stdout


@pytest.mark.parametrize("name", list(SERVICES))
def test_list_describe_and_health(stack: Stack, name: str) -> None:
    addr = stack.children[name].address
    listed = set(grpcurl(addr, "list").split())
    assert {SERVICES[name], "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= listed
    described = grpcurl(addr, "describe", SERVICES[name])
    assert f"service {SERVICES[name].rsplit('.', 1)[1]}" in described and "rpc " in described
    health = json.loads(grpcurl("-d", json.dumps({"service": SERVICES[name]}), addr, "grpc.health.v1.Health/Check"))
    assert health["status"] == "SERVING"


def test_inference_route(stack: Stack) -> None:
    addr = stack.children["inference"].address
    method = "vantage.inference.v1.InferenceService/Route"
    chatgpt = json.loads(grpcurl("-d", '{"model":"chatgpt"}', addr, method))
    assert chatgpt["provider"] == "brightdata_chatgpt" and chatgpt["supports_batching"] is True
    assert "Bright Data" in chatgpt["provider_name"] and "ChatGPT" in chatgpt["provider_name"]
    gpt = json.loads(grpcurl("-d", '{"model":"gpt-4.1"}', addr, method))
    assert gpt["provider"] == "openai"
    bad = subprocess.run(
        [GRPCURL, "-plaintext", "-d", '{"model":"llama-9000"}', addr, method], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode != 0 and "InvalidArgument" in bad.stderr and "llama-9000" in bad.stderr


def test_inference_list_models_shows_price_status_and_shutdown_date_of_each_model(stack: Stack) -> None:
    """Issue 18 acceptance: `grpcurl … InferenceService/ListModels` shows the model catalogue (binding names)."""
    from shared.catalogue import load_catalogue

    addr = stack.children["inference"].address
    out = json.loads(grpcurl("-emit-defaults", addr, "vantage.inference.v1.InferenceService/ListModels"))
    models = {m["model"]: m for m in out["models"]}
    assert list(models) == [m.id for m in load_catalogue().models]
    binding = {"input_usd_per_million_tokens", "output_usd_per_million_tokens", "web_search_usd_per_call", "status",
               "shutdown_date", "successor", "source_url", "checked_on"}
    assert all(binding <= set(m) for m in models.values())
    assert {k: models["claude-opus-4-5"][k] for k in ("input_usd_per_million_tokens", "output_usd_per_million_tokens",
                                                       "status")} == {"input_usd_per_million_tokens": 5,
                                                                      "output_usd_per_million_tokens": 25,
                                                                      "status": "active"}
    sonnet4 = models["claude-sonnet-4"]
    assert (sonnet4["status"], sonnet4["shutdown_date"], sonnet4["successor"]) == ("retired", "2026-06-15",
                                                                                    "claude-sonnet-5")
    assert models["gpt-4.1"]["shutdown_date"] == "2027-01-14" and models["gpt-4.1"]["checked_on"] == "2026-12-02"
    refused = subprocess.run(
        [GRPCURL, "-plaintext", "-d", '{"model":"claude-sonnet-4","messages":[{"role":"user","content":"hi"}]}',
         addr, "vantage.inference.v1.InferenceService/Complete"], capture_output=True, text=True, timeout=60,
    )
    assert refused.returncode != 0 and "FailedPrecondition" in refused.stderr and "claude-sonnet-5" in refused.stderr


def test_search_company(stack: Stack) -> None:
    out = json.loads(
        grpcurl(
            "-d",
            '{"company":"Together AI","domain":"together.ai"}',
            stack.children["search"].address,
            "vantage.search.v1.SearchService/SearchCompany",
        )
    )
    scores = [r["score"] for r in out["results"]]
    assert scores and scores == sorted(scores, reverse=True) and min(scores) >= 0.4
    assert out["credits"] == 2 and out["cost_usd"] == pytest.approx(0.016)
    assert "together.ai" in out["llm_context"]


def test_extraction_extract_on_a_pasted_answer(stack: Stack) -> None:
    req = {
        "answer_markdown": ANSWER,
        "org": {"name": "Together AI", "domain": "together.ai"},
        "known_competitors": ["CoreWeave", "Lambda"],
    }
    out = json.loads(
        grpcurl("-d", json.dumps(req), stack.children["extraction"].address, "vantage.extraction.v1.ExtractionService/Extract")
    )
    ev = out["org_eval"]
    assert ev["mentioned"] is True and ev["rank"] == 2 and ev["mention_count"] >= 1
    names = {c["name"] for c in out["competitors"]}
    assert "CoreWeave" in names and any(n.startswith("Lambda") for n in names)
    assert not any("Lambda" in n for n in names - {next(n for n in names if n.startswith("Lambda"))})
    urls = [c["url"] for c in out["citations"]]
    assert "https://www.coreweave.com" in urls[0] and "utm_source" not in urls[0]
    assert any(c.get("owned") for c in out["citations"])


def test_orchestrator_list_runs(stack: Stack) -> None:
    out = json.loads(grpcurl("-d", '{"page_size": 5}', stack.children["orchestrator"].address, "vantage.orchestrator.v1.OrchestratorService/ListRuns"))
    assert isinstance(out.get("runs", []), list)
