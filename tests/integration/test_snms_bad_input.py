"""SNMS's management API refusing what it must: every malformed or unauthorised request gets
SNMS's envelope with HTTP 200 and status -1, -2 or -3 (never -4, never a 5xx), and nothing
is written where a request was refused."""

from __future__ import annotations

import copy
import itertools
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from registry.identity.auth import Identity
from registry.identity.tokens import TokenSigner, load_key
from tests.conftest import LIMITS_OFF, store_for
from tests.support.nodeproc import Node, basic, record
from tests.support.snmsclient import (
    NODE_ADMIN,
    NODE_ARGS,
    Snms,
    enterprise,
    envelope,
    identifier,
    item,
    logged_in,
    secret_of,
    template,
    value,
)

STORE_BACKENDS = ("sqlite", "postgresql")

A, B, C = "88.300.1", "88.300.2", "88.300.3"  # three enterprises; C's secret changes
VERSION = "1.0"
FIELDS = (
    item("名称", "name", 2000, 2, 8, required=True),
    item("网址", "url", 2001, 1, 20),
    item("旧", "old", 2002, 1, 20),  # disabled once the template is made
)
_n = itertools.count()
Body = Callable[[dict[str, Any]], Any]


@pytest.fixture(scope="module")
def snms_node(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[Node]:
    with store_for(backend) as store:
        node = Node(tmp_path_factory.mktemp("snms") / "data", args=NODE_ARGS, env=LIMITS_OFF, store=store).start()
        for prefix in (A, B, C):
            enterprise(node, prefix)
            client = logged_in(node, prefix)
            assert envelope(client.call("POST", "/snms/api/v5/template", template(prefix, VERSION, *FIELDS)))[0] == 1
            disable = template(prefix, VERSION, dict(FIELDS[2], state=0))
            assert envelope(client.call("PUT", "/snms/api/v5/template", disable))[0] == 1
        yield node
        node.stop()


@pytest.fixture(scope="module")
def a(snms_node: Node) -> Snms:
    return logged_in(snms_node, A)


def good(prefix: str = A) -> dict[str, Any]:
    return identifier(f"{prefix}/h{next(_n)}", VERSION, value(2000, "name", "电机M3"), value(2001, "url", "u"))


def refused(reply: Any, status: int = -2) -> str:
    """The message of an answer that is SNMS's refusal ``status``."""
    got, message, data = envelope(reply)
    assert (got, data) == (status, None) and message, reply.body
    return message


def absent(node: Node, handle: str) -> None:
    assert node.get(f"/api/handles/{handle}").status == 404, f"{handle} was written"


def values_of(node: Node, handle: str) -> list[tuple[int, str]]:
    return [(v["index"], v["data"]["value"]) for v in node.get(f"/api/handles/{handle}").json["values"]]


def at(path: str, new: Any) -> Body:
    """A change of a good body: the member at ``path`` (``value.0.data``) set to ``new``, or removed (``...``)."""

    def change(body: dict[str, Any]) -> Any:
        body = copy.deepcopy(body)
        *parents, last = path.split(".")
        node: Any = body
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        if new is ...:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = new
        return body

    return change


BAD_ITEMS: dict[str, Body] = {
    "not an object: array": lambda b: [b],
    "not an object: string": lambda b: "x",
    "not an object: number": lambda b: 1,
    "not an object: null (single: no body)": lambda b: None,
    "handle missing": at("handle", ...),
    "handle not a string": at("handle", 7),
    "handle 256 characters": lambda b: dict(b, handle=(b["handle"] + "x" * 256)[:256]),
    "templateVersion missing": at("templateVersion", ...),
    "templateVersion 129 characters": at("templateVersion", "v" * 129),
    "templateVersion unknown": at("templateVersion", "9.9"),
    "value missing": at("value", ...),
    "value empty": at("value", []),
    "value not an array": at("value", {"index": 2000}),
    "value item not an object": at("value.0", "x"),
    "index missing": at("value.0.index", ...),
    "index not a number": at("value.0.index", "abc"),
    "index 0": at("value.0.index", 0),
    "index 1001": at("value.0.index", 1001),
    "index repeated": lambda b: dict(b, value=[b["value"][0], b["value"][0]]),
    "type missing": at("value.0.type", ...),
    "type 129 characters": at("value.0.type", "t" * 129),
    "data missing": at("value.0.data", ...),
    "data not an object": at("value.0.data", "x"),
    "data.value missing": at("value.0.data.value", ...),
    "data.value not a string": at("value.0.data.value", 12),
    "data.value 256 characters": at("value.1.data.value", "x" * 256),
    "format not string": at("value.0.data.format", "base64"),
    "auth not a string": at("value.0.auth", {"x": 1}),
    "type not the template's idType": at("value.0.type", "url"),
    "index not in the template": at("value.1.index", 2005),
    "disabled item": lambda b: dict(b, value=[*b["value"], value(2002, "old", "x")]),
    "below minLength": at("value.0.data.value", "x"),
    "above maxLength": at("value.0.data.value", "x" * 9),
    "required item missing": lambda b: dict(b, value=b["value"][1:]),
    "outside the node prefix": lambda b: dict(b, handle="86.709.612/x"),
    "a prefix handle": lambda b: dict(b, handle=f"0.NA/{A}.9"),
}


def handle_of(body: Any) -> str | None:
    shown = body.get("handle") if isinstance(body, dict) else None
    return shown if isinstance(shown, str) and 0 < len(shown) <= 255 else None


@pytest.mark.parametrize("case", BAD_ITEMS)
def test_bad_item_is_refused_by_create_update_and_the_batches(snms_node: Node, a: Snms, case: str) -> None:
    existing = good()
    assert envelope(a.call("POST", "/identityv2/data", existing))[0] == 1
    before = values_of(snms_node, existing["handle"])
    bad = BAD_ITEMS[case](good())
    refused(a.call("POST", "/identityv2/data", bad))
    if (handle := handle_of(bad)) is not None and handle.startswith(f"{A}/"):
        absent(snms_node, handle)
    results = envelope(a.call("POST", "/identityv2/data/batchCreate", [bad, good()]))[2]
    assert results[0]["msg"] not in ("", "success") and results[1]["msg"] == "success"
    if handle is not None and handle.startswith(f"{A}/"):
        absent(snms_node, handle)

    on_existing = BAD_ITEMS[case](dict(good(), handle=existing["handle"]))
    if isinstance(on_existing, dict) and on_existing.get("handle") == existing["handle"]:
        refused(a.call("PUT", "/identityv2/data", on_existing))
        results = envelope(a.call("PUT", "/identityv2/data/batchUpdate", [on_existing]))[2]
        assert results[0]["msg"] != "success"
        assert values_of(snms_node, existing["handle"]) == before


@pytest.mark.parametrize("prefix_has_template", [True, False])
def test_another_enterprises_prefix_is_no_permission(snms_node: Node, a: Snms, prefix_has_template: bool) -> None:
    body = good(B if prefix_has_template else f"{B}.7")  # B's, with or without a template of that version
    assert "没有权限" in refused(a.call("POST", "/identityv2/data", body), -3)
    absent(snms_node, body["handle"])
    assert envelope(a.call("POST", "/identityv2/data/batchCreate", [body]))[2][0]["msg"].startswith("没有权限")
    absent(snms_node, body["handle"])
    theirs = good(B)
    assert envelope(logged_in(snms_node, B).call("POST", "/identityv2/data", theirs))[0] == 1
    refused(a.call("PUT", "/identityv2/data", dict(theirs, value=theirs["value"][:1])), -3)
    refused(a.call("DELETE", "/identityv2/data", {"handle": theirs["handle"]}), -3)
    assert envelope(a.call("DELETE", "/identityv2/data/batchDelete", [theirs["handle"]]))[2][0]["code"] == -3
    assert values_of(snms_node, theirs["handle"]) == [(1001, VERSION), (2000, "电机M3"), (2001, "u")]


ENDPOINTS = [
    ("POST", "/identity/token"),
    ("POST", "/identity/token/v1"),
    ("POST", "/identityv2/data"),
    ("PUT", "/identityv2/data"),
    ("DELETE", "/identityv2/data"),
    ("POST", "/identityv2/data/batchCreate"),
    ("PUT", "/identityv2/data/batchUpdate"),
    ("DELETE", "/identityv2/data/batchDelete"),
    ("POST", "/snms/api/v5/template"),
    ("PUT", "/snms/api/v5/template"),
    ("DELETE", "/snms/api/v5/template"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_malformed_json_and_wrong_body_kinds(a: Snms, method: str, path: str) -> None:
    for raw in (b"{bad", b"", b"\xff\xfe{}", b'{"handle": "88.300.1/x"', b"[" * 100_000):
        refused(a.call(method, path, raw=raw))
    batch = "batch" in path
    for body in ([], {}, "x", 7, None, True) if batch else ([], "x", 7, None, True, [{}]):
        refused(a.call(method, path, raw=b"null" if body is None else None, body=body))


def test_batch_limits_and_bad_delete_items(snms_node: Node, a: Snms) -> None:
    kept = good()
    assert envelope(a.call("POST", "/identityv2/data", kept))[0] == 1
    many = [good() for _ in range(2001)]
    assert "2000" in refused(a.call("POST", "/identityv2/data/batchCreate", many))
    absent(snms_node, many[0]["handle"])
    absent(snms_node, many[-1]["handle"])
    many[0] = dict(kept, value=kept["value"][:1])
    assert "2000" in refused(a.call("PUT", "/identityv2/data/batchUpdate", many))
    assert "2000" in refused(a.call("DELETE", "/identityv2/data/batchDelete", [kept["handle"]] * 2001))
    assert values_of(snms_node, kept["handle"]) == [(1001, VERSION), (2000, "电机M3"), (2001, "u")]

    items = [7, "", None, "x" * 256, "86.709.612/x", f"{A}/never", kept["handle"]]
    results = envelope(a.call("DELETE", "/identityv2/data/batchDelete", items))[2]
    assert [r["code"] for r in results] == [-2] * 6 + [1]
    assert results[5] == {"handle": f"{A}/never", "code": -2, "msg": "标识不存在"}
    for body in ({}, {"handle": ""}, {"handle": 5}, {"handle": "x" * 256}, {"handle": f"{A}/never"}):
        refused(a.call("DELETE", "/identityv2/data", body))


def test_detail_refusals(a: Snms) -> None:
    assert refused(a.call("GET", "/identityv2/data/detail")) == "缺少必要的请求参数: handle"
    refused(a.call("GET", "/identityv2/data/detail?handle="))
    refused(a.detail(f"{A}/" + "x" * 250))
    refused(a.detail("86.709.612/x"))
    assert refused(a.detail(f"{A}/never")) == "没有找到标识"


LOGIN_BODIES: list[Any] = [
    {},
    {"username": A},
    {"password": "x"},
    {"username": "", "password": "x"},
    {"username": A, "password": ""},
    {"username": 5, "password": "x"},
    {"username": A, "password": ["x"]},
    {"username": "u" * 256, "password": "x"},
    {"username": A, "password": "p" * 1025},
    {"username": "300:0.NA/88.300.1:9", "password": "x"},
    {"username": "99999999999:0.NA/88.300.1", "password": "x"},
    {"username": "0.NA/" + "u" * 250, "password": "x"},
    {"username": "86.709.612", "password": "x"},
    {"username": "300:", "password": "x"},
    [A, "x"],
    "x",
    None,
]


@pytest.mark.parametrize("path", ["/identity/token", "/identity/token/v1"])
def test_login_refusals(snms_node: Node, path: str) -> None:
    for body in LOGIN_BODIES:
        reply = snms_node.request("POST", path, body, raw=b"null" if body is None else None)
        refused(reply)
    assert refused(Snms(snms_node).login(A, secret_of(B), path)) == "用户名/密码错误！"


def test_tokens_that_are_refused(snms_node: Node, a: Snms) -> None:
    mine = good()
    assert envelope(a.call("POST", "/identityv2/data", mine))[0] == 1
    header, claims, signature = a.token.split(".")
    key = load_key(snms_node.data_dir / "snms-token-key")
    identity = Identity(300, f"0.NA/{A}")
    expired = TokenSigner(key, clock=lambda: time.time() - 90_000).issue(identity, b"whatever", 0)
    foreign = TokenSigner(os.urandom(32)).issue(identity, b"whatever", 0)
    b_claims = logged_in(snms_node, B).token.split(".")[1]
    bad = {
        "no header": {},
        "empty bearer": {"Authorization": "Bearer "},
        "wrong scheme": {"Authorization": f"Token {a.token}"},
        "basic, right credentials": {"Authorization": basic(f"300:0.NA/{A}", secret_of(A))},
        "garbage": {"Authorization": "Bearer not-a-token"},
        "three garbage parts": {"Authorization": "Bearer a.b.c"},
        "forged signature": {"Authorization": f"Bearer {header}.{claims}.{signature[:-4]}AAAA"},
        "another's claims": {"Authorization": f"Bearer {header}.{b_claims}.{signature}"},
        "another key": {"Authorization": f"Bearer {foreign}"},
        "expired": {"Authorization": f"Bearer {expired}"},
        "too long": {"Authorization": f"Bearer {a.token}{'A' * 3000}"},
        "not ascii": {"Authorization": f"Bearer {a.token}é"},
    }
    for case, headers in bad.items():
        detail = snms_node.request("GET", f"/identityv2/data/detail?handle={mine['handle']}", headers=headers)
        assert envelope(detail)[0] == -1, case
        body = good()
        assert envelope(snms_node.request("POST", "/identityv2/data", body, headers=headers))[0] == -1, case
        absent(snms_node, body["handle"])
    assert "过期" in envelope(Snms(snms_node, expired).detail(mine["handle"]))[1]


def test_a_token_is_void_once_the_secret_changes(snms_node: Node) -> None:
    c = logged_in(snms_node, C)
    assert envelope(c.detail(f"{C}/none"))[0] == -2  # the token works
    secret = "a-new-secret-for-c-0123"
    new = record({"index": 300, "type": "HS_SECKEY", "data": secret})
    assert snms_node.put(f"/api/handles/0.NA/{C}?index=300", new, auth=NODE_ADMIN).status == 200
    body = good(C)
    assert "token已失效" in refused(c.call("POST", "/identityv2/data", body), -1)
    absent(snms_node, body["handle"])
    refused(c.call("POST", "/snms/api/v5/template", template(C, "2.0", *FIELDS[:1])), -1)
    refused(Snms(snms_node).login(C, secret_of(C)))
    again = Snms(snms_node)
    assert envelope(again.login(C, secret))[0] == 1
    assert envelope(again.call("POST", "/identityv2/data", body))[0] == 1


TEMPLATE_BODIES: dict[str, Body] = {
    "prefix missing": at("prefix", ...),
    "version missing": at("version", ...),
    "version 129 characters": at("version", "v" * 129),
    "version with a control character": at("version", "1\n0"),
    "industryCategory missing": at("industryCategory", ...),
    "type 3": at("type", 3),
    "items missing": at("items", ...),
    "items empty": at("items", []),
    "item name missing": at("items.0.name", ...),
    "idType missing": at("items.0.idType", ...),
    "idType 129 characters": at("items.0.idType", "t" * 129),
    "idIndex 1999": at("items.0.idIndex", 1999),
    "idIndex 1001": at("items.0.idIndex", 1001),
    "metadata missing": at("items.0.metadata", ...),
    "metadata.type String": at("items.0.metadata.type", "String"),
    "minLength above maxLength": at("items.0.metadata.minLength", 99),
    "maxLength missing": at("items.0.metadata.maxLength", ...),
    "state 2": at("items.0.state", 2),
    "required not a boolean": at("items.0.required", "yes"),
    "idType repeated": lambda b: dict(b, items=[b["items"][0], dict(b["items"][0], name="x", idIndex=2001)]),
}


@pytest.mark.parametrize("case", TEMPLATE_BODIES)
def test_bad_template_is_refused_and_not_made(a: Snms, case: str) -> None:
    version = f"bad-{next(_n)}"
    body = TEMPLATE_BODIES[case](template(A, version, *FIELDS[:2]))
    refused(a.call("POST", "/snms/api/v5/template", body))
    if case != "version with a control character":
        refused(a.call("GET", f"/snms/api/v5/template?prefix={A}&version={version}"))


def test_template_refusals(snms_node: Node, a: Snms) -> None:
    query = f"/snms/api/v5/template?prefix={A}&version={VERSION}"
    before = envelope(a.call("GET", query))[2]
    assert "已存在" in refused(a.call("POST", "/snms/api/v5/template", template(A, VERSION, *FIELDS[:1])))
    retyped = template(A, VERSION, dict(FIELDS[0], idType="title", state=1))
    assert "2000" in refused(a.call("PUT", "/snms/api/v5/template", retyped))
    refused(a.call("PUT", "/snms/api/v5/template", template(A, "9.9", dict(FIELDS[0], state=1))))
    refused(a.call("DELETE", "/snms/api/v5/template", {"prefix": A, "version": "9.9"}))
    refused(a.call("DELETE", "/snms/api/v5/template", {"prefix": A}))
    refused(a.call("GET", f"/snms/api/v5/template?prefix={A}"))
    refused(a.call("POST", "/snms/api/v5/template", template(B, "3.0", *FIELDS[:1])), -3)
    refused(a.call("PUT", "/snms/api/v5/template", template(B, VERSION, dict(FIELDS[0], state=0))), -3)
    refused(a.call("DELETE", "/snms/api/v5/template", {"prefix": B, "version": VERSION}), -3)
    refused(a.call("POST", "/snms/api/v5/template", template("86.709.612", "1", *FIELDS[:1])))
    assert envelope(a.call("GET", query))[2] == before
    theirs = envelope(logged_in(snms_node, B).call("GET", query.replace(A, B)))
    assert theirs[0] == 1 and theirs[2]["items"][0] == before["items"][0]  # B's own, untouched by A
    assert envelope(a.call("GET", query.replace(A, B)))[2] == theirs[2]  # templates are public, as REST's are
