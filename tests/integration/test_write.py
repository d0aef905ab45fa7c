"""Registration, modification, deletion and listing over the REST API."""

from __future__ import annotations

import base64
import hashlib

from tests.support.nodeproc import ADMIN, ADMIN_SECRET, Node, record, url_value

# Run against both store backends (PostgreSQL: a database of this module's own).
STORE_BACKENDS = ("sqlite", "postgresql")

P = "/api/handles/88.118.9/"


def values_of(node: Node, path: str) -> dict[int, dict[str, object]]:
    reply = node.get(path, auth=ADMIN)
    assert reply.status == 200, reply.body
    return {v["index"]: v for v in reply.json["values"]}


def test_create_is_201_and_replace_is_200(node: Node, name: str) -> None:
    first = node.put(
        P + name, record(url_value(1, "https://a.example/"), url_value(2, "https://b.example/")), auth=ADMIN
    )
    assert (first.status, first.code) == (201, 1)
    assert first.json["handle"] == f"88.118.9/{name}"
    second = node.put(P + name, record(url_value(7, "https://c.example/")), auth=ADMIN)
    assert (second.status, second.code) == (200, 1)
    assert list(values_of(node, P + name)) == [7]


def test_body_may_be_an_array_or_a_single_value(node: Node, name: str) -> None:
    assert node.put(P + name + "a", [url_value(1, "https://a.example/")], auth=ADMIN).status == 201
    assert node.put(P + name + "b", url_value(1, "https://b.example/"), auth=ADMIN).status == 201
    assert values_of(node, P + name + "b")[1]["data"] == {"format": "string", "value": "https://b.example/"}


def test_every_data_format_round_trips(node: Node, name: str) -> None:
    site = {
        "servers": [
            {"serverId": 1, "address": "127.0.0.1", "interfaces": [{"protocol": "HTTP", "port": 8000, "query": True}]}
        ]
    }
    values = [
        {"index": 1, "type": "BLOB", "data": {"format": "base64", "value": base64.b64encode(b"\x00\xff\x10").decode()}},
        {"index": 2, "type": "RAW", "data": {"format": "hex", "value": "00ff10"}},
        {
            "index": 3,
            "type": "HS_VLIST",
            "data": {"format": "vlist", "value": [{"handle": "0.NA/88.118", "index": 300}]},
        },
        {"index": 4, "type": "HS_SITE", "data": {"format": "site", "value": site}},
        {"index": 5, "type": "NOTE", "data": {"format": "string", "value": "产品 JXDY"}},
        {
            "index": 100,
            "type": "HS_ADMIN",
            "data": {
                "format": "admin",
                "value": {"handle": "0.NA/88.118", "index": "300", "permissions": "011111110011"},
            },
        },
    ]
    assert node.put(P + name, record(*values), auth=ADMIN).status == 201
    got = values_of(node, P + name)
    assert got[1]["data"] == {"format": "base64", "value": "AP8Q"}
    assert got[2]["data"] == {"format": "base64", "value": "AP8Q"}
    assert got[3]["data"] == {"format": "vlist", "value": [{"handle": "0.NA/88.118", "index": 300}]}
    served = got[4]["data"]["value"]["servers"][0]  # type: ignore[index]
    assert served["address"] == "127.0.0.1" and served["interfaces"][0]["port"] == 8000
    assert got[5]["data"] == {"format": "string", "value": "产品 JXDY"}
    assert got[100]["data"] == {
        "format": "admin",
        "value": {"handle": "0.NA/88.118", "index": 300, "permissions": "011111110011"},
    }


def test_overwrite_false_refuses_existing_handle(node: Node, name: str) -> None:
    node.put(P + name, record(url_value(1, "https://a.example/")), auth=ADMIN)
    reply = node.put(P + name + "?overwrite=false", record(url_value(1, "https://evil.example/")), auth=ADMIN)
    assert (reply.status, reply.code) == (409, 101)
    assert values_of(node, P + name)[1]["data"] == {"format": "string", "value": "https://a.example/"}
    fresh = node.put(P + name + "new?overwrite=false", record(url_value(1, "https://n.example/")), auth=ADMIN)
    assert fresh.status == 201


