"""POST /api/batch: JSON and msgpack, atomic and not, idempotent retries, limits, permissions."""

from __future__ import annotations

import itertools
from typing import Any

import msgpack
import pytest

from tests.support.nodeproc import ADMIN, Node, Reply, record, url_value

# Run against both store backends (PostgreSQL: a database of this module's own).
STORE_BACKENDS = ("sqlite", "postgresql")

_n = itertools.count()


def batch(node: Node, operations: list[Any], *, atomic: bool = False, auth: Any = ADMIN) -> Reply:
    return node.request("POST", "/api/batch", {"atomic": atomic, "operations": operations}, auth=auth)


def four_values(i: int) -> list[dict[str, Any]]:
    return [
        url_value(1, f"https://factory.example/p/{i}"),
        {"index": 2, "type": "productName", "data": f"Motor controller {i}"},
        {"index": 3, "type": "batchNo", "data": "B2026-11"},
        {"index": 4, "type": "EMAIL", "data": "qa@factory.example"},
    ]


def fresh(prefix: str = "88.118.30") -> str:
    return f"{prefix}/B{next(_n):06d}"


def exists(node: Node, handle: str) -> bool:
    return node.get("/api/handles/" + handle).status == 200


def test_batch_creates_in_request_order(node: Node) -> None:
    handles = [fresh() for _ in range(50)]
    reply = batch(node, [{"op": "create", "handle": h, "values": four_values(i)} for i, h in enumerate(handles)])
    assert (reply.status, reply.code) == (200, 1)
    results = reply.json["results"]
    assert [r["handle"] for r in results] == handles
    assert all(r["responseCode"] == 1 and r["message"] == "created" for r in results)
    got = node.get("/api/handles/" + handles[7]).json["values"]
    assert [v["index"] for v in got] == [1, 2, 3, 4]


def test_batch_as_msgpack(node: Node) -> None:
    handles = [fresh() for _ in range(20)]
    operations: list[dict[str, Any]] = [
        {"op": "create", "handle": h, "values": four_values(i)} for i, h in enumerate(handles)
    ]
    operations[0]["values"].append({"index": 5, "type": "BLOB", "data": b"\x00\xffbinary"})
    body = msgpack.packb({"operations": operations})
    reply = node.request(
        "POST", "/api/batch", raw=body, auth=ADMIN,
        headers={"Content-Type": "application/msgpack", "Accept": "application/msgpack"},
    )  # fmt: skip
    assert reply.status == 200
    answer = msgpack.unpackb(reply.body)
    assert answer["responseCode"] == 1 and len(answer["results"]) == 20
    assert all(exists(node, h) for h in handles)
    blob = node.get("/api/handles/" + handles[0] + "?index=5").json["values"][0]
    assert blob["data"] == {"format": "base64", "value": "AP9iaW5hcnk="}


def test_a_bad_item_fails_alone(node: Node) -> None:
    good_a, bad, good_b = fresh(), fresh(), fresh()
    operations = [
        {"op": "create", "handle": good_a, "values": four_values(1)},
        {"op": "create", "handle": bad, "values": [{"index": 0, "type": "URL", "data": "x"}]},
        {"op": "frobnicate", "handle": fresh(), "values": four_values(2)},
        {"op": "create", "handle": "88.119/elsewhere", "values": four_values(3)},
        {"op": "create", "handle": good_b, "values": four_values(4)},
    ]
    reply = batch(node, operations)
    assert reply.status == 200
    codes = [r["responseCode"] for r in reply.json["results"]]
    assert codes == [1, 202, 4, 301, 1]
    assert "frobnicate" in reply.json["results"][2]["message"]
    assert exists(node, good_a) and exists(node, good_b) and not exists(node, bad)


def test_atomic_batch_is_all_or_nothing(node: Node) -> None:
    taken = fresh()
    node.put("/api/handles/" + taken, record(url_value(1, "https://other.example/")), auth=ADMIN)
    handles = [fresh() for _ in range(5)]
    operations = [{"op": "create", "handle": h, "values": four_values(i)} for i, h in enumerate(handles)]
    operations.insert(3, {"op": "create", "handle": taken, "values": four_values(99)})
    reply = batch(node, operations, atomic=True)
    assert (reply.status, reply.code) == (409, 101)
    assert "nothing was written" in reply.json["message"]
    results = reply.json["results"]
    assert results[3]["responseCode"] == 101
    assert all("not applied" in r["message"] for n, r in enumerate(results) if n != 3)
    assert not any(exists(node, h) for h in handles)


