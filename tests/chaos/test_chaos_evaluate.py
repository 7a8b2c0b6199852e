"""Chaos suite, AI-visibility half: an ORG_EVAL run of 200 question runs (25 questions × chatgpt, perplexity,
gpt-4.1, claude-sonnet-5 × US, GB) through the real inference and extraction services and the orchestrator, with
the issue's fault mix injected at the sandbox on every provider they call:

    10 % 429 (with Retry-After) · 5 % 500 · 2 % hangs · 1 % malformed bodies
    on the OpenAI API (Responses + web search, and the packed name-variation call), Anthropic Messages, and Bright Data
    (trigger, progress, snapshot download)

The 3 % oversize-400 of the issue is not injected here: a question is a few dozen tokens, so a "context length
exceeded" answer cannot happen to it (the research run, whose prompts carry search results, takes that fault).

Requirements checked and printed: ≥ 99.5 % of question runs succeed; the others fail with a clear reason; nothing is
lost (every item done or failed, no ledger row left pending); cost counts only billed calls — LLM tokens in the
ledger equal what the sandbox billed for answers that reached us, and scraped records in the ledger equal the records
Bright Data billed (once per snapshot, however many times it was downloaded). A failed Bright Data trigger is
repeated only after the idempotency check (no snapshot created), so no snapshot is ever paid twice: the sandbox's
accepted triggers equal the run's snapshots.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from chaos_testkit import (
    FAULTS,
    FULL,
    MIN_SUCCESS,
    SEED,
    chaos_settings,
    delivered,
    fault_counts,
    latency,
    reason_class,
    stack,
)
from sqlalchemy import text

from services.orchestrator.app.jobs.evaluation import create_eval_run, read_questions
from services.orchestrator.app.runs import Orchestrator
from services.orchestrator.clients import Clients
from services.orchestrator.store import open_store
from shared.grpc_client import Channels
from shared.procs import Child

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(900)]

QUESTIONS_FILE = Path(__file__).resolve().parents[2] / "examples" / "questions.txt"
MODELS = ["chatgpt", "perplexity", "gpt-4.1", "claude-sonnet-5"]
LOCATIONS = ["US", "GB"]
N_QUESTIONS = 25  # × 4 models × 2 locations = 200 question runs


def questions(n: int) -> list[str]:
    base = read_questions(QUESTIONS_FILE)
    out = list(base)
    k = 0
    while len(out) < n:  # more than the example file holds: the same questions, asked for next year
        out.append(f"{base[k % len(base)].rstrip('?')} in 2027?")
        k += 1
    return out[:n]


#: This run draws only ~60 faults-or-not per endpoint, where a 1–2 % kind can be missed altogether: this seed puts a
#: hang and a malformed body on both LLM APIs, a non-429 fault on the Bright Data trigger and on the download, and a
#: hang on progress.
EVAL_SEED = SEED + 46


def sandbox_knobs() -> dict[str, Any]:
    return {
        "seed": EVAL_SEED,
        "hang_max_s": 120.0,
        "brightdata_duration_s": 5.0 if FULL else 0.3,
        "endpoints": {
            "openai": {**FAULTS, **latency("llm")},
            "anthropic": {**FAULTS, **latency("llm")},
            "brightdata": {**FAULTS, **latency("poll")},
        },
    }


async def test_chaos_evaluate_run(chaos_sandbox: Child, tmp_path: Path, quiet_logs: None) -> None:
    qs = questions(N_QUESTIONS)
    expected = len(qs) * len(MODELS) * len(LOCATIONS)
    root = f"http://{chaos_sandbox.address}"
    async with httpx.AsyncClient(base_url=root, timeout=30) as admin:
        (await admin.post("/_sandbox/reset")).raise_for_status()
        (await admin.post("/_sandbox/config", json=sandbox_knobs())).raise_for_status()
        base = chaos_settings(chaos_sandbox, tmp_path / "chaos_eval.db", batch_linger_seconds=0.5 if FULL else 0.2,
                              brightdata_poll_seconds=1.0 if FULL else 0.05)
        store = await open_store(base.database_url)
        started = time.monotonic()
        try:
            async with stack(base) as settings:
                channels = Channels(settings)
                try:
                    orch = Orchestrator(store, Clients(channels, settings), settings)
                    run, report = await create_eval_run(
                        orch, samples=1, org_name="Together AI", org_domain="together.ai", questions=qs, models=MODELS,
                        locations=LOCATIONS, known_competitors=["CoreWeave", "Lambda"], name="chaos-eval",
                    )
                    assert report.items == expected
                    summary = await orch.execute(run.id)
                finally:
                    await channels.close()
            wall = time.monotonic() - started
            items = [it async for it in store.iter_items(run.id)]
            ledger = await store.ledger_rows(run.id)
            async with store.engine.connect() as conn:
                qr = [tuple(r) for r in await conn.execute(text(
                    "SELECT model, status, error_code FROM question_runs WHERE run_id = :r"), {"r": run.id})]
                snapshots = (await conn.execute(text(
                    "SELECT count(*) FROM provider_batches WHERE run_id = :r"), {"r": run.id})).scalar()
        finally:
            await store.close()
        sandbox = (await admin.get("/_sandbox/stats")).json()

    # --- figures -------------------------------------------------------------------------------------------------
    by_status = Counter(it.status for it in items)
    done = by_status.get("done", 0)
    failed = [it for it in items if it.status == "failed"]
    reasons = Counter(reason_class(it.error) for it in failed)
    qr_status = Counter((m, s) for m, s, _ in qr)
    pending_rows = [r for r in ledger if r["status"] != "completed"]
    completed = [r for r in ledger if r["status"] == "completed"]
    led_in = sum(r["input_tokens"] for r in completed if r["unit_type"] == "tokens")
    led_out = sum(r["output_tokens"] for r in completed if r["unit_type"] == "tokens")
    led_records = sum(r["units"] for r in completed if r["unit_type"] == "records")
    led_usd = sum(float(r["usd"]) for r in completed)
    billed_in = delivered(sandbox, "openai", "prompt_tokens") + delivered(sandbox, "anthropic", "input_tokens")
    billed_out = delivered(sandbox, "openai", "completion_tokens") + delivered(sandbox, "anthropic", "output_tokens")
    billed_records = int(sandbox["billing"].get("brightdata", {}).get("records", 0))
    accepted_triggers = sum(sandbox["brightdata"]["triggers"].values())
    calls, faults = fault_counts(sandbox)
    rate = done / max(1, len(items))

    lines = [
        "",
        f"=== chaos evaluate run: {expected} question runs ({len(qs)} questions × {len(MODELS)} models × "
        f"{len(LOCATIONS)} locations), {'full' if FULL else 'CI'} size, {wall:.1f} s wall ===",
        f"fault mix: OpenAI + Anthropic + Bright Data {FAULTS}",
        f"provider calls: {calls}",
        f"faults injected: {faults}",
        f"items: {dict(by_status)}; success {rate:.2%} (≥ {MIN_SUCCESS:.1%} required)",
        f"question runs by (model, status): {dict(sorted(qr_status.items()))}",
        f"failures by reason: {dict(reasons) or '—'}",
        *(f"  {it.company}: {it.error}" for it in failed),
        f"Bright Data: {snapshots} snapshots in the run, {accepted_triggers} triggers accepted (paid) by the sandbox",
        f"ledger: {led_in} + {led_out} tokens, {led_records} records, ${led_usd:.4f}; {len(pending_rows)} rows pending",
        f"sandbox billed for answers delivered: {billed_in} + {billed_out} tokens, {billed_records} records; billed "
        f"but never delivered: {sandbox.get('billing_unread') or '—'}",
        f"run totals: ${summary.totals.cost_usd:.4f}",
    ]
    print("\n".join(lines))

    # --- requirements --------------------------------------------------------------------------------------------
    assert summary.run.status == "completed", summary.run.error
    assert len(items) == expected and done + len(failed) == expected, by_status  # nothing lost
    assert len(qr) == expected
    assert rate >= MIN_SUCCESS, lines
    for it in failed:  # the rest fail with a clear reason
        assert it.error and ": " in it.error and len(it.error) > 20, it.error
    assert not pending_rows, pending_rows[:5]
    assert (led_in, led_out) == (billed_in, billed_out), lines
    assert led_records == billed_records, lines
    assert accepted_triggers == snapshots, lines  # no snapshot paid twice
    assert faults.get("brightdata.trigger") or faults.get("brightdata.progress") or faults.get("brightdata.snapshot")
