"""SNMS's management API, replayed from its documentation (tests/snms/) against a real node.

Each documented request is sent as the docs give it; the answer must have the documented
status and the documented shape (keys and JSON types), and where the docs show an error,
the same error for the same cause. What SNMS writes is what the other front-ends see at
once: the REST API and the Handle protocol resolve it, REST writes naming an SNMS template
show in SNMS's detail, and the audit log and statistics count SNMS's writes.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest

from protocol.codes import ResponseCode
from protocol.wire.message import ResolutionResponse
from registry.identity.tokens import dated_password
from tests.conftest import LIMITS_OFF, store_for
from tests.support.handleclient import resolution, tcp, udp
from tests.support.nodeproc import Node, record
from tests.support.snmsclient import (
    NODE_ARGS,
    Snms,
    documented_shape,
    enterprise,
    envelope,
    example,
    identifier,
    item,
    logged_in,
    secret_of,
    sha256hex,
    template,
    value,
)

STORE_BACKENDS = ("sqlite", "postgresql")

# The examples' prefixes (88.709.612 for batchDelete's 86.709.612, see tests/snms/README.md).
PREFIXES = ("88.101.5", "88.101.0042", "88.1021.150", "88.709.911", "88.709.612", "88.888.888")
DATED = "88.101.6"  # an enterprise whose secret is the dated-login example's


@pytest.fixture(scope="module")
def snms_node(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[Node]:
    with store_for(backend) as store:
        node = Node(tmp_path_factory.mktemp("snms") / "data", args=NODE_ARGS, env=LIMITS_OFF, store=store).start()
        for prefix in PREFIXES:
            enterprise(node, prefix)
        yield node
        node.stop()


@pytest.fixture(scope="module")
def sessions(snms_node: Node) -> dict[str, Snms]:
    return {prefix: logged_in(snms_node, prefix) for prefix in PREFIXES}


def basic(prefix: str) -> tuple[str, str]:
    return f"300:0.NA/{prefix}", secret_of(prefix)


def succeeds(reply: Any, name: str) -> Any:
    """The data of a successful answer to example ``name``'s request, whose shape is the documented one."""
    status, message, data = envelope(reply)
    assert (status, message) == (1, "success"), reply.body
    assert documented_shape(name, reply.json) == []
    return data


def is_documented_error(reply: Any, name: str) -> None:
    assert envelope(reply) and reply.json == example(name)["error"]


def resolved(node: Node, handle: str) -> dict[str, list[tuple[int, str, str]]]:
    """What the REST API and the Handle protocol (UDP, TCP) answer for ``handle``: (index, type, data)s."""
    rest = node.get(f"/api/handles/{handle}")
    assert rest.status == 200, rest.body
    seen = {"rest": [(v["index"], v["type"], v["data"]["value"]) for v in rest.json["values"]]}
    for name, answer in (("udp", udp(node.handle_port, resolution(handle))),
                         ("tcp", tcp(node.handle_port, resolution(handle))[0])):  # fmt: skip
        assert answer.response_code == ResponseCode.SUCCESS and isinstance(answer.body, ResolutionResponse)
        seen[name] = [(v.index, v.type, v.data.decode()) for v in answer.body.values]
    return seen


def audited(node: Node, prefix: str) -> list[tuple[str, str, str, int]]:
    entries = node.get(f"/api/audit?prefix={prefix}&limit=1000", auth=basic(prefix)).json["entries"]
    return [(e["identity"], e["operation"], e["handle"], e["responseCode"]) for e in entries]


# Login ------------------------------------------------------------------------------------


