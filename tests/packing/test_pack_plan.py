"""Packing without a network: request validation, strict schemas, pack planning (count and token budget), prompts,
answer validation and item cache keys (services/inference/packing.py)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from pack_testkit import INSTRUCTION, ITEM_SCHEMA, org

from services.inference.packing import (
    PackInvalid,
    PackItem,
    PackSpec,
    build_spec,
    check_pack,
    estimate_tokens,
    item_key,
    item_request,
    pack_request,
    parse_items,
    plan_packs,
    strict_schema,
)
from shared.config import Settings
from shared.errors import InvalidArgument

SETTINGS = Settings(_env_file=None)


def spec(**kw: Any) -> PackSpec:
    args: dict[str, Any] = {"model": "gpt-4.1-mini", "instruction": INSTRUCTION, "item_json_schema": json.dumps(ITEM_SCHEMA)}
    return build_spec(SETTINGS, **(args | kw))


def items(n: int) -> list[PackItem]:
    return [PackItem(f"item-{i}", org(i)) for i in range(n)]


# --- planning ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "packs"), [(0, 0), (1, 1), (20, 1), (21, 2), (150, 8)])
def test_items_are_packed_twenty_per_call(n: int, packs: int) -> None:
    plan = plan_packs(items(n), spec())
    assert len(plan) == packs
    assert all(1 <= len(p) <= 20 for p in plan)
    assert [it.id for p in plan for it in p] == [f"item-{i}" for i in range(n)]  # every item once, in order


def test_the_request_overrides_the_items_per_call() -> None:
    assert [len(p) for p in plan_packs(items(150), spec(max_items_per_call=50))] == [50, 50, 50]
    assert len(plan_packs(items(150), spec(max_items_per_call=7))) == 22
    custom = build_spec(Settings(_env_file=None, pack_max_items=10), model="m", instruction="x",
                        item_json_schema=json.dumps(ITEM_SCHEMA))
    assert len(plan_packs(items(150), custom)) == 15


def test_a_pack_closes_before_its_estimated_prompt_exceeds_the_token_budget() -> None:
    s = build_spec(Settings(_env_file=None, pack_max_input_tokens=3_000), model="m", instruction=INSTRUCTION,
                   item_json_schema=json.dumps(ITEM_SCHEMA))
    big = [PackItem(f"b{i}", {"notes": "x" * 2_000}) for i in range(20)]  # ≈ 500 tokens each
    plan = plan_packs(big, s)
    assert len(plan) > 1 and all(len(p) < 20 for p in plan)
    for p in plan:
        req = pack_request(s, p)
        chars = sum(len(m.content) for m in req.messages) + len(json.dumps(req.json_schema))
        assert estimate_tokens(chars) <= 3_000
    # An item larger than the whole budget still gets asked: alone.
    huge = [PackItem("h", {"notes": "y" * 20_000}), *big[:2]]
    assert [len(p) for p in plan_packs(huge, s)][:1] == [1]


# --- the request ------------------------------------------------------------------------------------------------


def test_strict_schema_requires_every_property_and_forbids_others() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string"},
            "people": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "string"}}}},
            "ref": {"$ref": "#/$defs/thing"},
        },
        "required": ["a"],
        "$defs": {"thing": {"type": "object", "properties": {"x": {"type": "integer"}}}},
    }
    out = strict_schema(schema)
    assert out["required"] == ["a", "people", "ref"] and out["additionalProperties"] is False
    person = out["properties"]["people"]["items"]
    assert person["required"] == ["n"] and person["additionalProperties"] is False
    assert out["$defs"]["thing"]["required"] == ["x"]
    assert schema["required"] == ["a"] and "additionalProperties" not in schema  # the input is not changed

    s = spec(item_json_schema=json.dumps(schema))
    pack_schema = s.pack_schema()
    assert pack_schema["type"] == "object" and pack_schema["required"] == ["items"]  # an object root (strict mode)
    assert "$defs" in pack_schema and "$defs" not in pack_schema["properties"]["items"]["items"]
    element = pack_schema["properties"]["items"]["items"]
    assert element["required"][0] == "id" and element["additionalProperties"] is False
    jsonschema.Draft202012Validator.check_schema(pack_schema)
    ok = {"items": [{"id": "1", "a": "x", "people": [{"n": "p"}], "ref": {"x": 1}}]}
    jsonschema.validate(ok, pack_schema)


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"instruction": "  "}, "instruction"),
        ({"item_json_schema": ""}, "item_json_schema"),
        ({"item_json_schema": "{nope"}, "item_json_schema"),
        ({"item_json_schema": "[]"}, "item_json_schema"),
        ({"item_json_schema": json.dumps({"type": "string"})}, "item_json_schema"),
        ({"item_json_schema": json.dumps({"type": "object", "properties": {}})}, "item_json_schema"),
        ({"item_json_schema": json.dumps({"type": "object", "properties": {"id": {"type": "string"}}})},
         "item_json_schema"),
        ({"item_json_schema": json.dumps({"type": "object", "properties": {"a": {"type": "nope"}}})},
         "item_json_schema"),
        ({"model": ""}, "model"),
        ({"location": "USA"}, "location"),
        ({"max_items_per_call": -1}, "max_items_per_call"),
    ],
)
def test_bad_requests_name_the_field(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as ei:
        spec(**kw)
    assert field in [f for f, _ in ei.value.violations]


def test_ids_must_be_unique_and_bad_inputs_fail_their_item_only() -> None:
    with pytest.raises(InvalidArgument) as ei:
        parse_items([("a", "{}"), ("a", "{}")])
    assert ei.value.violations[0][0] == "items[1].id"
    with pytest.raises(InvalidArgument):
        parse_items([("", "{}")])
    ok, failures = parse_items([("a", '{"name": "x"}'), ("b", "{not json"), ("c", "")])
    assert [i.id for i in ok] == ["a"]
    assert failures["b"].code == failures["c"].code == "INVALID_ARGUMENT"
    assert "not valid JSON" in failures["b"].message


def test_prompts_carry_the_items_and_scale_the_output_allowance() -> None:
    s = spec()
    pack = items(20)
    req = pack_request(s, pack)
    system, user = req.messages
    assert INSTRUCTION in system.content and "(20 in all)" in system.content
    block = user.content.split("<items>", 1)[1].split("</items>", 1)[0]
    assert [e["id"] for e in json.loads(block)] == [i.id for i in pack]
    assert req.max_output_tokens == 20 * SETTINGS.pack_output_tokens_per_item
    assert req.json_schema == s.pack_schema() and req.schema_name == "items"
    one = item_request(s, pack[0])
    assert "<item>" in one.messages[1].content and one.json_schema == s.item_response_schema()
    assert one.max_output_tokens == SETTINGS.max_output_tokens


# --- validation of answers --------------------------------------------------------------------------------------


def _answer(ids: list[str]) -> dict[str, Any]:
    return {"items": [{"id": i, "canonical": i, "variations": [i], "segment": "lab", "employees": 3, "public": False}
                      for i in ids]}


VALIDATOR = jsonschema.Draft202012Validator(spec().element_schema())
IDS = ["a", "b", "c"]


def test_a_valid_pack_maps_results_by_id_whatever_their_order() -> None:
    answer = _answer(["c", "a", "b"])
    out = check_pack(answer, IDS, VALIDATOR)
    assert set(out) == set(IDS) and out["a"]["canonical"] == "a" and "id" not in out["a"]


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ({"items": {"a": {}}}, "not an array"),
        ([], "not an array"),
        (_answer(["a", "b"]), "2 results for 3 items"),
        (_answer(["a", "b", "c", "c"]), "4 results for 3 items"),
        (_answer(["a", "b", "x"]), "'x', which was not asked for"),
        (_answer(["a", "b", "b"]), "'b' answered more than once"),
        ({"items": [*_answer(["a", "b"])["items"], {"id": "c"}]}, "does not match the item schema"),
        ({"items": [*_answer(["a", "b"])["items"], {**_answer(["c"])["items"][0], "extra": 1}]},
         "does not match the item schema"),
        ({"items": [*_answer(["a", "b"])["items"], {**_answer(["c"])["items"][0], "employees": "many"}]},
         "items[2] does not match the item schema: employees"),
    ],
)
def test_invalid_packs_are_rejected_whole(answer: Any, problem: str) -> None:
    with pytest.raises(PackInvalid, match=problem.replace("[", r"\[").replace("]", r"\]")):
        check_pack(answer, IDS, VALIDATOR)


# --- cache keys -------------------------------------------------------------------------------------------------


def test_an_item_key_depends_on_what_determines_its_answer_only() -> None:
    s = spec()
    a, a_again = PackItem("1", {"name": "Lambda"}), PackItem("other-id", {"name": "Lambda"})
    key = item_key("openai", s, a)
    assert len(key) == 64 and key == item_key("openai", s, a_again)  # not the id (nor the pack)
    assert key == item_key("openai", s, PackItem("1", json.loads('{ "name" :  "Lambda" }')))
    assert key != item_key("openai", s, PackItem("1", {"name": "Lambda Labs"}))
    assert key != item_key("anthropic", s, a)
    assert key != item_key("openai", spec(instruction="something else"), a)
    assert key != item_key("openai", spec(model="gpt-4.1"), a)
    assert key != item_key("openai", spec(location="DE"), a)
    other_schema = {**ITEM_SCHEMA, "properties": {**ITEM_SCHEMA["properties"], "hq": {"type": "string"}}}
    assert key != item_key("openai", spec(item_json_schema=json.dumps(other_schema)), a)
