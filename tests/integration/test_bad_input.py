"""Hostile and malformed requests: a clear error, the right codes, and nothing written."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.support.nodeproc import ADMIN, ADMIN_USER, Node, Reply, record, url_value

P = "/api/handles/88.118.6/"


def assert_refused(reply: Reply, status: int, code: int, *words: str) -> None:
    assert reply.status == status, reply.body
    body = reply.json
    assert body["responseCode"] == code
    assert body["message"]
    for word in words:
        assert word.lower() in body["message"].lower(), body["message"]


def assert_absent(node: Node, path: str) -> None:
    assert node.get(path, auth=ADMIN).status == 404


GOOD = url_value(1, "https://ok.example/")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"values": [{"type": "URL", "data": "x"}]}, ["index", "integer"]),
        ({"values": [{"index": "1", "type": "URL", "data": "x"}]}, ["index", "integer"]),
        ({"values": [{"index": 1.5, "type": "URL", "data": "x"}]}, ["index", "integer"]),
        ({"values": [{"index": True, "type": "URL", "data": "x"}]}, ["index", "integer"]),
        ({"values": [{"index": 0, "type": "URL", "data": "x"}]}, ["index", "between"]),
        ({"values": [{"index": -4, "type": "URL", "data": "x"}]}, ["index", "between"]),
        ({"values": [{"index": 2**31, "type": "URL", "data": "x"}]}, ["index", "between"]),
        ({"values": [GOOD, url_value(1, "https://dup.example/")]}, ["index 1", "more than once"]),
        ({"values": [{"index": 1, "type": "URL", "data": {"format": "rot13", "value": "k"}}]}, ["rot13", "unknown"]),
        ({"values": [{"index": 1, "type": "B", "data": {"format": "base64", "value": "!!notbase64"}}]}, ["base64"]),
        ({"values": [{"index": 1, "type": "B", "data": {"format": "hex", "value": "0g"}}]}, ["hex"]),
        ({"values": [{"index": 1, "type": "T" * 129, "data": "x"}]}, ["type", "128"]),
        ({"values": [{"index": 1, "type": "URL"}]}, ["no data"]),
        ({"values": [{"index": 1, "type": "URL", "data": "x", "permissions": "11"}]}, ["permissions"]),
        ({"values": [{"index": 1, "type": "URL", "data": "x", "ttl": -1}]}, ["ttl"]),
        ({"values": []}, ["no values"]),
        (
            {"values": [{"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {"handle": "x"}}}]},
            ["handle"],
        ),
        ([GOOD, "not an object"], ["values[1]", "object"]),
    ],
)
def test_invalid_values_are_400_code_202(node: Node, name: str, body: Any, words: list[str]) -> None:
    reply = node.put(P + name, body, auth=ADMIN)
    assert_refused(reply, 400, 202, *words)
    assert_absent(node, P + name)


def test_invalid_value_in_an_update_leaves_the_record_unchanged(node: Node, name: str) -> None:
    node.put(P + name, record(GOOD), auth=ADMIN)
    reply = node.put(P + name, record(url_value(2, "https://new.example/"), {"index": 3, "type": "X"}), auth=ADMIN)
    assert reply.status == 400
    values = node.get(P + name).json["values"]
    assert [v["index"] for v in values] == [1]


def test_malformed_json(node: Node, name: str) -> None:
    for raw in (b'{"values": [', b"\xff\xfe", b"", b"NaN-ish"):
        reply = node.request("PUT", P + name, raw=raw, auth=ADMIN)
        assert_refused(reply, 400, 202, "json")
    assert_absent(node, P + name)


def test_deeply_nested_bodies_are_refused(node: Node, name: str) -> None:
    for raw in (b"[" * 200_000, b'{"values": ' + b"[" * 50_000):
        reply = node.request("PUT", P + name, raw=raw, auth=ADMIN)
        assert_refused(reply, 400, 202)
    deep_msgpack = b"\x91" * 200_000 + b"\xc0"
    msgpack_type = {"Content-Type": "application/msgpack"}
    reply = node.request("POST", "/api/batch", raw=deep_msgpack, auth=ADMIN, headers=msgpack_type)
    assert_refused(reply, 400, 202, "msgpack")
    assert_absent(node, P + name)


def test_body_over_the_limit_is_413(node: Node, name: str) -> None:
    big = json.dumps(record({"index": 1, "type": "NOTE", "data": "x" * (1024 * 1024 + 10)})).encode()
    reply = node.request("PUT", P + name, raw=big, auth=ADMIN)
    assert_refused(reply, 413, 4, "larger than", "1048576")
    assert_absent(node, P + name)


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/api/handles//JX1", ["prefix is empty"]),
        ("/api/handles/88.118.6/", ["empty suffix"]),
        ("/api/handles/88..118/JX1", ["empty segment"]),
        ("/api/handles/88.118.6.", ["no '/'"]),
        ("/api/handles/88.118.6/a%01b", ["control"]),
        ("/api/handles/88.118.6/a%7Fb", ["control"]),
        ("/api/handles/88.118.6/a%C2%85b", ["control"]),
        ("/api/handles/88.118.6/" + "x" * 250, ["255"]),
    ],
)
def test_invalid_handles_are_400_code_102(node: Node, path: str, words: list[str]) -> None:
    reply = node.put(path, record(GOOD), auth=ADMIN)
    assert_refused(reply, 400, 102, *words)


def test_handles_over_2048_bytes_are_refused_everywhere(node: Node) -> None:
    path = "/api/handles/88.118.6/" + "%C3%A9" * 1100
    for reply in (node.get(path), node.put(path, record(GOOD), auth=ADMIN), node.delete(path, auth=ADMIN)):
        assert_refused(reply, 400, 102, "2048")


def test_writes_without_credentials_are_401_code_402(node: Node, name: str) -> None:
    for reply in (node.put(P + name, record(GOOD)), node.delete(P + name), node.put(P + name, {"bad": "body"})):
        assert_refused(reply, 401, 402, "authentication")
        assert reply.headers["www-authenticate"].startswith("Basic")
    assert_absent(node, P + name)


@pytest.mark.parametrize(
    "header",
    [
        "Basic " + base64.b64encode(b"300%3A0.NA/88.118:wrong-secret").decode(),
        "Basic " + base64.b64encode(b"300%3A0.NA/88.118:").decode(),
        "Basic " + base64.b64encode(b"301%3A0.NA/88.118:test-admin-secret-0123456789").decode(),
        "Basic " + base64.b64encode(b"300%3A88.118/nobody:x").decode(),
        "Basic " + base64.b64encode(b"garbage-without-colon").decode(),
        "Basic " + base64.b64encode(b"abc%3A0.NA/88.118:x").decode(),
        "Basic !!!not-base64",
        "Bearer abc.def",
        'Handle sessionId="x"',
    ],
)
def test_wrong_credentials_are_403_code_403(node: Node, name: str, header: str) -> None:
    reply = node.request("PUT", P + name, record(GOOD), headers={"Authorization": header})
    assert_refused(reply, 403, 403)
    assert_absent(node, P + name)


def test_identities_without_grants_may_not_write(node: Node, name: str) -> None:
    user = f"88.118.6/{name}-user"
    node.put("/api/handles/" + user, record({"index": 300, "type": "HS_SECKEY", "data": "s3cret"}), auth=ADMIN)
    reply = node.put(P + name, record(GOOD), auth=(f"300:{user}", "s3cret"))
    assert_refused(reply, 403, 401, "lacks the add handle permission")
    assert_absent(node, P + name)


def test_unsupported_methods_are_405_code_5(node: Node, name: str) -> None:
    for method in ("POST", "PATCH"):
        reply = node.request(method, P + name, record(GOOD), auth=ADMIN)
        assert_refused(reply, 405, 5, method)
        assert "PUT" in reply.headers["allow"]
    assert_absent(node, P + name)


@pytest.mark.parametrize("query", ["overwrite=maybe", "index=abc", "index=0", "index=various&index=x"])
def test_bad_query_parameters_are_400(node: Node, name: str, query: str) -> None:
    reply = node.put(f"{P}{name}?{query}", record(GOOD), auth=ADMIN)
    assert reply.status == 400 and reply.json["message"]
    assert_absent(node, P + name)


def test_not_responsible_writes_are_refused_before_the_body_is_read(node: Node) -> None:
    reply = node.put("/api/handles/88.200/x", {"not": "values"}, auth=ADMIN)
    assert_refused(reply, 400, 301, "88.118")


def test_identity_is_encoded_as_handle_net_does(node: Node, name: str) -> None:
    # ':' inside the identity must be percent-encoded; a raw one splits user and secret.
    raw = base64.b64encode(f"{ADMIN_USER}:test-admin-secret-0123456789".encode()).decode()
    reply = node.request("PUT", P + name, record(GOOD), headers={"Authorization": "Basic " + raw})
    assert reply.status == 403