def test_plain_login_example(snms_node: Node) -> None:
    """The example's user "admin" and password "******" stand for an enterprise's prefix and secret."""
    prefix = PREFIXES[0]
    client = Snms(snms_node)
    token = succeeds(client.login(prefix, secret_of(prefix)), "login")["token"]
    header, claims, _ = token.split(".")
    assert json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))) == {"alg": "HS256", "typ": "JWT"}
    decoded = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    assert decoded["sub"] == f"300:0.NA/{prefix}" and decoded["exp"] - decoded["iat"] == 24 * 3600
    is_documented_error(client.login(prefix, "******"), "login")
    is_documented_error(client.login("admin", "******"), "login")
    for username in (f"300:0.NA/{prefix}", f"0.NA/{prefix}"):  # an identity; a handle (its HS_SECKEY at 300)
        assert succeeds(Snms(snms_node).login(username, secret_of(prefix)), "login")["token"]


def today_in_china(shift: int = 0) -> dt.date:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(hours=8, days=shift)).date()


def test_dated_login_example(snms_node: Node) -> None:
    ex = example("login_v1")
    secret, path = ex["vector"]["secret"], ex["path"]
    day = dt.date.fromisoformat(ex["vector"]["date"])
    assert dated_password(sha256hex(secret), day) == ex["request"]["password"]  # the docs' formula, as we read it
    enterprise(snms_node, DATED, secret)  # set in clear: the node learns what the dated login needs
    client = Snms(snms_node)

    def login(password: str) -> Any:
        return client.login(DATED, password, path)

    is_documented_error(login(ex["request"]["password"]), "login_v1")  # 2019-08-15's
    for shift in (-1, 0, 1):  # China's yesterday, today and tomorrow
        assert succeeds(login(dated_password(sha256hex(secret), today_in_china(shift))), "login_v1")["token"]
    for wrong in (dated_password(sha256hex(secret), today_in_china(-2)), dated_password(sha256hex("x"), day), secret):
        is_documented_error(login(wrong), "login_v1")
    assert envelope(client.detail(f"{DATED}/none"))[:2] == (-2, "没有找到标识")  # the token works


# Templates --------------------------------------------------------------------------------


def snms_items(reply: Any) -> dict[int, dict[str, Any]]:
    data = succeeds(reply, "template_get")
    return {i["idIndex"]: i for i in data["items"]}


def test_template_examples_post_get_put(sessions: dict[str, Snms]) -> None:
    client = sessions["88.101.5"]
    posted = example("template_post")["request"]
    query = f"/snms/api/v5/template?prefix=88.101.5&version={posted['version']}"
    assert client.replay("template_post").json == example("template_post")["response"]
    status, message, _ = envelope(client.replay("template_post"))
    assert status == -2 and "已存在" in message  # a version is created once
    data = succeeds(client.call("GET", query), "template_get")
    assert {k: data[k] for k in posted if k != "items"} == {k: v for k, v in posted.items() if k != "items"}
    e1 = {k: v for k, v in posted["items"][0].items()} | {"idIndex": 2000, "state": 1}
    assert data["items"] == [e1]
    assert client.call("GET", query.replace("v5", "v3")).json["data"] == data  # v3's GET: the same template

    assert client.replay("template_put").json == example("template_put")["response"]
    assert snms_items(client.call("GET", query)) == {2000: e1}
    edit = copy.deepcopy(example("template_put")["request"])
    edit["items"] = [item("e2", "mac", None, 1, 17, state=1)]  # no idIndex: a new item, at the lowest free one
    assert envelope(client.call("PUT", "/snms/api/v5/template", edit))[0] == 1
    edit["items"] = [dict(posted["items"][0], state=0)]  # disabled, not deleted; e2, omitted, stays
    assert envelope(client.call("PUT", "/snms/api/v5/template", edit))[0] == 1
    items = snms_items(client.call("GET", query))
    assert items[2000] == e1 | {"state": 0}
    assert items[2001] == {"name": "e2", "idType": "mac", "idIndex": 2001, "required": False, "state": 1,
                           "metadata": {"type": "string", "minLength": 1, "maxLength": 17}}  # fmt: skip
    status, message, _ = envelope(client.call("PUT", "/snms/api/v5/template", dict(edit, version="9.9")))
    assert status == -2 and "不存在" in message  # PUT edits; a version is not created nor renamed by it


