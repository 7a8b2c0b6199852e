"""Bright Data Datasets v3 emulator (providers.md §2) over plain HTTP, as the inference service calls it."""

from __future__ import annotations

import httpx
import pytest
from sandbox_testkit import API_KEY, Sandbox, poll_until

from services.sandbox import CHATGPT_DATASET_ID, PERPLEXITY_DATASET_ID

CHATGPT_FIELDS = {
    "url",
    "prompt",
    "answer_text",
    "answer_text_markdown",
    "answer_html",
    "model",
    "web_search_triggered",
    "citations",
    "search_sources",
    "links_attached",
    "country",
    "prompt_sent_at",
    "index",
    "timestamp",
    "input",
}
PERPLEXITY_FIELDS = {
    "url",
    "prompt",
    "answer_text",
    "answer_text_markdown",
    "answer_html",
    "citations",
    "sources",
    "web_search_query",
    "related_prompts",
    "links_attached",
    "timestamp",
    "input",
    "index",
}
QUESTIONS = [
    "What are the best GPU cloud providers for training LLMs?",
    "Which platforms offer serverless inference for open-source models?",
    "Where can I fine-tune Llama on my own data?",
    "Best LLM API for an enterprise RAG chatbot?",
    "Which AI video generation tools do filmmakers use?",
]


def prompts(n: int, country: str = "US", site: str = "https://chatgpt.com/") -> list[dict]:
    return [
        {
            "url": site,
            "prompt": f"{QUESTIONS[i % len(QUESTIONS)]} (variant {i})",
            "country": country,
            "index": i + 1,
        }
        for i in range(n)
    ]


@pytest.fixture
async def bd(sandbox: Sandbox):
    async with httpx.AsyncClient(
        base_url=sandbox.urls["brightdata"] + "/datasets/v3",
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    ) as client:
        yield client


async def trigger(bd: httpx.AsyncClient, dataset: str, body) -> str:
    r = await bd.post("/trigger", params={"dataset_id": dataset, "include_errors": "true"}, json=body)
    assert r.status_code == 200, r.text
    return r.json()["snapshot_id"]


async def wait_ready(bd: httpx.AsyncClient, sid: str) -> dict:
    async def ready() -> dict | None:
        p = (await bd.get(f"/progress/{sid}")).json()
        assert p["status"] in ("starting", "running", "ready"), p
        return p if p["status"] == "ready" else None

    return await poll_until(ready, within=10, interval=0.05)


async def test_batch_of_20_one_snapshot_202_then_records(sandbox: Sandbox, bd: httpx.AsyncClient) -> None:
    inputs = prompts(20)
    sid = await trigger(bd, CHATGPT_DATASET_ID, inputs)
    assert sid.startswith("s_")
    building = await bd.get(f"/snapshot/{sid}", params={"format": "json"})
    assert building.status_code == 202
    assert building.json() == {"status": "building", "message": "Snapshot is not ready yet, try again in 10s"}
    progress = await wait_ready(bd, sid)
    assert progress["snapshot_id"] == sid and progress["dataset_id"] == CHATGPT_DATASET_ID
    assert progress["records"] == 20 and progress["errors"] == 0
    r = await bd.get(f"/snapshot/{sid}", params={"format": "json"})
    assert r.status_code == 200
    records = r.json()
    assert [rec["index"] for rec in records] == list(range(1, 21))
    for rec, inp in zip(records, inputs, strict=True):
        assert CHATGPT_FIELDS <= set(rec), CHATGPT_FIELDS - set(rec)
        assert rec["input"] == inp and rec["prompt"] == inp["prompt"]
        assert rec["answer_text_markdown"].strip() and rec["web_search_triggered"] is True
        assert all({"title", "url", "position"} <= set(c) for c in rec["citations"])
        assert all({"url", "text", "position"} <= set(link) for link in rec["links_attached"])
    stats = await sandbox.stats()
    assert stats["brightdata"]["triggers"] == {CHATGPT_DATASET_ID: 1}
    assert stats["brightdata"]["inputs"] == {CHATGPT_DATASET_ID: 20}
    assert stats["brightdata"]["records_billed"] == {CHATGPT_DATASET_ID: 20}
    # Downloading again bills nothing more.
    await bd.get(f"/snapshot/{sid}")
    assert (await sandbox.stats())["brightdata"]["records_billed"] == {CHATGPT_DATASET_ID: 20}