def test_index_parameter_changes_only_those_values(node: Node, name: str) -> None:
    node.put(P + name, record(url_value(1, "https://a.example/"), url_value(2, "https://b.example/")), auth=ADMIN)
    reply = node.put(
        P + name + "?index=2&index=3",
        record(url_value(2, "https://B.example/"), url_value(3, "https://c.example/")),
        auth=ADMIN,
    )
    assert (reply.status, reply.code) == (200, 1)
    got = values_of(node, P + name)
    assert sorted(got) == [1, 2, 3]
    assert got[1]["data"]["value"] == "https://a.example/"  # type: ignore[index]
    assert got[2]["data"]["value"] == "https://B.example/"  # type: ignore[index]


def test_index_various_adds_every_value_in_the_body(node: Node, name: str) -> None:
    node.put(P + name, record(url_value(1, "https://a.example/")), auth=ADMIN)
    reply = node.put(P + name + "?index=various", record(url_value(4, "https://d.example/")), auth=ADMIN)
    assert reply.status == 200
    assert sorted(values_of(node, P + name)) == [1, 4]


def test_index_with_overwrite_false_refuses_existing_values(node: Node, name: str) -> None:
    node.put(P + name, record(url_value(1, "https://a.example/")), auth=ADMIN)
    reply = node.put(P + name + "?index=1&overwrite=false", record(url_value(1, "https://x.example/")), auth=ADMIN)
    assert (reply.status, reply.code) == (409, 201)
    assert values_of(node, P + name)[1]["data"]["value"] == "https://a.example/"  # type: ignore[index]


def test_index_must_match_the_body(node: Node, name: str) -> None:
    node.put(P + name, record(url_value(1, "https://a.example/")), auth=ADMIN)
    reply = node.put(P + name + "?index=9", record(url_value(2, "https://b.example/")), auth=ADMIN)
    assert (reply.status, reply.code) == (400, 202)
    assert sorted(values_of(node, P + name)) == [1]


def test_mint_new_suffix(node: Node) -> None:
    reply = node.put(P + "?mintNewSuffix=true", record(url_value(1, "https://m.example/")), auth=ADMIN)
    assert (reply.status, reply.code) == (201, 1)
    minted = reply.json["handle"]
    assert minted.startswith("88.118.9/") and len(minted) > len("88.118.9/") + 30
    assert node.get("/api/handles/" + minted).status == 200
    partial = node.put(P + "LOT7-?mintNewSuffix=true", record(url_value(1, "https://m.example/")), auth=ADMIN)
    assert partial.json["handle"].startswith("88.118.9/LOT7-")
    assert partial.json["handle"] != minted


def test_delete_handle(node: Node, name: str) -> None:
    node.put(P + name, record(url_value(1, "https://a.example/")), auth=ADMIN)
    reply = node.delete(P + name, auth=ADMIN)
    assert (reply.status, reply.code) == (200, 1)
    assert node.get(P + name).status == 404
    again = node.delete(P + name, auth=ADMIN)
    assert (again.status, again.code) == (404, 100)


def test_delete_values_by_index(node: Node, name: str) -> None:
    node.put(P + name, record(*(url_value(i, f"https://{i}.example/") for i in (1, 2, 3))), auth=ADMIN)
    reply = node.delete(P + name + "?index=1&index=3", auth=ADMIN)
    assert reply.status == 200
    assert sorted(values_of(node, P + name)) == [2]
    missing = node.delete(P + name + "?index=8", auth=ADMIN)
    assert (missing.status, missing.code) == (400, 200)
    assert sorted(values_of(node, P + name)) == [2]


def test_node_prefix_handle_cannot_be_deleted(node: Node) -> None:
    reply = node.delete("/api/handles/0.NA/88.118", auth=ADMIN)
    assert reply.status == 400
    assert node.get("/api/handles/0.NA/88.118").status == 200


def test_list_handles_with_paging(node: Node) -> None:
    prefix = "88.118.77"
    for i in range(5):
        node.put(f"/api/handles/{prefix}/item{i}", record(url_value(1, "https://x.example/")), auth=ADMIN)
    node.put(f"/api/handles/{prefix}.1/other", record(url_value(1, "https://x.example/")), auth=ADMIN)
    everything = node.get(f"/api/handles?prefix={prefix}", auth=ADMIN)
    assert everything.status == 200
    assert everything.json["totalCount"] == "5"
    assert everything.json["handles"] == [f"{prefix}/item{i}" for i in range(5)]
    page = node.get(f"/api/handles?prefix={prefix}&page=1&pageSize=2", auth=ADMIN).json
    assert page["handles"] == [f"{prefix}/item2", f"{prefix}/item3"]
    assert (page["page"], page["pageSize"], page["totalCount"]) == (1, 2, "5")
    count_only = node.get(f"/api/handles?prefix={prefix}&pageSize=0", auth=ADMIN).json
    assert count_only["handles"] == [] and count_only["totalCount"] == "5"