def test_template_get_and_delete_examples(sessions: dict[str, Snms]) -> None:
    ip = example("template_post")["request"]["items"][0]
    shop = sessions["88.888.888"]
    assert envelope(shop.call("POST", "/snms/api/v5/template", template("88.888.888", "test", ip)))[0] == 1
    data = succeeds(shop.replay("template_get"), "template_get")
    assert (data["prefix"], data["version"], data["items"][0]["idType"]) == ("88.888.888", "test", "ip")

    factory = sessions["88.101.0042"]
    assert envelope(factory.call("POST", "/snms/api/v5/template", template("88.101.0042", "1.0.1", ip)))[0] == 1
    assert factory.replay("template_delete").json == example("template_delete")["response"]
    gone = factory.call("GET", "/snms/api/v5/template?prefix=88.101.0042&version=1.0.1")
    assert envelope(gone)[0] == -2 and envelope(factory.replay("template_delete"))[0] == -2


# Identifiers ------------------------------------------------------------------------------


def test_identifier_examples_create_detail_update_delete(snms_node: Node, sessions: dict[str, Snms]) -> None:
    client = sessions["88.1021.150"]
    created = example("create")["request"]
    handle, version = created["handle"], created["templateVersion"]
    name = item("名称", "name", 2000, 1, 32, required=True)
    assert envelope(client.call("POST", "/snms/api/v5/template", template("88.1021.150", version, name)))[0] == 1

    assert client.replay("create").json == example("create")["response"]
    assert client.replay("create").json == example("create")["response"]  # a retry after a lost answer
    other = identifier(handle, version, value(2000, "name", "另一个"))
    assert envelope(client.call("POST", "/identityv2/data", other))[:2] == (-2, "标识已存在")
    data = succeeds(client.detail(handle), "detail")
    assert (data["prefix"], data["handle"], data["templateVersion"]) == ("88.1021.150", handle, version)
    expected = [(1001, "TEMPLATE", version), (2000, "name", "小型机械01")]
    assert [(v["index"], v["type"], v["data"]["value"]) for v in data["value"]] == expected
    assert resolved(snms_node, handle) == {"rest": expected, "udp": expected, "tcp": expected}

    wrong = copy.deepcopy(created)
    wrong["value"][0]["index"] = 1000  # the documented error's cause
    is_documented_error(client.call("POST", "/identityv2/data", wrong), "create")

    assert client.replay("update").json == example("update")["response"]
    changed = identifier(handle, version, value(2000, "name", "小型机械02"))
    assert succeeds(client.call("PUT", "/identityv2/data", changed), "update") is True
    assert resolved(snms_node, handle)["udp"][1] == (2000, "name", "小型机械02")

    assert client.replay("delete").json == example("delete")["response"]
    is_documented_error(client.replay("delete"), "delete")
    assert snms_node.get(f"/api/handles/{handle}").status == 404
    assert envelope(client.detail(handle))[:2] == (-2, "没有找到标识")
    is_documented_error(client.call("GET", "/identityv2/data/detail"), "detail")

    me = "300:0.NA/88.1021.150"
    trail = audited(snms_node, "88.1021.150")
    for operation in ("create", "replace", "delete"):
        assert (me, operation, handle, 1) in trail, trail
    assert (me, "create", handle, ResponseCode.HANDLE_ALREADY_EXISTS) in trail  # the refused one too


