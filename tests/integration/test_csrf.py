"""Cross-site forms cannot write (issue #21, finding 5).

A browser that has signed in to the API with Basic caches the credentials and sends them with
a form another site submits; such a form can only send text/plain, multipart/form-data or
application/x-www-form-urlencoded. Every write path takes a body only declared as JSON or
msgpack: anything else, or a body declaring no type, is refused with 415 (handle.net's error
body) or SNMS's envelope with status -2, and nothing is written.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.test_templates import TEMPLATE
from tests.support.nodeproc import ADMIN_SECRET, Node, Reply, basic, record, url_value
from tests.support.snmsclient import (
    NODE_ADMIN,
    NODE_ARGS,
    Snms,
    enterprise,
    envelope,
    identifier,
    item,
    logged_in,
    template,
    value,
)

PREFIX = "88.118.77"  # REST writes
ENTERPRISE = "88.101.77"  # SNMS writes
FOREIGN = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None]
NODE_ADMIN_USER = "300:0.NA/88"  # NODE_ADMIN's identity
URL = item("网址", "URL", 2000, 1, 100, required=True)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = Node(tmp_path_factory.mktemp("csrf") / "data", args=NODE_ARGS).start()
    enterprise(node, ENTERPRISE)
    yield node
    node.stop()


def send(node: Node, method: str, path: str, body: Any, kind: str | None, headers: dict[str, str]) -> Reply:
    """``body`` as JSON bytes declared as ``kind`` (no Content-Type at all when None)."""
    conn = http.client.HTTPConnection(node.url_host, node.port, timeout=30)
    sent = dict(headers)
    if kind is not None:
        sent["Content-Type"] = kind
    try:
        conn.request(method, path, body=json.dumps(body).encode(), headers=sent)
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def rest(node: Node, method: str, path: str, body: Any, kind: str | None) -> Reply:
    return send(node, method, path, body, kind, {"Authorization": basic(NODE_ADMIN_USER, ADMIN_SECRET)})


def refused_415(reply: Reply) -> None:
    assert reply.status == 415, (reply.status, reply.body[:300])
    assert reply.json["responseCode"] == 4
    assert "application/json" in reply.json["message"] and "application/msgpack" in reply.json["message"]


def exists(node: Node, handle: str) -> bool:
    return node.get(f"/api/handles/{handle}").status == 200


@pytest.mark.parametrize("kind", FOREIGN)
def test_rest_writes_take_no_foreign_body(node: Node, kind: str | None) -> None:
    tag = (kind or "none").split("/")[-1].split(";")[0]
    kept = f"{PREFIX}/kept-{tag}"
    assert node.put(f"/api/handles/{kept}", record(url_value(1, "https://a.example")), auth=NODE_ADMIN).status == 201

    put = f"{PREFIX}/put-{tag}"
    refused_415(rest(node, "PUT", f"/api/handles/{put}", record(url_value(1, "https://b.example")), kind))
    assert not exists(node, put)

    made = f"{PREFIX}/batch-{tag}"
    operations = [{"op": "create", "handle": made, "values": [url_value(1, "https://c.example")]}]
    refused_415(rest(node, "POST", "/api/batch", {"operations": operations}, kind))
    refused_415(rest(node, "POST", "/api/batch", {"operations": [{"op": "delete", "handle": kept}]}, kind))
    refused_415(rest(node, "DELETE", f"/api/handles/{kept}", {}, kind))
    assert not exists(node, made) and exists(node, kept)

    refused_415(rest(node, "PUT", f"/api/templates/{PREFIX}/t-{tag}", TEMPLATE, kind))
    assert node.get(f"/api/templates/{PREFIX}/t-{tag}").status == 404
    assert node.put(f"/api/templates/{PREFIX}/kept-{tag}", TEMPLATE, auth=NODE_ADMIN).status == 201
    refused_415(rest(node, "DELETE", f"/api/templates/{PREFIX}/kept-{tag}", {}, kind))
    assert node.get(f"/api/templates/{PREFIX}/kept-{tag}").status == 200


@pytest.mark.parametrize("kind", ["application/json", "application/json; charset=utf-8"])
def test_rest_writes_take_json(node: Node, kind: str) -> None:
    tag = "json" if ";" not in kind else "charset"
    handle = f"{PREFIX}/ok-{tag}"
    assert rest(node, "PUT", f"/api/handles/{handle}", record(url_value(1, "https://d.example")), kind).status == 201
    operations = [{"op": "create", "handle": f"{handle}-b", "values": [url_value(1, "https://e.example")]}]
    assert rest(node, "POST", "/api/batch", {"operations": operations}, kind).status == 200
    assert exists(node, handle) and exists(node, f"{handle}-b")
    assert node.delete(f"/api/handles/{handle}", auth=NODE_ADMIN).status == 200  # a DELETE with no body


def snms_call(client: Snms, method: str, path: str, body: Any, kind: str | None) -> tuple[int, str, Any]:
    return envelope(send(client.node, method, path, body, kind, {"Authorization": f"Bearer {client.token}"}))


def refused_snms(got: tuple[int, str, Any]) -> None:
    status, message, _ = got
    assert status == -2, got
    assert "application/json" in message, got


@pytest.mark.parametrize("kind", FOREIGN)
def test_snms_writes_take_no_foreign_body(node: Node, kind: str | None) -> None:
    tag = (kind or "none").split("/")[-1].split(";")[0].replace("-", "")
    client = logged_in(node, ENTERPRISE)
    version = f"1.0.{len(tag)}{tag}"
    # The login itself: a form could log in and learn nothing, but its body is refused all the same.
    login = {"username": ENTERPRISE, "password": "x"}
    refused_snms(envelope(send(node, "POST", "/identity/token", login, kind, {})))
    refused_snms(envelope(send(node, "POST", "/identity/token/v1", login, kind, {})))

    body = template(ENTERPRISE, version, URL)
    refused_snms(snms_call(client, "POST", "/snms/api/v5/template", body, kind))
    assert client.call("GET", f"/snms/api/v5/template?prefix={ENTERPRISE}&version={version}").json["status"] != 1
    assert envelope(client.call("POST", "/snms/api/v5/template", body))[0] == 1
    refused_snms(snms_call(client, "PUT", "/snms/api/v5/template", body, kind))
    refused_snms(snms_call(client, "DELETE", "/snms/api/v5/template", {"prefix": ENTERPRISE, "version": version}, kind))

    handle = f"{ENTERPRISE}/csrf-{tag}"
    data = identifier(handle, version, value(2000, "URL", "https://f.example"))
    refused_snms(snms_call(client, "POST", "/identityv2/data", data, kind))
    refused_snms(snms_call(client, "POST", "/identityv2/data/batchCreate", [data], kind))
    assert not exists(node, handle)
    assert envelope(client.call("POST", "/identityv2/data", data))[0] == 1
    changed = identifier(handle, version, value(2000, "URL", "https://g.example"))
    refused_snms(snms_call(client, "PUT", "/identityv2/data", changed, kind))
    refused_snms(snms_call(client, "PUT", "/identityv2/data/batchUpdate", [changed], kind))
    refused_snms(snms_call(client, "DELETE", "/identityv2/data", {"handle": handle}, kind))
    refused_snms(snms_call(client, "DELETE", "/identityv2/data/batchDelete", [handle], kind))
    assert "https://f.example" in node.get(f"/api/handles/{handle}").body.decode()
    got = client.call("GET", f"/snms/api/v5/template?prefix={ENTERPRISE}&version={version}").json
    assert got["status"] == 1, got