def test_retrying_a_batch_does_not_duplicate_or_fail(node: Node) -> None:
    handles = [fresh() for _ in range(10)]
    operations = [{"op": "create", "handle": h, "values": four_values(i)} for i, h in enumerate(handles)]
    first = batch(node, operations)
    again = batch(node, operations)
    assert [r["message"] for r in first.json["results"]] == ["created"] * 10
    assert [(r["responseCode"], r["message"]) for r in again.json["results"]] == [(1, "unchanged")] * 10
    conflicting = batch(node, [{"op": "create", "handle": handles[0], "values": four_values(12345)}])
    assert conflicting.json["results"][0]["responseCode"] == 101
    listed = node.get("/api/handles?prefix=88.118.30&pageSize=0", auth=ADMIN).json["totalCount"]
    assert int(listed) >= 10


def test_replace_delete_add_values_and_mint(node: Node) -> None:
    h = fresh()
    node.put("/api/handles/" + h, record(url_value(1, "https://a.example/")), auth=ADMIN)
    gone = fresh()
    node.put("/api/handles/" + gone, record(url_value(1, "https://a.example/")), auth=ADMIN)
    operations = [
        {"op": "add_values", "handle": h, "values": [{"index": 7, "type": "NOTE", "data": "added"}]},
        {"op": "replace", "handle": h, "values": [*four_values(5), {"index": 7, "type": "NOTE", "data": "kept"}]},
        {"op": "delete", "handle": gone},
        {"op": "mint", "handle": "88.118.30/", "values": four_values(6)},
        {"op": "add_values", "handle": h, "values": [{"index": 7, "type": "NOTE", "data": "kept"}]},
    ]
    results = batch(node, operations).json["results"]
    assert [r["responseCode"] for r in results] == [1, 1, 1, 1, 1], results
    assert [r["message"] for r in results] == ["updated", "replaced", "deleted", "created", "unchanged"]
    minted = results[3]["handle"]
    assert minted.startswith("88.118.30/") and exists(node, minted)
    assert not exists(node, gone)
    assert sorted(v["index"] for v in node.get("/api/handles/" + h).json["values"]) == [1, 2, 3, 4, 7]


def test_oversize_batch_is_refused_with_the_limit(node: Node) -> None:
    operations = [{"op": "delete", "handle": fresh()} for _ in range(2001)]
    reply = batch(node, operations)
    assert (reply.status, reply.code) == (400, 4)
    assert "2000" in reply.json["message"] and "2001" in reply.json["message"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ([], "object"),
        ({"operations": []}, "non-empty"),
        ({"operations": "create"}, "non-empty"),
        ({"atomic": "yes", "operations": [{"op": "delete", "handle": "88.118.30/x"}]}, "atomic"),
    ],
)
def test_malformed_batches(node: Node, body: Any, words: str) -> None:
    reply = node.request("POST", "/api/batch", body, auth=ADMIN)
    assert reply.status == 400 and words in reply.json["message"]


def test_malformed_msgpack(node: Node) -> None:
    reply = node.request(
        "POST", "/api/batch", raw=b"\xc1\xc1", auth=ADMIN, headers={"Content-Type": "application/msgpack"}
    )
    assert reply.status == 400 and "msgpack" in reply.json["message"]


def test_batch_needs_credentials_and_checks_every_item(node: Node) -> None:
    anonymous = batch(node, [{"op": "create", "handle": fresh(), "values": four_values(1)}], auth=None)
    assert (anonymous.status, anonymous.code) == (401, 402)
    enterprise = "88.118.31"
    admin_value = {"handle": f"0.NA/{enterprise}", "index": 300, "permissions": "111111111111"}
    prefix_record = record(
        {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": admin_value}},
        {"index": 300, "type": "HS_SECKEY", "data": "ent-31"},
    )
    assert node.put(f"/api/handles/0.NA/{enterprise}", prefix_record, auth=ADMIN).status == 201
    own, foreign = fresh(enterprise), fresh("88.118.30")
    reply = batch(
        node,
        [
            {"op": "create", "handle": own, "values": four_values(1)},
            {"op": "create", "handle": foreign, "values": four_values(2)},
        ],
        auth=(f"300:0.NA/{enterprise}", "ent-31"),
    )
    assert [r["responseCode"] for r in reply.json["results"]] == [1, 401]
    assert exists(node, own) and not exists(node, foreign)
