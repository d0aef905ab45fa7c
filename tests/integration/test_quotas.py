"""Quotas on a real node of two workers, on both stores: the node admin sets them (REST and
``idnode prefix quota``), no one else may; writes past them are refused with 604 / 603 / 605
over REST, the Handle protocol and SNMS, leaving nothing written or counted; authenticated
resolutions are charged; refusals show in the statistics and the metric.

(The day's turn is shown with an injected clock on both stores, tests/integration/test_quota_store.py:
a node process has the machine's clock.)"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from protocol.codes import ResponseCode
from protocol.records import HandleValue
from protocol.wire.auth import client_secret_kind, hashed_secret_key, secret_answer
from protocol.wire.message import (
    Body,
    ChallengeAnswerRequest,
    ChallengeResponse,
    CreateHandleRequest,
    ErrorResponse,
    Message,
    OpCode,
)
from registry.days import china_day
from tests.conftest import LIMITS_OFF, store_for
from tests.integration.test_handle_admin_wire import request
from tests.integration.test_permissions import enterprise
from tests.support.handleauth import Who, login
from tests.support.handleclient import Connection, resolution, tcp
from tests.support.nodeproc import ADMIN, ADMIN_SECRET, ADMIN_USER, Auth, Node, Reply, record, url_value
from tests.support.snmsclient import Snms, envelope, identifier, item, template, value

STORE_BACKENDS = ("sqlite", "postgresql")
REPO = Path(__file__).resolve().parents[2]
REFUSALS = "idnode_quota_refusals_total"
_prefixes = itertools.count(40)


@pytest.fixture(scope="module")
def quota_node(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[Node]:
    env = {**LIMITS_OFF, "IDNODE_QUOTA_PREFIXES": "1"}  # a node-wide default: one prefix under each enterprise
    with store_for(backend) as store:
        node = Node(tmp_path_factory.mktemp("quota") / "data", args=["--workers", "2"], env=env, store=store)
        yield node.start()
        node.stop()


def allocated(node: Node, **quotas: int | None) -> tuple[str, tuple[str, str]]:
    """A new enterprise prefix, its admin's credentials, and (as the node admin) its own ``quotas``."""
    prefix = f"88.118.{next(_prefixes)}"
    secret = f"secret-of-{prefix}-0123456789"
    assert node.put(f"/api/handles/0.NA/{prefix}", enterprise(prefix, secret), auth=ADMIN).status == 201
    if quotas:
        reply = node.put(f"/api/quotas/{prefix}", quotas, auth=ADMIN)
        assert reply.status == 200, reply.body
    return prefix, (f"300:0.NA/{prefix}", secret)


def put(node: Node, handle: str, auth: Auth) -> Reply:
    return node.put(f"/api/handles/{handle}", record(url_value(1, f"https://q.example/{handle}")), auth=auth)


def refused_with(reply: Reply, status: int, code: ResponseCode) -> str:
    assert (reply.status, reply.code) == (status, code), reply.body
    return str(reply.json["message"])


def stats_of(node: Node, prefix: str) -> dict[str, Any]:
    (found,) = node.get(f"/api/stats?prefix={prefix}", auth=ADMIN).json["prefixes"][:1]
    assert found["prefix"] == prefix
    return dict(found)