async def test_perplexity_dataset_records_and_wrapped_body(bd: httpx.AsyncClient) -> None:
    inputs = prompts(3, "GB", "https://www.perplexity.ai")
    sid = await trigger(bd, PERPLEXITY_DATASET_ID, {"input": inputs})
    await wait_ready(bd, sid)
    records = (await bd.get(f"/snapshot/{sid}")).json()
    assert len(records) == 3
    for rec in records:
        assert PERPLEXITY_FIELDS <= set(rec), PERPLEXITY_FIELDS - set(rec)
        assert all({"domain", "position", "title", "url"} <= set(c) for c in rec["citations"])
        for n in range(1, len(rec["citations"]) + 1):
            assert f"[{n}]" in rec["answer_text_markdown"]
    # The Perplexity dataset rejects ChatGPT-only fields (§2.3).
    bad = await bd.post(
        "/trigger", params={"dataset_id": PERPLEXITY_DATASET_ID}, json=[{**inputs[0], "web_search": True}]
    )
    assert bad.status_code == 400 and bad.json()["code"] == "validation_error"
    assert bad.json()["errors"] == [["web_search", "field is not allowed for this dataset"]]


async def test_error_records_keep_input_and_timestamp(sandbox: Sandbox, bd: httpx.AsyncClient) -> None:
    await sandbox.configure({"brightdata_error_rate": 0.35})
    sid = await trigger(bd, PERPLEXITY_DATASET_ID, prompts(20, "US", "https://www.perplexity.ai"))
    progress = await wait_ready(bd, sid)
    records = (await bd.get(f"/snapshot/{sid}")).json()
    errors = [r for r in records if "error" in r]
    assert 0 < len(errors) < 20 and progress["errors"] == len(errors)
    for e in errors:
        assert set(e) == {"index", "input", "timestamp", "error", "error_code"}
    assert len(records) == 20 and [r["index"] for r in records] == list(range(1, 21))
    stats = await sandbox.stats()
    assert stats["brightdata"]["error_records"] == {PERPLEXITY_DATASET_ID: len(errors)}
    assert stats["brightdata"]["records_billed"] == {PERPLEXITY_DATASET_ID: 20 - len(errors)}


async def test_count_mismatch_knob(sandbox: Sandbox, bd: httpx.AsyncClient) -> None:
    await sandbox.configure({"brightdata_drop_records": 2})
    sid = await trigger(bd, CHATGPT_DATASET_ID, prompts(20))
    await wait_ready(bd, sid)
    records = (await bd.get(f"/snapshot/{sid}")).json()
    indexes = [r["index"] for r in records]
    assert len(records) == 18 and indexes == sorted(indexes) and len(set(range(1, 21)) - set(indexes)) == 2


async def test_cancel(sandbox: Sandbox, bd: httpx.AsyncClient) -> None:
    await sandbox.configure({"brightdata_duration_s": 60})
    sid = await trigger(bd, CHATGPT_DATASET_ID, prompts(5))
    r = await bd.post(f"/snapshot/{sid}/cancel")
    assert r.status_code == 200 and r.text == "OK" and r.headers["content-type"].startswith("text/plain")
    p = (await bd.get(f"/progress/{sid}")).json()
    assert p["status"] == "failed" and "cancel" in p["error_message"]
    assert (await bd.get(f"/snapshot/{sid}")).status_code == 400
    missing = await bd.post("/snapshot/s_doesnotexist/cancel")
    assert missing.status_code == 404 and missing.text == "Snapshot does not exist"
    assert (await bd.get("/snapshot/s_doesnotexist")).text == "Snapshot does not exist"
    stats = await sandbox.stats()
    assert stats["brightdata"]["cancels"] == 1 and stats["brightdata"]["running"] == {}


async def test_running_cap_429(sandbox: Sandbox, bd: httpx.AsyncClient) -> None:
    await sandbox.configure({"brightdata_duration_s": 60, "brightdata_max_running": 2})
    await trigger(bd, CHATGPT_DATASET_ID, prompts(1))
    await trigger(bd, CHATGPT_DATASET_ID, prompts(1))
    r = await bd.post("/trigger", params={"dataset_id": CHATGPT_DATASET_ID}, json=prompts(1))
    assert r.status_code == 429 and "too many running jobs" in r.json()["error"]
    # The cap is per dataset.
    await trigger(bd, PERPLEXITY_DATASET_ID, prompts(1, site="https://www.perplexity.ai"))
    stats = await sandbox.stats()
    assert stats["brightdata"]["running"] == {CHATGPT_DATASET_ID: 2, PERPLEXITY_DATASET_ID: 1}
    assert stats["brightdata"]["rejected"] == {CHATGPT_DATASET_ID: 1}
    assert stats["brightdata"]["triggers"] == {CHATGPT_DATASET_ID: 2, PERPLEXITY_DATASET_ID: 1}
    assert stats["endpoints"]["brightdata.trigger"]["status"] == {"200": 3, "429": 1}


