"""The model catalogue in a research run, through the REAL search, inference and extraction services against the
sandbox, on SQLite and PostgreSQL: an unknown model's ledger rows are flagged ``cost_estimated`` (and priced at
``default_token_prices``), a catalogued model's are not, and a retired model is refused when the run is set up
(FAILED_PRECONDITION naming the successor) — nothing is billed for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.orchestrator.app.inputs import CsvFile
from services.orchestrator.app.jobs.base import SetupError
from services.orchestrator.app.jobs.research import ResearchOptions, create_research_run
from services.orchestrator.app.runs import Orchestrator
from services.orchestrator.clients import Clients
from services.orchestrator.store import Store, open_store
from shared.config import Settings
from shared.grpc_client import Channels

pytestmark = pytest.mark.integration


@pytest.fixture
async def env(services: Settings, db_url: str) -> AsyncIterator[tuple[Orchestrator, Store]]:
    settings = services.model_copy(update={"database_url": db_url})
    store = await open_store(db_url)
    channels = Channels(settings)
    orch = Orchestrator(store, Clients(channels, settings), settings)
    yield orch, store
    await channels.close()
    await store.close()


async def run(orch: Orchestrator, tmp_path: Path, model: str) -> str:
    csv = tmp_path / "two.csv"
    csv.write_text("company,domain\nTogether AI,together.ai\nAnthropic,anthropic.com\n")
    with CsvFile(csv) as f:
        created, _ = await create_research_run(orch, f.rows(), name="catalogue", options=ResearchOptions(model=model))
    await orch.execute(created.id)
    return created.id


async def test_unknown_model_rows_are_flagged_estimated_and_known_ones_are_not(
    env: tuple[Orchestrator, Store], tmp_path: Path
) -> None:
    orch, store = env
    unknown = await store.ledger_rows(await run(orch, tmp_path, "gpt-house-tuned"))  # routes to OpenAI; not listed
    llm = [r for r in unknown if r["kind"] == "llm"]
    assert len(llm) == 2 and all(r["cost_estimated"] for r in llm)
    assert not any(r["cost_estimated"] for r in unknown if r["kind"] == "search")
    pin, pout = orch.settings.default_token_prices
    for r in llm:
        assert float(r["usd"]) == pytest.approx((r["input_tokens"] * pin + r["output_tokens"] * pout) / 1e6)

    known = await store.ledger_rows(await run(orch, tmp_path, "gpt-5.4-mini"))
    assert [r["cost_estimated"] for r in known if r["kind"] == "llm"] == [False, False]


async def test_retired_model_is_refused_at_run_setup_naming_the_successor_and_bills_nothing(
    env: tuple[Orchestrator, Store], tmp_path: Path
) -> None:
    orch, store = env
    csv = tmp_path / "one.csv"
    csv.write_text("company,domain\nTogether AI,together.ai\n")
    with CsvFile(csv) as f:
        created, _ = await create_research_run(orch, f.rows(), name="retired",
                                                    options=ResearchOptions(model="claude-sonnet-4"))
    with pytest.raises(SetupError) as info:  # the run's Route check meets FAILED_PRECONDITION
        await orch.execute(created.id)
    msg = str(info.value)
    assert "FAILED_PRECONDITION" in msg and "retired on 2026-06-15" in msg and "use claude-sonnet-5" in msg
    assert await store.ledger_rows(created.id) == []