def test_the_node_admin_sets_quotas_and_no_one_else(quota_node: Node) -> None:
    node = quota_node
    prefix, ent = allocated(node)
    shown = node.put(f"/api/quotas/{prefix}", {"identifiers": 1000, "resolutionsPerDay": 50}, auth=ADMIN)
    assert shown.status == 200 and shown.json["set"] == {
        "identifiers": 1000,
        "registrationsPerDay": None,
        "resolutionsPerDay": 50,
        "prefixes": None,
    }
    assert shown.json["limits"] == {
        "identifiers": 1000,
        "registrationsPerDay": 0,
        "resolutionsPerDay": 50,
        "prefixes": 1,
    }
    assert shown.json["day"] == china_day(time.time()) and shown.json["used"]["identifiers"] == 0
    changed = node.put(f"/api/quotas/{prefix}", {"resolutionsPerDay": None}, auth=ADMIN).json
    assert changed["set"]["resolutionsPerDay"] is None and changed["set"]["identifiers"] == 1000
    # The enterprise sees its own quotas; it may not change them, nor may anyone but the node admin.
    assert node.get(f"/api/quotas/{prefix}", auth=ent).json["limits"]["identifiers"] == 1000
    refused_with(
        node.put(f"/api/quotas/{prefix}", {"identifiers": 10**9}, auth=ent), 403, ResponseCode.INSUFFICIENT_PERMISSIONS
    )
    refused_with(node.put(f"/api/quotas/{prefix}", {"identifiers": 1}), 401, ResponseCode.AUTHENTICATION_NEEDED)
    other, other_ent = allocated(node)
    refused_with(node.get(f"/api/quotas/{prefix}", auth=other_ent), 403, ResponseCode.INSUFFICIENT_PERMISSIONS)
    refused_with(node.get("/api/quotas", auth=ent), 403, ResponseCode.INSUFFICIENT_PERMISSIONS)
    assert node.get(f"/api/quotas/{prefix}", auth=ADMIN).json["set"]["identifiers"] == 1000  # unchanged
    everything = node.get("/api/quotas", auth=ADMIN).json
    assert everything["defaults"]["prefixes"] == 1
    assert {p["prefix"] for p in everything["prefixes"]} >= {prefix}
    # What cannot have a quota, and what is not a quota.
    refused_with(node.put("/api/quotas/88.118", {"identifiers": 1}, auth=ADMIN), 400, ResponseCode.INVALID_VALUE)
    refused_with(node.put("/api/quotas/88.118.999", {"identifiers": 1}, auth=ADMIN), 404, ResponseCode.HANDLE_NOT_FOUND)
    refused_with(node.put(f"/api/quotas/{other}", {"identifier": 1}, auth=ADMIN), 400, ResponseCode.INVALID_VALUE)
    refused_with(node.put(f"/api/quotas/{other}", {"prefixes": -1}, auth=ADMIN), 400, ResponseCode.INVALID_VALUE)
    audit = node.get(f"/api/audit?prefix={prefix}", auth=ADMIN).json["entries"]
    assert [e["responseCode"] for e in audit if e["operation"] == "set_quota"] == [1, 1, 401]


def test_rest_writes_past_the_identifier_quota_are_refused_whole(quota_node: Node) -> None:
    node = quota_node
    before = node.metric(REFUSALS, kind="identifiers")
    prefix, ent = allocated(node, identifiers=3)
    for n in range(3):
        assert put(node, f"{prefix}/i{n}", ent).status == 201
    message = refused_with(put(node, f"{prefix}/i3", ent), 403, ResponseCode.REGISTER_COUNT_LIMIT)
    assert f"prefix {prefix} holds 3 identifiers" in message
    assert node.get(f"/api/handles/{prefix}/i3").status == 404
    assert put(node, f"{prefix}/i0", ent).status == 200  # replacing is not registering
    refused_with(put(node, f"{prefix}/i4", ADMIN), 403, ResponseCode.REGISTER_COUNT_LIMIT)  # the plan, whoever asks
    # A batch: each item past the quota fails alone; an atomic batch fails whole and writes nothing.
    assert node.delete(f"/api/handles/{prefix}/i2", auth=ent).status == 200
    ops = [{"op": "create", "handle": f"{prefix}/b{n}", "values": [url_value(1, "https://b/")]} for n in range(3)]
    atomic = node.request("POST", "/api/batch", {"atomic": True, "operations": ops}, auth=ent)
    assert (atomic.status, atomic.code) == (403, ResponseCode.REGISTER_COUNT_LIMIT)
    assert node.get(f"/api/handles/{prefix}/b0").status == 404
    results = node.request("POST", "/api/batch", {"operations": ops}, auth=ent).json["results"]
    assert [r["responseCode"] for r in results] == [1, 604, 604]
    found = stats_of(node, prefix)
    assert found["handles"] == 3 and found["registrationsPerDay"] == {china_day(time.time()): 4}
    assert found["quotaRefusalsPerDay"] == {china_day(time.time()): {"identifiers": 6}}
    assert node.metric(REFUSALS, until=lambda v: v >= before + 6, kind="identifiers") == before + 6
    used = node.get(f"/api/quotas/{prefix}", auth=ent).json
    assert used["used"]["identifiers"] == 3 and used["refusals"] == {"identifiers": 6}


def test_two_workers_never_register_past_the_quota_together(quota_node: Node) -> None:
    node = quota_node
    prefix, ent = allocated(node, identifiers=7)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda n: put(node, f"{prefix}/c{n}", ent).status, range(24)))
    assert sorted(statuses) == [201] * 7 + [403] * 17
    assert node.get(f"/api/handles?prefix={prefix}&pageSize=0", auth=ent).json["totalCount"] == "7"


def test_the_daily_registration_quota_says_when_to_come_back(quota_node: Node) -> None:
    node = quota_node
    prefix, ent = allocated(node, registrationsPerDay=2)
    assert [put(node, f"{prefix}/d{n}", ent).status for n in range(2)] == [201, 201]
    assert node.delete(f"/api/handles/{prefix}/d0", auth=ent).status == 200  # gives no registration back
    reply = put(node, f"{prefix}/d2", ent)
    assert "registration opens again at midnight" in refused_with(reply, 429, ResponseCode.REQUEST_LIMIT_DAILY)
    assert 0 < int(reply.headers["retry-after"]) <= 86400
    assert node.get(f"/api/quotas/{prefix}", auth=ent).json["used"]["registrationsPerDay"] == 2