def test_detail_example_reads_a_record_the_rest_api_wrote(snms_node: Node, sessions: dict[str, Snms]) -> None:
    """REST writes naming the SNMS template at 1001 are the template's records: checked, and SNMS shows them."""
    client = sessions["88.709.911"]
    handle = "88.709.911/123"  # the detail example's
    name = item("名称", "name", 2000, 1, 8, required=True)
    assert envelope(client.call("POST", "/snms/api/v5/template", template("88.709.911", "666", name)))[0] == 1
    uses = {"index": 1001, "type": "TEMPLATE", "data": "666"}
    too_long = snms_node.put(f"/api/handles/{handle}", record(uses, {"index": 2000, "type": "name", "data": "x" * 9}),
                             auth=basic("88.709.911"))  # fmt: skip
    assert too_long.status == 400 and envelope(client.replay("detail"))[0] == -2
    missing = snms_node.put(f"/api/handles/{handle}", record(uses), auth=basic("88.709.911"))
    assert missing.status == 400  # the required item
    fine = record(uses, {"index": 2000, "type": "name", "data": "电机"}, {"index": 1, "type": "URL", "data": "u"})
    assert snms_node.put(f"/api/handles/{handle}", fine, auth=basic("88.709.911")).status == 201
    data = succeeds(client.replay("detail"), "detail")
    assert (data["handle"], data["templateVersion"]) == (handle, "666")
    assert [(v["index"], v["data"]["value"]) for v in data["value"]] == [(1, "u"), (1001, "666"), (2000, "电机")]


def test_batch_examples(snms_node: Node, sessions: dict[str, Snms]) -> None:
    client = sessions["88.101.0042"]
    batch = example("batch_create")["request"]
    fields = (item("网址", "URL", 2000, 1, 100, required=True), item("网址2", "URL2", 2001, 1, 100))
    assert envelope(client.call("POST", "/snms/api/v5/template", template("88.101.0042", "1.0.0", *fields)))[0] == 1

    assert client.replay("batch_create").json == example("batch_create")["response"]
    other = copy.deepcopy(batch[0])
    other["value"][0]["data"]["value"] = "www.other.com"
    # The documented error: the first item again (a retry: success), then other values for it.
    assert client.call("POST", ex_path("batch_create"), [batch[0], other]).json == example("batch_create")["error"]
    stats = snms_node.get("/api/stats?prefix=88.101.0042", auth=basic("88.101.0042")).json["prefixes"]
    assert [(s["prefix"], s["handles"]) for s in stats] == [("88.101.0042", 2)]

    assert client.replay("batch_update").json == example("batch_update")["response"]
    for entry in batch:
        entry["value"][1]["data"]["value"] += "/new"
    updated = succeeds(client.call("PUT", ex_path("batch_update"), batch), "batch_update")
    assert updated == example("batch_update")["response"]["data"]
    assert resolved(snms_node, "88.101.0042/002")["tcp"][2] == (2001, "URL2", "www.004.com/new")
    trail = audited(snms_node, "88.101.0042")
    me = "300:0.NA/88.101.0042"
    assert {(me, "batch_create", h["handle"], 1) for h in batch} <= set(trail)
    assert (me, "batch_create", "88.101.0042/001", ResponseCode.HANDLE_ALREADY_EXISTS) in trail

    doomed = sessions["88.709.612"]
    url = item("网址", "URL", 2000)
    assert envelope(doomed.call("POST", "/snms/api/v5/template", template("88.709.612", "1", url)))[0] == 1
    handles = example("batch_delete")["request"]
    made = [identifier(h, "1", value(2000, "URL", f"www.{n}.com")) for n, h in enumerate(handles)]
    assert [r["msg"] for r in envelope(doomed.call("POST", ex_path("batch_create"), made))[2]] == ["success"] * 2
    assert doomed.replay("batch_delete").json == example("batch_delete")["response"]
    data = succeeds(doomed.replay("batch_delete"), "batch_delete")
    assert data == [{"handle": h, "code": -2, "msg": "标识不存在"} for h in handles]  # as the documented error
    assert documented_shape("batch_delete", doomed.replay("batch_delete").json, "error") == []
    assert all(snms_node.get(f"/api/handles/{h}").status == 404 for h in handles)


def ex_path(name: str) -> str:
    return str(example(name)["path"])