async def test_trigger_validation_and_auth(sandbox: Sandbox, bd: httpx.AsyncClient) -> None:
    r = await bd.post(
        "/trigger",
        params={"dataset_id": CHATGPT_DATASET_ID},
        json=[{"url": "https://chatgpt.com/", "prompt": "x" * 5000}],
    )
    body = r.json()  # the documented validation_error body (docs products/scrapers/error-codes)
    assert r.status_code == 400 and body["error"] == "Invalid input provided" and body["code"] == "validation_error"
    assert [f for f, _ in body["errors"]] == ["prompt"] and "4096" in body["errors"][0][1]
    r = await bd.post(
        "/trigger",
        params={"dataset_id": CHATGPT_DATASET_ID},
        json=[{"url": "https://example.com/", "prompt": "hi", "country": "USA"}],
    )
    assert r.status_code == 400 and [f for f, _ in r.json()["errors"]] == ["url", "country"]
    r = await bd.post("/trigger", params={"dataset_id": "gd_unknown"}, json=prompts(1))
    assert r.status_code == 404 and r.text == "Collector not found"
    r = await bd.post("/trigger", params={"dataset_id": CHATGPT_DATASET_ID}, json=[])
    assert r.status_code == 400 and r.text == "No data to trigger"
    r = await bd.post("/trigger", params={"dataset_id": CHATGPT_DATASET_ID}, content=b"[{not json")
    assert r.status_code == 400 and r.json()["code"] == "parse_error"
    async with httpx.AsyncClient() as anon:
        r = await anon.post(
            sandbox.urls["brightdata"] + "/datasets/v3/trigger",
            params={"dataset_id": CHATGPT_DATASET_ID},
            json=prompts(1),
        )
        assert r.status_code == 401 and r.text == "Credentials are missing"
    assert (await sandbox.stats())["brightdata"]["triggers"] == {}


async def test_scrape_sync_and_handoff(sandbox: Sandbox, bd: httpx.AsyncClient) -> None:
    r = await bd.post("/scrape", params={"dataset_id": CHATGPT_DATASET_ID}, json=prompts(2))
    assert r.status_code == 200 and [rec["index"] for rec in r.json()] == [1, 2]
    await sandbox.configure({"brightdata_duration_s": 60, "brightdata_scrape_timeout_s": 0.1})
    r = await bd.post("/scrape", params={"dataset_id": CHATGPT_DATASET_ID}, json=prompts(2))
    assert r.status_code == 202 and r.json()["snapshot_id"].startswith("s_")


async def test_answers_are_deterministic_per_prompt_and_country(bd: httpx.AsyncClient) -> None:
    same = [{"url": "https://chatgpt.com/", "prompt": QUESTIONS[0], "country": "US"}] * 2
    other = [{"url": "https://chatgpt.com/", "prompt": QUESTIONS[0], "country": "GB"}]
    sid = await trigger(bd, CHATGPT_DATASET_ID, same + other)
    await wait_ready(bd, sid)
    a, b, c = (await bd.get(f"/snapshot/{sid}")).json()
    assert a["answer_text_markdown"] == b["answer_text_markdown"]
    assert a["answer_text_markdown"] != c["answer_text_markdown"]


async def test_25_429s_in_the_window_block_every_call_until_reset(sandbox: Sandbox, bd: httpx.AsyncClient) -> None:
    # docs.brightdata.com/products/scrapers/error-codes: an IP that receives >= 25 429s within 5 minutes is blocked
    # for every API request. The block counts every 429 sent on a Bright Data path, injected or not.
    sid = await trigger(bd, CHATGPT_DATASET_ID, prompts(1))
    for i in range(24):
        r = await bd.get(f"/progress/{sid}", headers={"X-Sandbox-Fault": "429"})
        assert r.status_code == 429, i
    assert (await bd.get(f"/progress/{sid}")).status_code == 200  # 24: not blocked yet
    assert (await bd.get(f"/progress/{sid}", headers={"X-Sandbox-Fault": "429"})).status_code == 429  # the 25th
    for call in (bd.get(f"/progress/{sid}"), bd.get(f"/snapshot/{sid}"), bd.get("/snapshots"),
                 bd.post(f"/snapshot/{sid}/cancel"),
                 bd.post("/trigger", params={"dataset_id": CHATGPT_DATASET_ID}, json=prompts(1))):
        r = await call
        assert r.status_code == 403 and "blocked" in r.json()["error"]
    limited = (await sandbox.stats())["brightdata"]["rate_limited"]
    assert limited == {"total": 25, "in_window": 25, "max_in_window": 25, "window_s": 300.0, "blocked": True}
    (await sandbox.admin.post("/_sandbox/reset")).raise_for_status()  # "until support unblocks it"
    assert (await bd.get("/snapshots")).status_code == 200


