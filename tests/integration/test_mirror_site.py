"""A mirror site on a real streaming replica: served, read-only, published, and failed over to.

Own PostgreSQL primary and a hot standby of it (synchronous, ``remote_apply``: a write A
acknowledges has been replayed on the standby, so none is lost when A dies); a top-level node;
secondary node A on the primary database, publishing mirror M (an idnode in mirror mode on the
standby) as its second site; node B resolving A's identifiers by delegation. A is killed with
-9 and B goes on resolving through M, identifiers it never cached included; A restarted takes
writes again.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from protocol import valuedata as vd
from protocol.codes import ResponseCode
from protocol.records import HandleValue
from protocol.wire.bodies import ErrorResponse, ResolutionResponse
from protocol.wire.message import CreateHandleRequest, OpCode
from registry.identity import sealing
from tests.integration.test_handle_admin_wire import request
from tests.integration.test_hierarchy import LOOPBACK_ALLOWED, admin_of, grant, wait_published
from tests.support.handleclient import resolution, tcp, udp
from tests.support.nodeproc import ADMIN, ADMIN_SECRET, Node, record, url_value
from tests.support.pgproc import PgServer, free_port, own_server, query
from tests.support.poll import wait_until

P = "/api/handles/88.118/"
FAILOVER_SECONDS = 2.0  # B's upstream_timeout: a dead A costs at most one hop's timeout before M is asked
# Every commit waits until the standby has replayed it: what A acknowledged is on M.
SYNCHRONOUS = {"synchronous_standby_names": "'*'", "synchronous_commit": "remote_apply"}


@dataclass
class Sites:
    primary_db: PgServer
    standby_db: PgServer
    top: Node
    a: Node
    m: Node
    b: Node


def start_a(tmp: Path, db: PgServer, top: Node, mirror: str, key: Path) -> Node:
    args = ["--upstream", f"http://127.0.0.1:{top.port}", "--workers", "1", "--mirror-site", mirror]
    env = {"IDNODE_UPSTREAM_SECRET": ADMIN_SECRET, "IDNODE_SECRET_KEY_FILE": str(key), **LOOPBACK_ALLOWED}
    return Node(tmp / "a", store=db.url, args=args, env=env)


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    tmp = tmp_path_factory.mktemp("mirror")
    with own_server(**SYNCHRONOUS) as primary_db:
        standby_db = primary_db.replica(primary_db.directory.parent / "standby")
        standby_db.start()
        standby_db.wait_ready()
        started: list[Node] = []
        try:
            top = Node(tmp / "top", args=["--role", "top-level", "--node-prefix", "88", "--workers", "1"]).start()
            started.append(top)
            grant(top, "88.118")
            grant(top, "88.200")
            m_port, m_handle = free_port(), free_port()
            key = tmp / "secret-key"  # A's, copied to M as an operator would (deploy/MIRROR.md)
            a = start_a(tmp, primary_db, top, f"127.0.0.1:{m_port}/{m_handle}", key).start()
            started.append(a)
            wait_published(a, "88.118")
            m_key = tmp / "m-secret-key"
            shutil.copy(key, m_key)
            m = Node(
                tmp / "m",
                store=standby_db.url,
                args=["--mirror-of", f"http://127.0.0.1:{a.port}", "--workers", "1",
                      "--handle-listen", f"127.0.0.1:{m_handle}"],
                env={"IDNODE_SECRET_KEY_FILE": str(m_key)},
                admin_secret=None,
            )  # fmt: skip
            m.start(listen=f"127.0.0.1:{m_port}")
            started.append(m)
            b_args = ["--upstream", f"http://127.0.0.1:{top.port}", "--node-prefix", "88.200", "--workers", "1"]
            b_env = {"IDNODE_UPSTREAM_SECRET": ADMIN_SECRET, "IDNODE_UPSTREAM_TIMEOUT": str(FAILOVER_SECONDS)}
            b = Node(tmp / "b", args=b_args, env={**b_env, **LOOPBACK_ALLOWED})
            started.append(b.start())
            wait_published(b, "88.200")
            yield Sites(primary_db, standby_db, top, a, m, b)
        finally:
            for node in started:
                if node.proc is not None and node.proc.poll() is None:
                    node.stop()
            standby_db.remove()


def create(node: Node, name: str) -> None:
    reply = node.put(P + name, record(url_value(1, f"https://{name}.example/")), auth=ADMIN)
    assert reply.status == 201, reply.body


def urls(reply: Any) -> list[str]:
    return [v["data"]["value"] for v in reply.json["values"] if v["type"] == "URL"]


def test_the_standby_is_synchronous(sites: Sites) -> None:
    # What makes "no acknowledged write is lost at failover" hold below, not a lucky replay.
    state = query(sites.primary_db.url, "SELECT sync_state FROM pg_stat_replication")
    assert state == "sync"


def test_the_mirror_serves_what_the_primary_wrote(sites: Sites) -> None:
    create(sites.a, "served")
    reply = sites.m.get(P + "served")  # no wait: remote_apply replayed it before A answered
    assert reply.status == 200, reply.body
    assert urls(reply) == ["https://served.example/"]
    answer = udp(sites.m.handle_port, resolution("88.118/served"))
    assert answer.response_code == ResponseCode.SUCCESS
    assert isinstance(answer.body, ResolutionResponse)


def test_the_mirror_refuses_writes_over_rest_naming_the_primary(sites: Sites) -> None:
    for reply in (
        sites.m.put(P + "refused", record(url_value(1, "https://x.example/")), auth=ADMIN),
        sites.m.put(P + "refused", record(url_value(1, "https://x.example/"))),  # no credentials: same answer
        sites.m.delete(P + "served", auth=ADMIN),
        sites.m.request("POST", "/api/batch", {"operations": []}, auth=ADMIN),
        sites.m.request("POST", "/identityv2/data", {"handle": "88.118/refused"}),
    ):
        assert reply.status == 503, reply.body
        message = reply.json.get("message", "")
        assert "mirror site" in message and f"http://127.0.0.1:{sites.a.port}" in message, reply.body
    assert sites.m.get(P + "refused").status == 404  # and nothing was written anywhere
    assert sites.a.get(P + "refused").status == 404


def test_the_mirror_refuses_writes_over_the_handle_protocol_before_any_challenge(sites: Sites) -> None:
    body = CreateHandleRequest("88.118/refused-hdl", (HandleValue(1, "URL", b"https://x.example/"),))
    (answer,) = tcp(sites.m.handle_port, request(OpCode.CREATE_HANDLE, body))
    assert answer.response_code == ResponseCode.SERVER_NOT_RESPONSIBLE  # CNRI's "Not a primary server"
    assert isinstance(answer.body, ErrorResponse)
    assert "mirror site" in answer.body.message and f"127.0.0.1:{sites.a.port}" in answer.body.message


def test_a_login_that_only_reads_works_on_the_mirror(sites: Sites) -> None:
    # An authenticated resolution: the secret A sealed opens with the key file copied to M.
    assert sites.m.get(P + "served?index=1", auth=ADMIN).status == 200
    login = sites.m.request("POST", "/identity/token", {"username": "88.118", "password": ADMIN_SECRET})
    assert login.json["status"] == 1, login.body


def test_the_mirror_says_it_is_one_in_its_health(sites: Sites) -> None:
    health = sites.m.get("/healthz")
    assert health.status == 200
    assert health.json["mirrorOf"] == f"http://127.0.0.1:{sites.a.port}"
    assert "standby" in health.json["store"]


def published_sites(top: Node) -> list[vd.Site]:
    answer = udp(top.handle_port, resolution("0.NA/88.118", types=("HS_SITE",)))
    assert answer.response_code == ResponseCode.SUCCESS
    assert isinstance(answer.body, ResolutionResponse)
    values = sorted(answer.body.values, key=lambda v: v.index)
    return [vd.decode_site(v.data) for v in values if v.type == "HS_SITE"]


def test_the_top_level_node_refers_handle_clients_to_both_sites(sites: Sites) -> None:
    primary, mirror = published_sites(sites.top)  # over the Handle protocol, as a CNRI resolver asks
    assert primary.is_primary and not mirror.is_primary
    a, m = primary.servers[0], mirror.servers[0]
    assert {(i.protocol, i.port) for i in a.interfaces} == {
        ("HTTP", sites.a.port), ("TCP", sites.a.handle_port), ("UDP", sites.a.handle_port),
    }  # fmt: skip
    assert {(i.protocol, i.port) for i in m.interfaces} == {
        ("HTTP", sites.m.port), ("TCP", sites.m.handle_port), ("UDP", sites.m.handle_port),
    }  # fmt: skip
    assert not any(i.admin for i in m.interfaces)  # a mirror takes no administration


def test_b_fails_over_to_the_mirror_within_one_hop_timeout_while_a_hangs(sites: Sites) -> None:
    names = [f"hung-{n}" for n in range(2)]
    for name in names:
        create(sites.a, name)
    assert sites.a.proc is not None
    os.killpg(sites.a.proc.pid, signal.SIGSTOP)  # connections are still accepted (the backlog): nothing answers
    try:
        took = []
        for name in names:
            started = time.monotonic()
            reply = sites.b.get(P + name)
            took.append(time.monotonic() - started)
            assert reply.status == 200, (name, reply.body)
            assert urls(reply) == [f"https://{name}.example/"]
        # The first waits one hop timeout for A; then A is asked after M for a while (Unanswered).
        assert FAILOVER_SECONDS - 0.5 < took[0] < FAILOVER_SECONDS + 1.5, took
        assert took[1] < 1.0, took
    finally:
        os.killpg(sites.a.proc.pid, signal.SIGCONT)


def test_b_fails_over_to_the_mirror_when_a_is_killed_and_a_takes_writes_again_once_back(sites: Sites) -> None:
    create(sites.a, "before-cached")
    assert sites.b.get(P + "before-cached").status == 200
    names = [f"acked-{n}" for n in range(20)]
    for name in names:
        create(sites.a, name)  # each acknowledged by A: none may be missing after the kill
    sites.a.kill()
    for name in names:  # none of them cached at B: each is asked of a site, A's dead one first
        started = time.monotonic()
        reply = sites.b.get(P + name)
        took = time.monotonic() - started
        assert reply.status == 200, (name, reply.body)
        assert urls(reply) == [f"https://{name}.example/"]
        assert took < FAILOVER_SECONDS + 1.0, f"{name} took {took:.2f} s"
    assert sites.m.put(P + "while-down", record(url_value(1, "https://x.example/")), auth=ADMIN).status == 503

    sites.a.start()  # same ports? no: a new listener, republished to the top-level node
    wait_until(
        lambda: published_sites(sites.top)[0].servers[0].interfaces,
        lambda interfaces: any(i.protocol == "HTTP" and i.port == sites.a.port for i in interfaces),
        what="A's new address to be published",
    )
    create(sites.a, "after-restart")
    assert urls(sites.m.get(P + "after-restart")) == ["https://after-restart.example/"]


def test_a_mirror_on_a_database_without_the_schema_says_so(tmp_path: Path) -> None:
    with own_server() as empty:
        node = Node(tmp_path / "m", store=empty.url, args=["--mirror-of", "http://127.0.0.1:8000"], admin_secret=None)
        key = tmp_path / "secret-key"
        sealing.ensure_file(key)
        node.env = {"IDNODE_SECRET_KEY_FILE": str(key)}
        with pytest.raises(RuntimeError, match="holds no idnode schema"):
            node.start()


def test_a_mirror_without_the_primarys_secret_key_refuses_to_start(sites: Sites, tmp_path: Path) -> None:
    node = Node(tmp_path / "m2", store=sites.standby_db.url, args=["--mirror-of", "http://127.0.0.1:8000"],
                admin_secret=None)  # fmt: skip
    with pytest.raises(RuntimeError, match="copy the primary node's secret key file"):
        node.start()


def test_a_node_that_writes_refuses_a_standby_as_its_store(sites: Sites, tmp_path: Path) -> None:
    node = Node(tmp_path / "w", store=sites.standby_db.url, env={"IDNODE_SECRET_KEY_FILE": str(tmp_path / "k")})
    with pytest.raises(RuntimeError, match="is a hot standby"):
        node.start()


def test_the_admin_of_a_prefix_published_under_a_node_gets_both_sites(sites: Sites) -> None:
    # An enterprise prefix allocated on A is published with A's site and M's.
    reply = sites.a.put("/api/handles/0.NA/88.118.7", record(admin_of("88.118")), auth=ADMIN)
    assert reply.status == 201, reply.body
    wait_published(sites.a, "88.118.7")
    answer = udp(sites.top.handle_port, resolution("0.NA/88.118.7", types=("HS_SITE",)))
    assert isinstance(answer.body, ResolutionResponse)
    flags = sorted(vd.decode_site(v.data).is_primary for v in answer.body.values)
    assert flags == [False, True]


def test_a_mirror_dropped_from_the_primarys_settings_is_withdrawn_at_the_top_level_node(sites: Sites) -> None:
    assert len(published_sites(sites.top)) == 2
    sites.a.stop()
    at = sites.a.args.index("--mirror-site")
    sites.a.args = sites.a.args[:at] + sites.a.args[at + 2 :]
    sites.a.start()
    wait_until(lambda: len(published_sites(sites.top)), lambda n: n == 1, what="the mirror site to be withdrawn")
    assert published_sites(sites.top)[0].servers[0].interfaces[0].port == sites.a.port


def test_a_promoted_standby_is_reported_and_its_node_restarted_as_primary_takes_writes(sites: Sites) -> None:
    create(sites.a, "last-before-loss")
    sites.a.kill()
    sites.primary_db.stop("immediate")  # the primary is lost, and fenced
    assert query(sites.standby_db.url, "SELECT pg_promote()") == "t"
    # pg_basebackup copied the synchronous settings: alone now, the new primary must not wait for a standby.
    query(sites.standby_db.url, "ALTER SYSTEM SET synchronous_standby_names = ''")
    query(sites.standby_db.url, "SELECT pg_reload_conf()")
    wait_until(
        lambda: sites.m.get("/healthz").json["store"],
        lambda store: store.startswith("promoted"),
        what="the mirror to notice the promotion",
    )
    assert any("was promoted" in line for line in sites.m.stderr_lines)
    assert sites.m.put(P + "after-loss", record(url_value(1, "https://x.example/")), auth=ADMIN).status == 503

    sites.m.stop()
    at = sites.m.args.index("--mirror-of")
    sites.m.args = sites.m.args[:at] + sites.m.args[at + 2 :]
    sites.m.start(listen=f"127.0.0.1:{sites.m.port}")
    create(sites.m, "after-loss")
    assert urls(sites.m.get(P + "last-before-loss")) == ["https://last-before-loss.example/"]
