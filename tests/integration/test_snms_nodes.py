"""SNMS tokens across processes and nodes, failed-login limits, and --no-snms.

A token is checked without a store read, so one login serves every worker of a node and
every node given the same --token-key-file (holding the same identity and secret).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from tests.conftest import LIMITS_OFF
from tests.integration.test_permissions import admin_value
from tests.support.nodeproc import Node, child_pids, record
from tests.support.snmsclient import (
    NODE_ADMIN,
    NODE_ARGS,
    Snms,
    dated,
    enterprise,
    envelope,
    identifier,
    item,
    logged_in,
    secret_of,
    template,
    value,
)

PREFIX = "88.101.0042"
URL = item("网址", "URL", 2000, 1, 100, required=True)


def with_template(node: Node, client: Snms | None = None) -> Snms:
    """PREFIX allocated on ``node`` with template 1.0.0; ``client`` (or a new login) makes the template."""
    enterprise(node, PREFIX)
    client = client or logged_in(node, PREFIX)
    assert envelope(client.call("POST", "/snms/api/v5/template", template(PREFIX, "1.0.0", URL)))[0] == 1
    return client


def server_sockets(pid: int, port: int) -> set[int]:
    """The client ports of the connections to ``port`` that process ``pid`` holds (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    peers = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
            peers.add(int(fields[2].rsplit(":", 1)[1], 16))
    return peers


def ask(conn: http.client.HTTPConnection, token: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
    """One request on a kept-alive connection; SNMS's envelope back."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    reply = conn.getresponse()
    assert reply.status == 200
    got: dict[str, Any] = json.loads(reply.read())
    return got


def test_one_login_serves_every_worker(tmp_path: Path) -> None:
    node = Node(tmp_path / "data", args=[*NODE_ARGS, "--workers", "2"]).start()
    try:
        assert node.proc is not None
        workers = child_pids(node.proc.pid)
        assert len(workers) == 2
        client = with_template(node)
        conns: list[http.client.HTTPConnection] = []
        served: dict[int, set[int]] = {}
        while len(conns) < 200 and not (len(conns) >= 16 and all(served.values())):
            conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
            conns.append(conn)  # kept open: the worker that accepted it holds its socket
            assert ask(conn, client.token, "GET", f"/identityv2/data/detail?handle={PREFIX}/none")["status"] == -2
            served = {pid: server_sockets(pid, node.port) for pid in workers}
        assert all(served.values()), f"the kernel gave every connection to one worker: {served}"
        for n, conn in enumerate(conns):
            body = identifier(f"{PREFIX}/w{n}", "1.0.0", value(2000, "URL", f"https://w{n}.example/"))
            assert ask(conn, client.token, "POST", "/identityv2/data", body) == {
                "message": "success",
                "status": 1,
                "data": True,
            }
        for n, conn in enumerate(conns):
            shown = ask(conn, client.token, "GET", f"/identityv2/data/detail?handle={PREFIX}/w{(n + 1) % len(conns)}")
            assert shown["status"] == 1 and shown["data"]["value"][1]["data"]["value"].startswith("https://w")
            conn.close()
    finally:
        node.stop()


def test_a_token_works_on_every_node_sharing_the_key(tmp_path: Path) -> None:
    key = tmp_path / "token-key"
    key.write_bytes(base64.b64encode(os.urandom(32)) + b"\n")
    args = [*NODE_ARGS, "--token-key-file", str(key), "--workers", "1"]
    first = Node(tmp_path / "one", args=args).start()
    try:
        enterprise(first, PREFIX)  # the identity's secret, written once: a token is bound to that write
    finally:
        first.stop()
    # Node two starts from a copy of node one's store, as nodes sharing one database see one write.
    shutil.copytree(tmp_path / "one", tmp_path / "two", ignore=shutil.ignore_patterns("*.lock"))
    one, two, other = (Node(tmp_path / name, args=args).start() for name in ("one", "two", "other"))
    try:
        made = template(PREFIX, "1.0.0", URL)
        token = logged_in(one, PREFIX).token
        assert envelope(Snms(one, token).call("POST", "/snms/api/v5/template", made))[0] == 1
        on_two = Snms(two, token)  # the template made on node two with node one's token
        assert envelope(on_two.call("POST", "/snms/api/v5/template", made))[0] == 1
        body = identifier(f"{PREFIX}/shared", "1.0.0", value(2000, "URL", "https://shared.example/"))
        assert envelope(on_two.call("POST", "/identityv2/data", body))[0] == 1
        assert envelope(on_two.detail(body["handle"]))[2]["handle"] == body["handle"]
        assert one.get(f"/api/handles/{body['handle']}").status == 404  # stateless, not replicated
        enterprise(other, PREFIX, "another-secret-0123456789")  # same identity, another secret
        assert "token已失效" in envelope(Snms(other, token).detail(body["handle"]))[1]
        default_key = Node(tmp_path / "default", args=NODE_ARGS).start()
        try:
            enterprise(default_key, PREFIX)
            assert envelope(Snms(default_key, token).detail(body["handle"]))[0] == -1
        finally:
            default_key.stop()
    finally:
        for node in (one, two, other):
            node.stop()


def test_failed_logins_are_limited(tmp_path: Path) -> None:
    node = Node(tmp_path / "data", args=NODE_ARGS, env={"IDNODE_AUTH_FAILURE_LIMIT": "3"}).start()
    try:
        enterprise(node, PREFIX)
        before = logged_in(node, PREFIX)
        client = Snms(node)
        refusals = [client.login(PREFIX, "guess"), client.login(PREFIX, "guess2", "/identity/token/v1")]
        refusals.append(client.login(PREFIX, dated("guess"), "/identity/token/v1"))
        assert [envelope(r)[:2] for r in refusals] == [(-2, "用户名/密码错误！")] * 3
        for path, password in (
            ("/identity/token", secret_of(PREFIX)),
            ("/identity/token/v1", dated(secret_of(PREFIX))),
        ):
            limited = client.login(PREFIX, password, path)  # even the right secret waits now
            assert limited.status == 429, limited.body
            assert 1 <= int(limited.headers["retry-after"]) <= 3600
            body = limited.json
            assert (body["status"], body["data"]) == (-2, None) and "登录失败次数过多" in body["message"]
        assert envelope(before.detail(f"{PREFIX}/none"))[0] == -2  # a token from before still works
        elsewhere = {"username": PREFIX, "password": secret_of(PREFIX)}
        assert envelope(node.request("POST", "/identity/token", elsewhere, source="127.0.0.2"))[0] == 1  # per source
    finally:
        node.stop()


def test_no_snms_serves_none_of_it(tmp_path: Path) -> None:
    node = Node(tmp_path / "data", args=[*NODE_ARGS, "--no-snms"]).start()
    try:
        enterprise(node, PREFIX)
        for method, path, body in (
            ("POST", "/identity/token", {"username": PREFIX, "password": secret_of(PREFIX)}),
            ("POST", "/identity/token/v1", {"username": PREFIX, "password": dated(secret_of(PREFIX))}),
            ("GET", f"/identityv2/data/detail?handle={PREFIX}/x", None),
            ("POST", "/identityv2/data", identifier(f"{PREFIX}/x", "1.0.0", value(2000, "URL", "u"))),
            ("DELETE", "/identityv2/data/batchDelete", [f"{PREFIX}/x"]),
            ("GET", f"/snms/api/v5/template?prefix={PREFIX}&version=1.0.0", None),
            ("POST", "/snms/api/v5/template", template(PREFIX, "1.0.0", URL)),
        ):
            reply = node.request(method, path, body)
            assert reply.status in (400, 404, 405), (path, reply.status)
            assert "responseCode" in reply.json and "status" not in reply.json, (path, reply.body)
        assert node.get(f"/api/handles/{PREFIX}/x").status == 404
        assert node.get(f"/api/templates/{PREFIX}").json.get("templates", []) == []
    finally:
        node.stop()


def _set_secret(node: Node, secret: str) -> None:
    seckey = {"index": 300, "type": "HS_SECKEY", "data": secret}
    reply = node.put(f"/api/handles/0.NA/{PREFIX}", record(admin_value(f"0.NA/{PREFIX}"), seckey), auth=NODE_ADMIN)
    assert reply.status in (200, 201), reply.body


def test_setting_the_old_secret_back_does_not_revive_old_tokens(tmp_path: Path) -> None:
    node = Node(tmp_path / "data", args=NODE_ARGS).start()
    try:
        enterprise(node, PREFIX)
        old = logged_in(node, PREFIX)
        assert envelope(old.detail(f"{PREFIX}/none"))[0] == -2  # the token works
        _set_secret(node, "another-secret-0123456789")
        assert envelope(old.detail(f"{PREFIX}/none"))[0] == -1  # revoked
        time.sleep(1.05)  # setting it back later: a later generation of the same stored value
        _set_secret(node, secret_of(PREFIX))
        refused = envelope(old.detail(f"{PREFIX}/none"))
        assert refused[0] == -1, refused
        assert envelope(logged_in(node, PREFIX).detail(f"{PREFIX}/none"))[0] == -2  # a new login works
    finally:
        node.stop()


def test_a_dated_password_logs_in_once_on_any_worker(tmp_path: Path) -> None:
    node = Node(tmp_path / "data", args=[*NODE_ARGS, "--workers", "2"], env=LIMITS_OFF).start()
    try:
        enterprise(node, PREFIX)
        client = Snms(node)
        password = dated(secret_of(PREFIX))
        assert envelope(client.login(PREFIX, password, "/identity/token/v1"))[0] == 1
        for _ in range(8):  # a connection each: the replays reach both workers
            replay = envelope(Snms(node).login(PREFIX, password, "/identity/token/v1"))
            assert replay[:2] == (-2, "用户名/密码错误！"), replay
        tomorrow = dated(secret_of(PREFIX), 1)
        assert envelope(client.login(PREFIX, tomorrow, "/identity/token/v1"))[0] == 1  # another day's, once
        assert envelope(client.login(PREFIX, secret_of(PREFIX)))[0] == 1  # the secret itself, as often as wanted
        assert envelope(client.login(PREFIX, secret_of(PREFIX)))[0] == 1
    finally:
        node.stop()
