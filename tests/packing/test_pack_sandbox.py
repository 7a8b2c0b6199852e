"""The sandbox's answers to packed prompts (services/sandbox/packing.py), over HTTP as the OpenAI SDK sends them:
one element per item with its id echoed, schema-valid, deterministic; the pack_* faults (header and knobs)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import pytest
from pack_testkit import ITEM_SCHEMA, org

from services.inference.packing import PackItem, build_spec, item_request, pack_request
from services.sandbox.packing import canonical_name, name_variations
from shared.config import Settings

SPEC = build_spec(Settings(_env_file=None), model="gpt-4.1-mini", instruction="Describe the organisation.",
                  item_json_schema=json.dumps(ITEM_SCHEMA))
PACK = [PackItem(f"id-{i}", org(i)) for i in range(5)]


async def chat(admin: httpx.AsyncClient, req: Any, fault: str | None = None) -> Any:
    body = {
        "model": req.model,
        "messages": [{"role": m.role, "content": m.content} for m in req.messages],
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": req.schema_name, "schema": req.json_schema, "strict": True}},
    }
    headers = {"Authorization": "Bearer k", **({"X-Sandbox-Fault": fault} if fault else {})}
    r = await admin.post("/openai/v1/chat/completions", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return json.loads(r.json()["choices"][0]["message"]["content"])


@pytest.fixture
async def admin(sandbox_url: str):
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=10) as client:
        yield client


async def test_a_pack_gets_one_valid_element_per_item_deterministically(admin: httpx.AsyncClient) -> None:
    req = pack_request(SPEC, PACK)
    answer = await chat(admin, req)
    jsonschema.validate(answer, req.json_schema)
    assert [e["id"] for e in answer["items"]] == [i.id for i in PACK]
    assert answer == await chat(admin, req)  # same prompt, same answer
    first = answer["items"][0]
    assert first["canonical"] == "Org 0" and first["variations"][:2] == ["Org 0 Labs", "Org 0"]
    assert first["segment"] in ("cloud", "lab", "other") and 1 <= first["employees"] <= 100_000


async def test_a_single_item_prompt_gets_the_item_schema_at_the_root(admin: httpx.AsyncClient) -> None:
    req = item_request(SPEC, PACK[2])
    answer = await chat(admin, req)
    jsonschema.validate(answer, req.json_schema)
    packed = (await chat(admin, pack_request(SPEC, PACK)))["items"][2]
    assert answer == {k: v for k, v in packed.items() if k != "id"}  # same fields, asked alone or packed
    assert answer == await chat(admin, req, fault="pack_wrong_count")  # pack faults never touch single items


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        ("pack_wrong_count", lambda items: len(items) == 4),
        ("pack_missing_id", lambda items: len(items) == 5 and items[0]["id"] == "not-asked-id-0"),
        ("pack_duplicate_id", lambda items: len(items) == 5 and items[1]["id"] == items[0]["id"] == "id-0"),
        ("pack_not_array", lambda items: isinstance(items, dict) and set(items) == {i.id for i in PACK}),
    ],
)
async def test_the_fault_header_corrupts_packs(admin: httpx.AsyncClient, fault: str, check: Any) -> None:
    answer = await chat(admin, pack_request(SPEC, PACK), fault=fault)
    assert check(answer["items"])


async def test_the_knobs_corrupt_the_next_n_packs(admin: httpx.AsyncClient) -> None:
    before = (await admin.get("/_sandbox/config")).json()
    try:
        r = await admin.post("/_sandbox/config", json={"pack_fault": "pack_wrong_count", "pack_fault_times": 2})
        assert r.status_code == 200
        sizes = [len((await chat(admin, pack_request(SPEC, PACK)))["items"]) for _ in range(3)]
        assert sizes == [4, 4, 5]
        assert (await admin.get("/_sandbox/config")).json()["pack_fault_times"] == 0
        bad = await admin.post("/_sandbox/config", json={"pack_fault": "pack_everything"})
        assert bad.status_code == 400
    finally:
        await admin.post("/_sandbox/config", json={"pack_fault": before["pack_fault"],
                                                   "pack_fault_times": before["pack_fault_times"]})


async def test_other_structured_prompts_are_still_the_analysts(admin: httpx.AsyncClient) -> None:
    schema = {"type": "object", "properties": {"tier": {"type": "string", "enum": ["HOT", "WARM", "WATCH", "COLD"]}},
              "required": ["tier"], "additionalProperties": False}
    body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "Classify Acme: https://acme.example"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": schema}}}
    r = await admin.post("/openai/v1/chat/completions", json=body, headers={"Authorization": "Bearer k"})
    assert json.loads(r.json()["choices"][0]["message"]["content"])["tier"] in ("HOT", "WARM", "WATCH", "COLD")


def test_canonical_names_and_variations() -> None:
    assert canonical_name("Lambda Labs") == canonical_name("Lambda Cloud") == canonical_name("Lambda") == "Lambda"
    assert canonical_name("Mistral AI") == "Mistral" and canonical_name("AI") == "AI"
    assert name_variations("Amazon Web Services") == [
        "Amazon Web Services", "Amazon Web Services Inc", "AWS", "amazonwebservices"]
    assert name_variations("Lambda Labs")[:3] == ["Lambda Labs", "Lambda", "Lambda Inc"]
