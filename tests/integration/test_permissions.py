"""The permission matrix: every operation × target × caller, and nothing changed on deny.

Layout: the node admin owns 88.118 and the industry prefix 88.118.10; enterprise A owns
88.118.10.1 (and made the sub-prefix 88.118.10.1.7); enterprise B owns 88.118.10.2.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.nodeproc import ADMIN, Auth, Node, Reply, record, url_value

# Run against both store backends (PostgreSQL: a database of this module's own).
STORE_BACKENDS = ("sqlite", "postgresql")

A_SECRET, B_SECRET = "secret-of-enterprise-a", "secret-of-enterprise-b"
A: Auth = ("300:0.NA/88.118.10.1", A_SECRET)
B: Auth = ("300:0.NA/88.118.10.2", B_SECRET)
CALLERS: dict[str, Auth] = {"node-admin": ADMIN, "a-admin": A, "b-admin": B, "anonymous": None}
TARGETS = {
    "own": "88.118.10.1",
    "sibling": "88.118.10.2",
    "parent": "88.118.10",
    "node": "88.118",
    "own-sub": "88.118.10.1.7",
}
ALLOWED = {
    "node-admin": set(TARGETS),
    "a-admin": {"own", "own-sub"},
    "b-admin": {"sibling"},
    "anonymous": set(),
}
_unique = itertools.count()


def admin_value(handle: str, index: int = 300, permissions: str = "111111111111") -> dict[str, object]:
    value = {"handle": handle, "index": index, "permissions": permissions}
    return {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": value}}


def enterprise(prefix: str, secret: str) -> dict[str, object]:
    return record(admin_value(f"0.NA/{prefix}"), {"index": 300, "type": "HS_SECKEY", "data": secret})


@pytest.fixture(scope="module")
def hierarchy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = Node(tmp_path_factory.mktemp("perm") / "data").start()
    ok = [
        node.put("/api/handles/0.NA/88.118.10", record({"index": 1, "type": "DESC", "data": "industry"}), auth=ADMIN),
        node.put("/api/handles/0.NA/88.118.10.1", enterprise("88.118.10.1", A_SECRET), auth=ADMIN),
        node.put("/api/handles/0.NA/88.118.10.2", enterprise("88.118.10.2", B_SECRET), auth=ADMIN),
        node.put("/api/handles/0.NA/88.118.10.1.7", record({"index": 1, "type": "DESC", "data": "line 7"}), auth=A),
    ]
    assert [r.status for r in ok] == [201] * 4, [r.body for r in ok]
    yield node
    node.stop()


def seed(node: Node, prefix: str) -> str:
    """A record with values 1 and 2 under ``prefix``, made by the node admin."""
    handle = f"{prefix}/m{next(_unique)}"
    values = record(url_value(1, "https://one.example/"), {"index": 2, "type": "EMAIL", "data": "x@example.com"})
    assert node.put("/api/handles/" + handle, values, auth=ADMIN).status == 201
    return handle


def snapshot(node: Node, handle: str) -> bytes:
    return node.get("/api/handles/" + handle, auth=ADMIN).body


Op = Callable[[Node, str, Auth], tuple[Reply, str]]


def op_create(node: Node, prefix: str, auth: Auth) -> tuple[Reply, str]:
    handle = f"{prefix}/new{next(_unique)}"
    return node.put(
        f"/api/handles/{handle}?overwrite=false", record(url_value(1, "https://n.example/")), auth=auth
    ), handle


def op_replace(node: Node, prefix: str, auth: Auth) -> tuple[Reply, str]:
    handle = seed(node, prefix)
    return node.put("/api/handles/" + handle, record(url_value(9, "https://r.example/")), auth=auth), handle


def op_add_value(node: Node, prefix: str, auth: Auth) -> tuple[Reply, str]:
    handle = seed(node, prefix)
    return node.put(f"/api/handles/{handle}?index=5", record(url_value(5, "https://5.example/")), auth=auth), handle


def op_modify_value(node: Node, prefix: str, auth: Auth) -> tuple[Reply, str]:
    handle = seed(node, prefix)
    return node.put(f"/api/handles/{handle}?index=1", record(url_value(1, "https://m.example/")), auth=auth), handle


def op_remove_value(node: Node, prefix: str, auth: Auth) -> tuple[Reply, str]:
    handle = seed(node, prefix)
    return node.delete(f"/api/handles/{handle}?index=2", auth=auth), handle


def op_delete(node: Node, prefix: str, auth: Auth) -> tuple[Reply, str]:
    handle = seed(node, prefix)
    return node.delete("/api/handles/" + handle, auth=auth), handle


def op_list(node: Node, prefix: str, auth: Auth) -> tuple[Reply, str]:
    handle = seed(node, prefix)
    return node.get(f"/api/handles?prefix={prefix}", auth=auth), handle


def op_sub_prefix(node: Node, prefix: str, auth: Auth) -> tuple[Reply, str]:
    handle = f"0.NA/{prefix}.{next(_unique) + 100}"
    return node.put("/api/handles/" + handle, record({"index": 1, "type": "DESC", "data": "sub"}), auth=auth), handle


def op_template(node: Node, prefix: str, auth: Auth) -> tuple[Reply, str]:
    name = f"tpl{next(_unique)}"
    spec = {"version": "1", "fields": [{"index": 2000, "type": "sku", "dataType": "string"}]}
    return node.put(f"/api/templates/{prefix}/{name}", spec, auth=auth), f"{prefix}/{name}"


OPS: dict[str, Op] = {
    "create": op_create,
    "replace": op_replace,
    "add-value": op_add_value,
    "modify-value": op_modify_value,
    "remove-value": op_remove_value,
    "delete": op_delete,
    "list": op_list,
    "create-sub-prefix": op_sub_prefix,
    "define-template": op_template,
}


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize("op", list(OPS))
def test_matrix(hierarchy: Node, op: str, target: str, caller: str) -> None:
    node, prefix, auth = hierarchy, TARGETS[target], CALLERS[caller]
    allowed = target in ALLOWED[caller]
    # Snapshot what the operation will touch before it runs (a created handle is absent).
    reply, handle = OPS[op](node, prefix, auth)
    if allowed:
        assert reply.status in (200, 201), (op, target, caller, reply.body)
        assert reply.code == 1
        return
    expected = (401, 402) if auth is None else (403, 401)
    assert (reply.status, reply.code) == expected, (op, target, caller, reply.body)
    if op == "define-template":
        assert node.get("/api/templates/" + handle).status == 404
        return
    after = node.get("/api/handles/" + handle, auth=ADMIN)
    if op in ("create", "create-sub-prefix"):
        assert after.status == 404
    else:
        values = {v["index"]: v["data"]["value"] for v in after.json["values"]}
        assert values == {1: "https://one.example/", 2: "x@example.com"}


def test_value_permission_bits(hierarchy: Node) -> None:
    node = hierarchy
    handle = "88.118.10.1/bits"
    values = record(
        {"index": 1, "type": "LOCKED", "data": "fixed", "permissions": "1010"},
        {"index": 2, "type": "OPEN", "data": "anyone", "permissions": "1111"},
        {"index": 3, "type": "PRIVATE", "data": "owner only", "permissions": "1100"},
    )
    assert node.put("/api/handles/" + handle, values, auth=A).status == 201
    # Not admin-writable: even the enterprise admin cannot change it; the node admin can.
    locked = node.put(f"/api/handles/{handle}?index=1", record({"index": 1, "type": "LOCKED", "data": "x"}), auth=A)
    assert (locked.status, locked.code) == (403, 401)
    # Public-write: any authenticated identity may change it, even one with no grant here.
    opened = node.put(f"/api/handles/{handle}?index=2", record({"index": 2, "type": "OPEN", "data": "by b"}), auth=B)
    assert opened.status == 200
    # Admin-read only: the owner sees it, the other enterprise and anonymous callers do not.
    assert 3 in [v["index"] for v in node.get("/api/handles/" + handle, auth=A).json["values"]]
    assert 3 not in [v["index"] for v in node.get("/api/handles/" + handle, auth=B).json["values"]]
    assert 3 not in [v["index"] for v in node.get("/api/handles/" + handle).json["values"]]
    fixed = node.put(f"/api/handles/{handle}?index=1", record({"index": 1, "type": "LOCKED", "data": "y"}), auth=ADMIN)
    assert fixed.status == 200


def test_group_admins_via_hs_vlist(hierarchy: Node) -> None:
    node = hierarchy
    alice = ("300:88.118.10.2/alice", "alice-secret")
    assert (
        node.put(
            "/api/handles/88.118.10.2/alice", record({"index": 300, "type": "HS_SECKEY", "data": alice[1]}), auth=B
        ).status
        == 201
    )
    group = {"index": 200, "type": "HS_VLIST",
             "data": {"format": "vlist", "value": [{"handle": "88.118.10.2/alice", "index": 300},
                                                   {"handle": "88.118.10.2/team", "index": 200}]}}  # fmt: skip
    grant = admin_value("88.118.10.2/team", index=200, permissions="000001110001")  # add handle + values
    assert node.put("/api/handles/88.118.10.2/team", record(group), auth=B).status == 201  # a loop: team ⊃ team
    assert node.put("/api/handles/0.NA/88.118.10.2?index=101", record({**grant, "index": 101}), auth=B).status == 200
    created = node.put("/api/handles/88.118.10.2/by-alice", record(url_value(1, "https://a.example/")), auth=alice)
    assert created.status == 201, created.body
    # The group grants no delete right, and nothing outside B's prefix.
    assert node.delete("/api/handles/88.118.10.2/by-alice", auth=alice).status == 403
    assert (
        node.put("/api/handles/88.118.10.1/by-alice", record(url_value(1, "https://a.example/")), auth=alice).status
        == 403
    )


def test_deleting_a_prefix_with_identifiers_needs_force(hierarchy: Node) -> None:
    node = hierarchy
    assert node.put("/api/handles/0.NA/88.118.10.3", enterprise("88.118.10.3", "c"), auth=ADMIN).status == 201
    assert (
        node.put("/api/handles/88.118.10.3/item", record(url_value(1, "https://i.example/")), auth=ADMIN).status == 201
    )
    refused = node.delete("/api/handles/0.NA/88.118.10.3", auth=ADMIN)
    assert refused.status == 400 and "1 identifiers" in refused.json["message"]
    assert node.get("/api/handles/0.NA/88.118.10.3").status == 200
    assert "88.118.10.3" in node.get("/api/prefixes").json["prefixes"]
    own = node.delete("/api/handles/0.NA/88.118.10.3?force=true", auth=("300:0.NA/88.118.10.3", "c"))
    assert own.status == 403
    forced = node.delete("/api/handles/0.NA/88.118.10.3?force=true", auth=ADMIN)
    assert forced.status == 200
    assert "88.118.10.3" not in node.get("/api/prefixes").json["prefixes"]


def test_enterprise_admin_can_manage_its_own_credentials(hierarchy: Node, tmp_path: Path) -> None:
    node = hierarchy
    user = "88.118.10.1/operator"
    made = node.put("/api/handles/" + user, record({"index": 300, "type": "HS_SECKEY", "data": "op-1"}), auth=A)
    assert made.status == 201
    rotated = node.put(
        f"/api/handles/{user}?index=300", record({"index": 300, "type": "HS_SECKEY", "data": "op-2"}), auth=A
    )
    assert rotated.status == 200
    assert node.get("/api/handles/" + user, auth=(f"300:{user}", "op-1")).status == 403
    assert node.get("/api/handles/" + user, auth=(f"300:{user}", "op-2")).status == 200


# No-op writes --------------------------------------------------------------------------
#
# A write must be authorised by what it asks for, before anything is compared with what is
# stored. Each case below is sent twice by every caller, on two seeded records: once with
# values identical to the stored ones (or naming indexes that exist), once with others. A
# caller without rights must get the same refusal both times (so the answer is no oracle
# for values it may not read), and neither record may change, timestamps included.

HIDDEN = {"index": 3, "type": "NOTE", "data": {"format": "string", "value": "hidden note"}, "permissions": "1100"}
OTHER_HIDDEN = {**HIDDEN, "data": {"format": "string", "value": "a guess"}}
SEEDED = [url_value(1, "https://one.example/"), {"index": 2, "type": "EMAIL", "data": "x@example.com"}, HIDDEN]


def seed_hidden(node: Node, prefix: str) -> str:
    handle = f"{prefix}/h{next(_unique)}"
    assert node.put("/api/handles/" + handle, {"values": SEEDED}, auth=ADMIN).status == 201
    return handle


def one_batch_op(node: Node, auth: Auth, op: str, handle: str, values: list[dict[str, object]]) -> Reply:
    operation = {"op": op, "handle": handle, "values": values}
    return node.request("POST", "/api/batch", {"operations": [operation]}, auth=auth)


# name -> (request with the stored values, request with other values); each takes (node, handle, auth).
NoopOp = Callable[[Node, str, Auth], Reply]
NOOPS: dict[str, tuple[NoopOp, NoopOp]] = {
    "replace": (
        lambda n, h, a: n.put("/api/handles/" + h, {"values": SEEDED}, auth=a),
        lambda n, h, a: n.put("/api/handles/" + h, {"values": [*SEEDED[:2], OTHER_HIDDEN]}, auth=a),
    ),
    "put-index": (
        lambda n, h, a: n.put(f"/api/handles/{h}?index=3", record(HIDDEN), auth=a),
        lambda n, h, a: n.put(f"/api/handles/{h}?index=3", record(OTHER_HIDDEN), auth=a),
    ),
    "put-index-no-overwrite": (  # index 3 exists, index 9 does not
        lambda n, h, a: n.put(f"/api/handles/{h}?index=3&overwrite=false", record(HIDDEN), auth=a),
        lambda n, h, a: n.put(f"/api/handles/{h}?index=9&overwrite=false", record({**HIDDEN, "index": 9}), auth=a),
    ),
    "put-no-overwrite": (
        lambda n, h, a: n.put(f"/api/handles/{h}?overwrite=false", {"values": SEEDED}, auth=a),
        lambda n, h, a: n.put(f"/api/handles/{h}?overwrite=false", record(OTHER_HIDDEN), auth=a),
    ),
    "delete-index": (  # index 3 exists, index 9 does not
        lambda n, h, a: n.delete(f"/api/handles/{h}?index=3", auth=a),
        lambda n, h, a: n.delete(f"/api/handles/{h}?index=9", auth=a),
    ),
    "batch-add-values": (
        lambda n, h, a: one_batch_op(n, a, "add_values", h, [HIDDEN]),
        lambda n, h, a: one_batch_op(n, a, "add_values", h, [OTHER_HIDDEN]),
    ),
    "batch-create": (
        lambda n, h, a: one_batch_op(n, a, "create", h, SEEDED),
        lambda n, h, a: one_batch_op(n, a, "create", h, [*SEEDED[:2], OTHER_HIDDEN]),
    ),
    "batch-replace": (
        lambda n, h, a: one_batch_op(n, a, "replace", h, SEEDED),
        lambda n, h, a: one_batch_op(n, a, "replace", h, [*SEEDED[:2], OTHER_HIDDEN]),
    ),
}
# What the rightful callers get for the request with the stored values.
NOOP_ALLOWED = {"put-index-no-overwrite": 409, "put-no-overwrite": 409}


def outcome(reply: Reply, handle: str) -> tuple[int, int, str]:
    """Status, response code and message of a reply (of the batch item for a batch), the handle blanked."""
    body = reply.json
    if "results" in body and reply.status == 200:
        body = body["results"][0]
    return reply.status, int(body["responseCode"]), str(body.get("message", "")).replace(handle, "<h>")


def refusals_logged(node: Node, handle: str) -> list[int]:
    entries = node.get(f"/api/audit?prefix={handle.partition('/')[0]}&limit=10000", auth=ADMIN).json["entries"]
    return [e["responseCode"] for e in entries if e["handle"] == handle and e["responseCode"] != 1]


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize("op", list(NOOPS))
def test_noop_writes_are_authorised_by_what_they_ask(hierarchy: Node, op: str, target: str, caller: str) -> None:
    node, prefix, auth = hierarchy, TARGETS[target], CALLERS[caller]
    same_op, other_op = NOOPS[op]
    same_handle, other_handle = seed_hidden(node, prefix), seed_hidden(node, prefix)
    before = snapshot(node, same_handle), snapshot(node, other_handle)
    same, other = same_op(node, same_handle, auth), other_op(node, other_handle, auth)
    if target in ALLOWED[caller]:
        assert outcome(same, same_handle)[0] == NOOP_ALLOWED.get(op, 200), (op, same.body)
        return
    refused = outcome(same, same_handle)
    assert refused == outcome(other, other_handle), (op, target, caller)
    expected = (401, 402) if auth is None else (403, 401)
    assert refused[:2] in (expected, (200, expected[1])), (op, target, caller, same.body)  # (200, …): a batch item
    assert (snapshot(node, same_handle), snapshot(node, other_handle)) == before
    if auth is not None:
        assert refusals_logged(node, same_handle), "the refusal is in the audit log"