def test_list_handles_by_cursor_walks_every_handle_once(node: Node) -> None:
    prefix = "88.118.78"
    names = [f"{prefix}/Item{i:02d}" for i in range(7)]
    for handle in names:
        node.put(f"/api/handles/{handle}", record(url_value(1, "https://x.example/")), auth=ADMIN)
    node.put(f"/api/handles/{prefix}.1/other", record(url_value(1, "https://x.example/")), auth=ADMIN)
    seen, cursor, pages = [], "", 0
    while True:
        reply = node.get(f"/api/handles?prefix={prefix}&pageSize=3&cursor={cursor}", auth=ADMIN)
        assert reply.status == 200 and reply.json["totalCount"] == "7"
        seen += reply.json["handles"]
        pages += 1
        if "nextCursor" not in reply.json:
            break
        cursor = reply.json["nextCursor"]
    assert seen == names and pages == 3  # 3 + 3 + 1: the short page says it is the last
    first = node.get(f"/api/handles?prefix={prefix}&cursor=", auth=ADMIN).json
    assert first["handles"] == names and "nextCursor" not in first  # the default page holds them all
    for bad in ("cursor=%25%25%25&pageSize=2", "cursor=&page=1", "cursor=&pageSize=100001"):
        refused = node.get(f"/api/handles?prefix={prefix}&{bad}", auth=ADMIN)
        assert refused.status == 400, bad
        assert "cursor" in refused.json["message"] or "pageSize" in refused.json["message"]


def test_list_requires_authentication_and_a_prefix(node: Node) -> None:
    anonymous = node.get("/api/handles?prefix=88.118")
    assert (anonymous.status, anonymous.code) == (401, 402)
    missing = node.get("/api/handles", auth=ADMIN)
    assert missing.status == 400 and "prefix" in missing.json["message"]
    bad = node.get("/api/handles?prefix=88.118&page=-1", auth=ADMIN)
    assert bad.status == 400


def test_new_prefix_handle_appears_in_prefixes(node: Node) -> None:
    reply = node.put(
        "/api/handles/0.NA/88.118.55", record({"index": 1, "type": "DESC", "data": "Enterprise 55"}), auth=ADMIN
    )
    assert reply.status == 201
    assert "88.118.55" in node.get("/api/prefixes").json["prefixes"]


def test_secret_keys_are_stored_hashed_and_never_shown(node: Node, name: str) -> None:
    seckey = {"index": 300, "type": "HS_SECKEY", "data": "enterprise-secret-42", "permissions": "1110"}
    assert node.put(P + name, record(seckey, url_value(1, "https://x.example/")), auth=ADMIN).status == 201
    anonymous = node.get(P + name)
    assert b"enterprise-secret-42" not in anonymous.body
    assert [v["index"] for v in anonymous.json["values"]] == [1]
    admin = node.get(P + name, auth=ADMIN)
    assert b"enterprise-secret-42" not in admin.body
    shown = {v["index"]: v for v in admin.json["values"]}[300]
    assert shown["data"] == {"format": "hash", "value": ""}  # the MAC key: withheld from every reader
    assert hashlib.sha1(b"enterprise-secret-42").hexdigest().encode() not in admin.body
    assert shown["permissions"] == "1100"
    assert ADMIN_SECRET.encode() not in node.get("/api/handles/0.NA/88.118", auth=ADMIN).body


def test_a_withheld_secret_sent_back_is_refused_and_a_hash_still_sets_one(node: Node, name: str) -> None:
    seckey = {"index": 300, "type": "HS_SECKEY", "data": "round-trip-secret"}
    node.put(P + name, record(seckey), auth=ADMIN)
    shown = node.get(P + name, auth=ADMIN).json["values"]
    assert node.put(P + name, {"values": shown}, auth=ADMIN).status == 400
    hashed = {"format": "hash", "value": hashlib.sha1(b"round-trip-secret").hexdigest()}
    assert node.put(P + name, record({"index": 300, "type": "HS_SECKEY", "data": hashed}), auth=ADMIN).status == 200
    # The identity still authenticates with the original secret.
    probe = node.get(P + name, auth=(f"300:88.118.9/{name}", "round-trip-secret"))
    assert probe.status == 200
    wrong = node.get(P + name, auth=(f"300:88.118.9/{name}", "scrypt"))
    assert (wrong.status, wrong.code) == (403, 403)
