"""No reader sees an HS_SECKEY's data (security issue #21, finding 1).

The stored value is the Handle protocol's MAC key: whoever reads it can answer a challenge as
its owner. So a read-only identity, the prefix admin and the node admin alike see the value's
index and type with its data withheld, over REST (plain, filtered, proxy), SNMS's detail, the
Handle protocol and ``idnode export``; the audit log never carries it; and only a write changes it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from protocol.codes import ResponseCode
from protocol.wire.message import ResolutionResponse
from tests.integration.test_permissions import admin_value
from tests.support.handleclient import resolution, tcp, udp
from tests.support.nodeproc import ADMIN, Auth, Node, record
from tests.support.snmsclient import Snms

PREFIX = "88.118.30"
PREFIX_HANDLE = f"0.NA/{PREFIX}"
SECRET = "enterprise-secret-30"
STORED = hashlib.sha1(SECRET.encode()).hexdigest()  # what the store holds: the MAC key
OWNER = (f"300:{PREFIX_HANDLE}", SECRET)
READER = (f"300:{PREFIX}/reader", "reader-secret-30")
READ_ONLY = "010000000000"  # read_value only
WITHHELD = {"format": "hash", "value": ""}


@pytest.fixture
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = Node(tmp_path_factory.mktemp("seckey") / "data").start()
    reader_grant = admin_value(f"{PREFIX}/reader", permissions=READ_ONLY)
    reader_grant["index"] = 101
    made = node.put(
        f"/api/handles/{PREFIX_HANDLE}",
        record(admin_value(PREFIX_HANDLE), reader_grant, {"index": 300, "type": "HS_SECKEY", "data": SECRET}),
        auth=ADMIN,
    )
    assert made.status == 201, made.body
    reader = record({"index": 300, "type": "HS_SECKEY", "data": READER[1]})
    assert node.put(f"/api/handles/{PREFIX}/reader", reader, auth=OWNER).status == 201
    yield node
    node.stop()


def authenticates(node: Node, who: Auth) -> bool:
    reply = node.get(f"/api/handles/{PREFIX_HANDLE}", auth=who)
    return reply.status == 200


def seckey_of(values: list[dict[str, object]]) -> dict[str, object]:
    (shown,) = [v for v in values if v["index"] == 300]
    return shown


@pytest.mark.parametrize("who", [READER, OWNER, ADMIN], ids=["read-only", "prefix-admin", "node-admin"])
def test_rest_reads_show_the_secret_without_its_data(node: Node, who: Auth) -> None:
    for query in ("", "?index=300", "?type=HS_SECKEY", "?index=300&type=HS_ADMIN"):
        reply = node.get(f"/api/handles/{PREFIX_HANDLE}{query}", auth=who)
        assert reply.status == 200, (query, reply.body)
        assert STORED.encode() not in reply.body and SECRET.encode() not in reply.body, query
        shown = seckey_of(reply.json["values"])
        assert (shown["type"], shown["data"]) == ("HS_SECKEY", WITHHELD), query
        assert "timestamp" in shown and "ttl" in shown and shown["permissions"] == "1100"
    for path in (f"/{PREFIX_HANDLE}?noredirect", f"/api/handles?prefix={PREFIX}"):
        reply = node.get(path, auth=who)
        assert STORED.encode() not in reply.body, path


@pytest.mark.parametrize("username", [READER[0], PREFIX], ids=["read-only", "prefix-admin"])
def test_snms_detail_shows_the_secret_without_its_data(node: Node, username: str) -> None:
    client = Snms(node)
    password = READER[1] if username == READER[0] else SECRET
    assert client.login(username, password).json["status"] == 1
    reply = client.detail(PREFIX_HANDLE)
    assert reply.json["status"] == 1, reply.body
    assert STORED.encode() not in reply.body
    shown = seckey_of(reply.json["data"]["value"])
    assert (shown["type"], shown["data"], shown["auth"]) == ("HS_SECKEY", WITHHELD, "0")


def test_the_handle_protocol_never_serves_the_secret(node: Node) -> None:
    for answer in (
        tcp(node.handle_port, resolution(PREFIX_HANDLE))[0],
        tcp(node.handle_port, resolution(PREFIX_HANDLE, indexes=(300,)))[0],
        udp(node.handle_port, resolution(PREFIX_HANDLE, types=("HS_SECKEY",))),
    ):
        if isinstance(answer.body, ResolutionResponse):
            assert all(v.data != STORED.encode() for v in answer.body.values)
        else:
            assert answer.response_code == ResponseCode.VALUES_NOT_FOUND


def idnode(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "resolver.cli", *args], input=stdin, capture_output=True, timeout=300, check=False
    )


def test_export_carries_no_secret_and_its_import_replaces_none(node: Node) -> None:
    where = ["--data-dir", str(node.data_dir)]
    exported = idnode("export", *where)
    assert exported.returncode == 0, exported.stderr
    assert STORED.encode() not in exported.stdout
    items = {item["handle"].upper(): item for item in map(json.loads, exported.stdout.splitlines())}
    assert seckey_of(items[PREFIX_HANDLE]["values"])["data"] == WITHHELD
    again = idnode("import", "-", *where, stdin=exported.stdout)
    assert again.returncode != 0 and b"withheld" in again.stderr + again.stdout
    assert authenticates(node, OWNER) and authenticates(node, READER)


def test_the_audit_log_carries_no_secret(node: Node) -> None:
    node.put(
        f"/api/handles/{PREFIX_HANDLE}?index=300", record({"index": 300, "type": "HS_SECKEY", "data": ""}), auth=OWNER
    )
    for who in (ADMIN, OWNER):
        reply = node.get(f"/api/audit?prefix={PREFIX}&limit=1000", auth=who)
        assert reply.status == 200 and reply.json["entries"], reply.body
        assert STORED.encode() not in reply.body and SECRET.encode() not in reply.body


def test_only_a_write_changes_the_secret_and_a_read_sent_back_is_refused(node: Node) -> None:
    shown = node.get(f"/api/handles/{PREFIX_HANDLE}", auth=OWNER).json["values"]
    sent_back = node.put(f"/api/handles/{PREFIX_HANDLE}", {"values": shown}, auth=OWNER)
    assert sent_back.status == 400 and "withheld" in sent_back.json["message"], sent_back.body
    one = node.put(f"/api/handles/{PREFIX_HANDLE}?index=300", {"values": [seckey_of(shown)]}, auth=OWNER)
    assert one.status == 400, one.body
    assert authenticates(node, OWNER)
    # Other values replaced with index=: the secret at 300 is kept as stored.
    desc = node.put(
        f"/api/handles/{PREFIX_HANDLE}?index=1", record({"index": 1, "type": "DESC", "data": "x"}), auth=OWNER
    )
    assert desc.status == 200, desc.body
    assert authenticates(node, OWNER) and authenticates(node, READER)
    changed = node.put(
        f"/api/handles/{PREFIX_HANDLE}?index=300",
        record({"index": 300, "type": "HS_SECKEY", "data": "new-30"}),
        auth=OWNER,
    )
    assert changed.status == 200, changed.body
    assert authenticates(node, (OWNER[0], "new-30")) and not authenticates(node, OWNER)