def test_derived_prefixes_past_the_default_quota_are_refused(quota_node: Node) -> None:
    node = quota_node
    before = node.metric(REFUSALS, kind="prefixes")
    prefix, ent = allocated(node)  # the node's default: one derived prefix
    assert (
        node.put(f"/api/handles/0.NA/{prefix}.1", enterprise(f"{prefix}.1", "sub-secret-0123456789"), auth=ent).status
        == 201
    )
    second = node.put(f"/api/handles/0.NA/{prefix}.2", enterprise(f"{prefix}.2", "sub-secret-0123456789"), auth=ent)
    refused_with(second, 403, ResponseCode.PREFIX_LIMIT)
    assert f"{prefix}.2" not in node.get("/api/prefixes").json["prefixes"]
    assert node.put(f"/api/quotas/{prefix}", {"prefixes": 0}, auth=ADMIN).status == 200  # no limit for this one
    assert (
        node.put(f"/api/handles/0.NA/{prefix}.2", enterprise(f"{prefix}.2", "sub-secret-0123456789"), auth=ent).status
        == 201
    )
    assert node.metric(REFUSALS, until=lambda v: v >= before + 1, kind="prefixes") == before + 1


def test_authenticated_resolutions_are_charged_anonymous_ones_are_free(quota_node: Node) -> None:
    node = quota_node
    prefix, ent = allocated(node, resolutionsPerDay=3)
    assert put(node, f"{prefix}/r", ent).status == 201
    assert [node.get(f"/api/handles/{prefix}/r", auth=ent).status for _ in range(3)] == [200] * 3
    reply = node.get(f"/api/handles/{prefix}/r", auth=ent)
    refused_with(reply, 429, ResponseCode.REQUEST_LIMIT_DAILY)
    assert "retry-after" in reply.headers
    assert all(node.get(f"/api/handles/{prefix}/r").status == 200 for _ in range(5))  # anonymous: no identity
    assert node.get(f"/api/handles/{prefix}/r?type=URL", auth=ADMIN).status == 200  # the node admin: no quota
    snms = Snms(node)
    assert envelope(snms.login(prefix, ent[1]))[0] == 1  # the same identity, over SNMS: the same quota
    status, message, _ = envelope(snms.detail(f"{prefix}/r"))
    assert status == -2 and message.startswith("超过每日请求次数限制")
    used = node.get(f"/api/quotas/{prefix}", auth=ent).json
    assert used["used"]["resolutionsPerDay"] == {ent[0]: 3} and used["refusals"] == {"resolutions": 2}


def test_resolutions_on_a_logged_in_handle_connection_are_charged(quota_node: Node) -> None:
    """An SDK logged in on its connection (2001) resolves as its identity: its quota counts each
    answer, cached or not, and refuses with 603 past it; another connection, anonymous, is free."""
    node = quota_node
    prefix, (_, secret) = allocated(node, resolutionsPerDay=2)
    assert put(node, f"{prefix}/h", (f"300:0.NA/{prefix}", secret)).status == 201
    assert tcp(node.handle_port, resolution(f"{prefix}/h"))[0].response_code == ResponseCode.SUCCESS  # now cached
    with Connection(node.handle_port) as conn:
        assert (
            login(conn.ask, Who(f"0.NA/{prefix}", 300, hashed_secret_key(secret.encode()))).response_code
            == ResponseCode.SUCCESS
        )
        codes = [conn.ask(resolution(f"{prefix}/h")).response_code for _ in range(3)]
    assert codes == [ResponseCode.SUCCESS, ResponseCode.SUCCESS, ResponseCode.REQUEST_LIMIT_DAILY]
    assert all(
        tcp(node.handle_port, resolution(f"{prefix}/h"))[0].response_code == ResponseCode.SUCCESS for _ in range(3)
    )
    used = node.get(f"/api/quotas/{prefix}", auth=ADMIN).json
    assert used["used"]["resolutionsPerDay"] == {f"300:0.NA/{prefix}": 2} and used["refusals"] == {"resolutions": 1}


def as_identity(node: Node, body: Body, handle: str, secret: str) -> Message:
    """A Handle protocol admin request answered with the challenge, as CNRI's tools do (one connection each)."""
    (challenge,) = tcp(node.handle_port, request(OpCode.CREATE_HANDLE, body, rid=31))
    assert challenge.response_code == ResponseCode.AUTHENTICATION_NEEDED, challenge
    assert isinstance(challenge.body, ChallengeResponse) and challenge.request_digest is not None
    kind = client_secret_kind(challenge.version, challenge.envelope.suggest)
    mac = secret_answer(kind, hashed_secret_key(secret.encode()), challenge.body.nonce, challenge.request_digest.digest)
    answer = ChallengeAnswerRequest("HS_SECKEY", handle, 300, mac)
    session = challenge.envelope.session_id
    (done,) = tcp(node.handle_port, request(OpCode.CHALLENGE_RESPONSE, answer, session_id=session, rid=32))
    return done


