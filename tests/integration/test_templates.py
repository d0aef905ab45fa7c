"""Metadata templates: definition, versions, and validation of every write that names one."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.support.nodeproc import ADMIN, Node, record, url_value

# Run against both store backends (PostgreSQL: a database of this module's own).
STORE_BACKENDS = ("sqlite", "postgresql")

_n = itertools.count()
PREFIX = "88.118.40"
TEMPLATE = {
    "version": "1.0",
    "fields": [
        {"index": 2000, "type": "productName", "dataType": "string", "required": True, "minLength": 1, "maxLength": 16},
        {"index": 2001, "type": "weightKg", "dataType": "number"},
        {"index": 2002, "type": "made", "dataType": "date", "required": True},
        {"index": 2003, "type": "grade", "dataType": "enum", "choices": ["A", "B"]},
        {"index": 2004, "type": "manual", "dataType": "url"},
        {"index": 2005, "type": "pieces", "dataType": "integer"},
        {"index": 2006, "type": "sealed", "dataType": "datetime"},
    ],
}


def uses(name: str) -> dict[str, Any]:
    return {"index": 1001, "type": "HS_TEMPLATE", "data": name}


def field(index: int, vtype: str, data: str) -> dict[str, Any]:
    return {"index": index, "type": vtype, "data": data}


def good() -> list[dict[str, Any]]:
    return [uses("motor"), field(2000, "productName", "Motor M3"), field(2002, "made", "2026-11-27")]


@pytest.fixture(scope="module", autouse=True)
def motor_template(node: Node) -> None:
    reply = node.put(f"/api/templates/{PREFIX}/motor", TEMPLATE, auth=ADMIN)
    assert reply.status == 201, reply.body


def put(node: Node, values: list[dict[str, Any]]) -> tuple[int, dict[str, Any], str]:
    handle = f"{PREFIX}/T{next(_n)}"
    reply = node.put("/api/handles/" + handle, record(*values), auth=ADMIN)
    return reply.status, reply.json, handle


def test_template_can_be_read_and_listed(node: Node) -> None:
    got = node.get(f"/api/templates/{PREFIX}/motor").json
    assert got["version"] == "1.0" and got["fields"][0]["index"] == 2000 and got["fields"][0]["required"]
    listed = node.get(f"/api/templates/{PREFIX}").json["templates"]
    assert {"name": "motor", "version": "1.0"} in listed


def test_conforming_record_is_accepted(node: Node) -> None:
    extra = [
        field(2001, "weightKg", "12.5"),
        field(2003, "grade", "A"),
        field(2004, "manual", "https://docs.example/m3"),
        field(2005, "pieces", "4"),
        field(2006, "sealed", "2026-11-27T08:00:00Z"),
        url_value(1, "https://x.example/"),
    ]
    status, body, _ = put(node, good() + extra)
    assert status == 201, body


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ([uses("motor"), field(2002, "made", "2026-11-27")], ["required field productName"]),
        (good()[:2], ["required field made"]),
        ([*good(), field(2001, "weightKg", "heavy")], ["weightKg", "number"]),
        ([*good(), field(2003, "grade", "C")], ["grade", "one of A, B"]),
        ([*good(), field(2004, "manual", "ftp://x")], ["manual", "url"]),
        ([*good(), field(2005, "pieces", "4.5")], ["pieces", "integer"]),
        ([*good(), field(2006, "sealed", "yesterday")], ["sealed", "datetime"]),
        ([uses("motor"), field(2000, "productName", "x" * 17), field(2002, "made", "2026-11-27")], ["longer than 16"]),
        ([uses("motor"), field(2000, "productName", ""), field(2002, "made", "2026-11-27")], ["shorter than 1"]),
        ([uses("motor"), field(2000, "wrongType", "M3"), field(2002, "made", "2026-11-27")], ["must have type"]),
        ([*good(), field(2999, "extra", "?")], ["index 2999 is not a field"]),
        ([uses("nosuch"), field(2000, "productName", "M3")], ["nosuch is not defined"]),
        ([uses("motor@9.9"), *good()[1:]], ["motor@9.9 is not defined"]),
    ],
)
def test_violations_are_400_code_202_and_nothing_written(node: Node, values: list[Any], words: list[str]) -> None:
    status, body, handle = put(node, values)
    assert (status, body["responseCode"]) == (400, 202), body
    for word in words:
        assert word in body["message"]
    assert node.get("/api/handles/" + handle).status == 404


def test_every_violation_is_listed(node: Node) -> None:
    status, body, _ = put(node, [uses("motor"), field(2003, "grade", "Z")])
    assert status == 400
    assert "productName" in body["message"] and "made" in body["message"] and "grade" in body["message"]


def test_value_updates_are_checked_against_the_merged_record(node: Node) -> None:
    status, _, handle = put(node, good())
    assert status == 201
    bad = node.put(f"/api/handles/{handle}?index=2001", record(field(2001, "weightKg", "n/a")), auth=ADMIN)
    assert bad.status == 400
    removal = node.delete(f"/api/handles/{handle}?index=2000", auth=ADMIN)
    assert removal.status == 400 and "productName" in removal.json["message"]
    assert len(node.get("/api/handles/" + handle).json["values"]) == 3


def test_versions_coexist_and_are_named_explicitly(node: Node) -> None:
    v2 = {"version": "2.0", "fields": [{"index": 2000, "type": "productName", "dataType": "string", "required": True}]}
    assert node.put(f"/api/templates/{PREFIX}/motor", v2, auth=ADMIN).status == 201
    status, body, _ = put(node, [uses("motor@2.0"), field(2000, "productName", "M4")])
    assert status == 201, body
    status, _, _ = put(node, [uses("motor@1.0"), field(2000, "productName", "M4")])
    assert status == 400
    assert node.get(f"/api/templates/{PREFIX}/motor?version=1.0").json["version"] == "1.0"
    assert node.delete(f"/api/templates/{PREFIX}/motor?version=2.0", auth=ADMIN).json["deleted"] == 1


def test_node_wide_templates_apply_under_the_node_prefix(node: Node) -> None:
    spec = {"version": "1", "fields": [{"index": 2000, "type": "sku", "dataType": "string", "required": True}]}
    assert node.put("/api/templates/88.118/basic", spec, auth=ADMIN).status == 201
    handle = "88.118.41.2/item"
    missing = node.put("/api/handles/" + handle, record(uses("basic")), auth=ADMIN)
    assert missing.status == 400 and "sku" in missing.json["message"]
    ok = node.put("/api/handles/" + handle, record(uses("basic"), field(2000, "sku", "S-1")), auth=ADMIN)
    assert ok.status == 201


def test_batch_items_are_checked_too(node: Node) -> None:
    operations = [
        {"op": "create", "handle": f"{PREFIX}/batch-ok", "values": good()},
        {"op": "create", "handle": f"{PREFIX}/batch-bad", "values": [uses("motor")]},
    ]
    reply = node.request("POST", "/api/batch", {"operations": operations}, auth=ADMIN)
    assert [r["responseCode"] for r in reply.json["results"]] == [1, 202]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"fields": []}, "version"),
        ({"version": "1", "fields": []}, "fields"),
        ({"version": "1", "fields": [{"index": 1999, "type": "x"}]}, "2000"),
        ({"version": "1", "fields": [{"index": 2000, "type": "x", "dataType": "blob"}]}, "dataType"),
        ({"version": "1", "fields": [{"index": 2000, "type": "x", "dataType": "enum"}]}, "choices"),
        ({"version": "1", "fields": [{"index": 2000, "type": "x", "minLength": 5, "maxLength": 2}]}, "minLength"),
        ({"version": "1", "fields": [{"index": 2000, "type": "x"}, {"index": 2000, "type": "y"}]}, "more than once"),
        ({"version": "1\n0", "fields": [{"index": 2000, "type": "x"}]}, "version"),
        ({"version": "v" * 129, "fields": [{"index": 2000, "type": "x"}]}, "version"),
    ],
)
def test_bad_template_definitions(node: Node, body: Any, words: str) -> None:
    reply = node.put(f"/api/templates/{PREFIX}/broken", body, auth=ADMIN)
    assert reply.status == 400 and words in reply.json["message"], reply.body
    assert node.get(f"/api/templates/{PREFIX}/broken").status == 404


def test_template_writes_need_a_prefix_admin(node: Node) -> None:
    anonymous = node.put(f"/api/templates/{PREFIX}/anon", TEMPLATE)
    assert anonymous.status == 401
    user = "88.118.40/plain-user"
    node.put("/api/handles/" + user, record({"index": 300, "type": "HS_SECKEY", "data": "pw"}), auth=ADMIN)
    denied = node.put(f"/api/templates/{PREFIX}/other", TEMPLATE, auth=(f"300:{user}", "pw"))
    assert (denied.status, denied.code) == (403, 401)
    outside = node.put("/api/templates/88.200/x", TEMPLATE, auth=ADMIN)
    assert outside.code == 301
