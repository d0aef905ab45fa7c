"""A NUL byte in a text the node stores is bad input, not a store failure (issue #21, finding 10).

PostgreSQL's text columns cannot hold NUL, so a name, version, handle or audit text carrying one
used to reach the store, fail there and answer 503 "the store is unavailable", counted as a store
error. On both stores such a request is refused with 400 naming the field, nothing is written,
and ``idnode_store_errors_total`` does not move. Value data is bytes and may still hold NUL.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.support.nodeproc import ADMIN, Node, record, url_value

STORE_BACKENDS = ("sqlite", "postgresql")

PREFIX = "88.118.41"
TEMPLATE = {"version": "1.0", "fields": [{"index": 2000, "type": "productName", "dataType": "string"}]}
_n = itertools.count()


def fresh() -> str:
    return f"{PREFIX}/N{next(_n):05d}"


@pytest.fixture(scope="module", autouse=True)
def motor_template(node: Node) -> None:
    reply = node.put(f"/api/templates/{PREFIX}/motor", TEMPLATE, auth=ADMIN)
    assert reply.status == 201, reply.body


def uses(name: str) -> dict[str, Any]:
    return {"index": 1001, "type": "HS_TEMPLATE", "data": name}


def batch(node: Node, operations: list[Any], atomic: bool) -> Any:
    return node.request("POST", "/api/batch", {"atomic": atomic, "operations": operations}, auth=ADMIN)


def template_names(node: Node) -> list[str]:
    return [t["name"] for t in node.get(f"/api/templates/{PREFIX}").json["templates"]]


def refused(node: Node, send: Any, words: str) -> None:
    """``send()`` answers 400 naming ``words``, and the store saw no error."""
    before = node.metric("idnode_store_errors_total")
    reply = send()
    assert reply.status == 400, reply.body
    assert words in reply.json["message"], reply.json
    assert node.metric("idnode_store_errors_total") == before


def test_template_name_with_nul(node: Node) -> None:
    refused(node, lambda: node.put(f"/api/templates/{PREFIX}/mo%00tor", TEMPLATE, auth=ADMIN), "template name")
    refused(node, lambda: node.get(f"/api/templates/{PREFIX}/mo%00tor"), "template name")
    refused(node, lambda: node.delete(f"/api/templates/{PREFIX}/mo%00tor", auth=ADMIN), "template name")
    assert template_names(node) == ["motor"]


def test_template_version_with_nul(node: Node) -> None:
    body = {**TEMPLATE, "version": "2\x00"}
    refused(node, lambda: node.put(f"/api/templates/{PREFIX}/pump", body, auth=ADMIN), "template version")
    refused(node, lambda: node.get(f"/api/templates/{PREFIX}/motor?version=1%00"), "template version")
    refused(node, lambda: node.delete(f"/api/templates/{PREFIX}/motor?version=1%00", auth=ADMIN), "template version")
    assert template_names(node) == ["motor"]


def test_template_field_type_with_nul(node: Node) -> None:
    body = {"version": "1.0", "fields": [{"index": 2000, "type": "product\x00Name"}]}
    refused(node, lambda: node.put(f"/api/templates/{PREFIX}/pump", body, auth=ADMIN), "fields[0].type")
    assert template_names(node) == ["motor"]


@pytest.mark.parametrize("reference", ["mo\x00tor", "motor@1\x00", "\x00"])
def test_template_reference_with_nul(node: Node, reference: str) -> None:
    handle = fresh()
    values = record(uses(reference), {"index": 2000, "type": "productName", "data": "M3"})
    refused(node, lambda: node.put("/api/handles/" + handle, values, auth=ADMIN), "HS_TEMPLATE")
    assert node.get("/api/handles/" + handle).status == 404


def test_value_type_with_nul(node: Node) -> None:
    handle = fresh()
    values = record({"index": 2, "type": "product\x00Name", "data": "M3"})
    refused(node, lambda: node.put("/api/handles/" + handle, values, auth=ADMIN), "type")
    assert node.get("/api/handles/" + handle).status == 404


def test_value_data_may_hold_nul(node: Node) -> None:
    handle = fresh()
    reply = node.put("/api/handles/" + handle, record({"index": 2, "type": "note", "data": "a\x00b"}), auth=ADMIN)
    assert reply.status == 201, reply.body
    assert node.get("/api/handles/" + handle).json["values"][0]["data"]["value"] == "a\x00b"


def test_handle_with_nul(node: Node) -> None:
    refused(
        node, lambda: node.put(f"/api/handles/{PREFIX}/a%00b", record(url_value(1, "https://x/")), auth=ADMIN), "handle"
    )


@pytest.mark.parametrize("atomic", [False, True])
def test_batch_handle_with_nul(node: Node, atomic: bool) -> None:
    good = fresh()
    operations = [
        {"op": "create", "handle": good, "values": [url_value(1, "https://x.example/")]},
        {"op": "create", "handle": f"{PREFIX}/a\x00b", "values": [url_value(1, "https://x.example/")]},
    ]
    before = node.metric("idnode_store_errors_total")
    reply = batch(node, operations, atomic)
    assert node.metric("idnode_store_errors_total") == before
    assert reply.status == (400 if atomic else 200), reply.body
    item = reply.json["results"][1]
    assert item["responseCode"] == 102 and "handle" in item["message"], item
    assert (node.get("/api/handles/" + good).status == 200) is not atomic


def test_batch_op_with_nul(node: Node) -> None:
    handle = fresh()
    before = node.metric("idnode_store_errors_total")
    reply = batch(node, [{"op": "cre\x00ate", "handle": handle, "values": []}], atomic=True)
    assert node.metric("idnode_store_errors_total") == before
    assert reply.status == 400, reply.body
    assert "op" in reply.json["results"][0]["message"]
    assert node.get("/api/handles/" + handle).status == 404


def test_audit_query_with_nul(node: Node) -> None:
    refused(node, lambda: node.get("/api/audit?prefix=88%00", auth=ADMIN), "prefix")