async def test_the_block_window_and_threshold_are_knobs(sandbox: Sandbox, bd: httpx.AsyncClient) -> None:
    await sandbox.configure({"brightdata_block_after_429s": 3, "brightdata_block_window_s": 0.2})
    sid = await trigger(bd, CHATGPT_DATASET_ID, prompts(1))
    for _ in range(2):
        assert (await bd.get(f"/progress/{sid}", headers={"X-Sandbox-Fault": "429"})).status_code == 429
    await poll_until(lambda: _window_empty(sandbox), within=5)  # the first two left the window
    for _ in range(2):
        assert (await bd.get(f"/progress/{sid}", headers={"X-Sandbox-Fault": "429"})).status_code == 429
    assert (await bd.get(f"/progress/{sid}")).status_code == 200  # never 3 within 0.2 s
    await sandbox.configure({"brightdata_block_after_429s": 0})  # 0 = never block
    for _ in range(5):
        assert (await bd.get(f"/progress/{sid}", headers={"X-Sandbox-Fault": "429"})).status_code == 429
    assert (await bd.get(f"/progress/{sid}")).status_code == 200


async def _window_empty(sandbox: Sandbox) -> bool:
    return (await sandbox.stats())["brightdata"]["rate_limited"]["in_window"] == 0


async def test_snapshot_list_filters_by_from_date_and_pages(sandbox: Sandbox, bd: httpx.AsyncClient) -> None:
    first = await trigger(bd, CHATGPT_DATASET_ID, prompts(1))
    listed = (await bd.get("/snapshots", params={"dataset_id": CHATGPT_DATASET_ID})).json()
    since = listed[0]["created"]
    later = [await trigger(bd, CHATGPT_DATASET_ID, prompts(1)) for _ in range(3)]
    r = await bd.get("/snapshots", params={"dataset_id": CHATGPT_DATASET_ID, "from_date": "2999-01-01T00:00:00Z"})
    assert r.json() == []
    r = await bd.get("/snapshots", params={"dataset_id": CHATGPT_DATASET_ID, "from_date": since})
    assert [s["id"] for s in r.json()] == [first, *later]
    pages = [(await bd.get("/snapshots", params={"dataset_id": CHATGPT_DATASET_ID, "skip": k, "limit": 2})).json()
             for k in (0, 2, 4)]
    assert [[s["id"] for s in p] for p in pages] == [[first, later[0]], later[1:], []]
    r = await bd.get("/snapshots", params={"dataset_id": CHATGPT_DATASET_ID, "limit": 5001})
    assert r.status_code == 400 and r.json()["errors"][0][0] == "limit"


async def test_custom_output_fields_on_trigger_is_a_knob(sandbox: Sandbox, bd: httpx.AsyncClient) -> None:
    params = {"dataset_id": CHATGPT_DATASET_ID, "custom_output_fields": "answer_text|citations"}
    r = await bd.post("/trigger", params=params, json=prompts(1))
    assert r.status_code == 200
    sid = r.json()["snapshot_id"]
    await wait_ready(bd, sid)
    (rec,) = (await bd.get(f"/snapshot/{sid}")).json()
    assert "answer_html" not in rec and {"answer_text", "citations", "index", "input"} <= set(rec)
    await sandbox.configure({"brightdata_trigger_output_fields": False})
    r = await bd.post("/trigger", params=params, json=prompts(1))
    assert r.status_code == 400 and r.json()["errors"] == [["custom_output_fields", "This field is not allowed"]]


async def test_answer_html_can_be_as_large_as_live_records(sandbox: Sandbox, bd: httpx.AsyncClient) -> None:
    await sandbox.configure({"brightdata_answer_html_bytes": 2_500_000})
    sid = await trigger(bd, CHATGPT_DATASET_ID, prompts(2))
    await wait_ready(bd, sid)
    r = await bd.get(f"/snapshot/{sid}")
    assert all(2_500_000 <= len(rec["answer_html"]) < 2_600_000 for rec in r.json())
    assert len(r.content) > 5_000_000


async def test_progress_status_override(sandbox: Sandbox, bd: httpx.AsyncClient) -> None:
    await sandbox.configure({"brightdata_progress_status": "collecting", "brightdata_duration_s": 60})
    sid = await trigger(bd, CHATGPT_DATASET_ID, prompts(1))
    assert (await bd.get(f"/progress/{sid}")).json()["status"] == "collecting"
