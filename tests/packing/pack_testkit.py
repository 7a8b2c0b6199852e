"""Helpers shared by the packing tests (imported by name, like tests/inference/inference_testkit.py)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from vantage.inference.v1 import inference_pb2 as pb

CHAT = "openai.chat_completions"

#: Item schema of the tests: what a name-variation / competitor-merging enrichment asks for.
ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "canonical": {"type": "string"},
        "variations": {"type": "array", "items": {"type": "string"}},
        "segment": {"type": "string", "enum": ["cloud", "lab", "other"]},
        "employees": {"type": "integer", "minimum": 1, "maximum": 100000},
        "public": {"type": "boolean"},
    },
}
INSTRUCTION = "Give the organisation's canonical name, the ways its name is written, its segment and head-count."


def org(i: int) -> dict[str, Any]:
    """The input of item ``i``: a distinct organisation."""
    return {"name": f"Org {i} Labs", "domain": f"org{i}.example"}


def batch(
    n: int, *, start: int = 0, model: str = "gpt-4.1-mini", schema: dict[str, Any] | None = None, **kw: Any
) -> pb.CompleteBatchRequest:
    """A packing request for items ``start .. start+n-1`` (ids "item-<i>")."""
    return pb.CompleteBatchRequest(
        model=model,
        instruction=kw.pop("instruction", INSTRUCTION),
        item_json_schema=json.dumps(schema or ITEM_SCHEMA),
        items=[pb.BatchItem(id=f"item-{i}", input_json=json.dumps(org(i))) for i in range(start, start + n)],
        **kw,
    )


async def calls(admin: httpx.AsyncClient, endpoint: str = CHAT) -> int:
    """Requests the sandbox has received at ``endpoint`` so far (its ``calls`` counter)."""
    stats = (await admin.get("/_sandbox/stats")).json()
    return int(stats["endpoints"].get(endpoint, {}).get("calls", 0))


def fields(result: pb.ItemResult) -> dict[str, Any]:
    """The item's result fields (fails the test when the item has an error)."""
    assert result.WhichOneof("outcome") == "response", f"{result.id}: {result.error}"
    value = json.loads(result.response.json)
    assert isinstance(value, dict)
    return value