def test_handle_protocol_creations_past_the_quota_carry_604(quota_node: Node) -> None:
    node = quota_node
    prefix, (_, secret) = allocated(node, identifiers=1)
    values = (HandleValue(1, "URL", b"https://wire.example/"),)
    first = as_identity(node, CreateHandleRequest(f"{prefix}/W1", values), f"0.NA/{prefix}", secret)
    assert first.response_code == ResponseCode.SUCCESS, first.body
    second = as_identity(node, CreateHandleRequest(f"{prefix}/W2", values), f"0.NA/{prefix}", secret)
    assert second.response_code == ResponseCode.REGISTER_COUNT_LIMIT
    assert isinstance(second.body, ErrorResponse) and f"prefix {prefix} holds 1 identifiers" in second.body.message
    assert node.get(f"/api/handles/{prefix}/W2").status == 404
    sub = CreateHandleRequest(f"0.NA/{prefix}.7", (HandleValue(1, "URL", b"https://x/"),))
    assert as_identity(node, sub, f"0.NA/{prefix}", secret).response_code == ResponseCode.SUCCESS
    sub = CreateHandleRequest(f"0.NA/{prefix}.8", (HandleValue(1, "URL", b"https://x/"),))
    assert as_identity(node, sub, f"0.NA/{prefix}", secret).response_code == ResponseCode.PREFIX_LIMIT


def test_snms_writes_past_the_quota_fail_in_snms_form(quota_node: Node) -> None:
    node = quota_node
    prefix, (_, secret) = allocated(node, identifiers=2)
    snms = Snms(node)
    assert envelope(snms.login(prefix, secret))[0] == 1
    assert (
        envelope(snms.call("POST", "/snms/api/v5/template", template(prefix, "1", item("网址", "URL", 2000))))[0] == 1
    )
    made = [identifier(f"{prefix}/s{n}", "1", value(2000, "URL", f"www.{n}.com")) for n in range(3)]
    assert envelope(snms.call("POST", "/identityv2/data", made[0]))[:2] == (1, "success")
    data = envelope(snms.call("POST", "/identityv2/data/batchCreate", made))[2]
    assert data[0]["msg"] == "success" and data[1]["msg"] == "success"  # the first again: a retry, no registration
    assert data[2]["msg"].startswith("超过标识注册数量限制")
    status, message, _ = envelope(
        snms.call("POST", "/identityv2/data", identifier(f"{prefix}/s9", "1", value(2000, "URL", "x")))
    )
    assert status == -2 and message.startswith("超过标识注册数量限制")
    assert node.get(f"/api/handles/{prefix}/s2").status == 404 and node.get(f"/api/handles/{prefix}/s9").status == 404


def idnode(
    *args: str, identity: str = ADMIN_USER, secret: str = ADMIN_SECRET, node: Node
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}
    env |= {
        "IDNODE_NODE_URL": f"http://127.0.0.1:{node.port}",
        "IDNODE_CLIENT_IDENTITY": identity,
        "IDNODE_CLIENT_SECRET": secret,
    }
    cmd = [sys.executable, "-m", "resolver.cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd=REPO)


def test_the_admin_command_sets_and_shows_quotas(quota_node: Node) -> None:
    node = quota_node
    prefix, (identity, secret) = allocated(node)
    done = idnode("prefix", "quota", prefix, "--identifiers", "5", "--registrations-per-day", "0", node=node)
    assert done.returncode == 0, done.stderr
    assert "identifiers            5 (set for this prefix); used: 0" in done.stdout
    assert "prefixes               1 (node default)" in done.stdout
    shown = idnode("prefix", "quota", f"0.NA/{prefix}", "--json", node=node)
    assert shown.returncode == 0 and '"identifiers": 5' in shown.stdout
    reset = idnode("prefix", "quota", prefix, "--identifiers", "default", "--json", node=node)
    assert reset.returncode == 0 and node.get(f"/api/quotas/{prefix}", auth=ADMIN).json["set"]["identifiers"] is None
    refused = idnode("prefix", "quota", prefix, "--identifiers", "999", identity=identity, secret=secret, node=node)
    assert refused.returncode == 1 and "responseCode 401" in refused.stderr
    assert node.get(f"/api/quotas/{prefix}", auth=ADMIN).json["set"]["identifiers"] is None
    wrong = idnode("prefix", "quota", prefix, "--identifiers", "-1", node=node)
    assert wrong.returncode == 2
