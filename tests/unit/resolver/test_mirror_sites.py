"""Mirror sites without a network: the HS_SITE values published, the order servers are asked in,
the settings, and the service's refusal of every write (deploy/MIRROR.md)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from protocol import valuedata as vd
from protocol.codes import ResponseCode, http_status
from protocol.errors import MirrorReadOnly
from protocol.identifiers import parse_handle
from protocol.jsonfmt import values_from_body
from protocol.records import HandleRecord, HandleValue
from registry.identity.caller import Caller
from registry.service import RegistrationService
from resolver import config
from resolver.config import MAX_MIRROR_SITES
from resolver.delegation.publisher import MIRROR_INDEXES, SITE_INDEX, Publisher, SiteAddress
from resolver.delegation.sites import (
    HandleTarget,
    Target,
    Unanswered,
    in_order,
    server_targets,
    serves,
    site_value,
    sites_of,
)
from tests.support.memory_store import MemoryStore


def decoded(value: dict[str, Any]) -> vd.Site:
    (parsed,) = values_from_body([value], 0)
    return vd.decode_site(parsed.value.data)


def test_a_site_lists_http_then_the_handle_protocols_tcp_and_udp() -> None:
    site = decoded(site_value(1, "10.0.0.1", 8000, "HTTP", 3600, handle_port=2641))
    (server,) = site.servers
    assert site.is_primary
    assert [(i.protocol, i.port, i.query) for i in server.interfaces] == [
        ("HTTP", 8000, True),
        ("TCP", 2641, True),
        ("UDP", 2641, True),
    ]
    assert [i.admin for i in server.interfaces] == [True, True, False]  # as CNRI lists UDP: query only


def test_a_site_without_a_handle_listener_lists_http_alone() -> None:
    (server,) = decoded(site_value(1, "10.0.0.1", 8443, "HTTPS", 3600)).servers
    assert [(i.protocol, i.port) for i in server.interfaces] == [("HTTPS", 8443)]


def test_a_mirror_site_is_not_primary_and_takes_no_administration() -> None:
    site = decoded(site_value(2, "10.0.0.2", 8000, "HTTP", 3600, handle_port=2641, primary=False))
    assert not site.is_primary
    assert not any(i.admin for i in site.servers[0].interfaces)


def test_idnode_still_asks_a_site_over_http_and_a_cnri_resolver_finds_its_handle_ports() -> None:
    site = decoded(site_value(1, "10.0.0.1", 8000, "HTTP", 3600, handle_port=2641))
    assert server_targets(site.servers) == (Target("http://10.0.0.1:8000", "10.0.0.1:8000"),)
    without_http = vd.Server(1, "10.0.0.1", b"", tuple(i for i in site.servers[0].interfaces if i.protocol != "HTTP"))
    assert server_targets([without_http]) == (HandleTarget("10.0.0.1", 2641, 2641),)


def test_a_node_knows_itself_by_its_http_port_not_by_a_handle_port_of_the_same_number() -> None:
    site = decoded(site_value(1, "10.0.0.1", 8000, "HTTP", 3600, handle_port=2641))
    assert serves([site], "10.0.0.1", 8000)
    assert not serves([site], "10.0.0.1", 2641)  # another node's HTTP port may be this number


def publisher(mirrors: tuple[SiteAddress, ...] = (), handle_port: int | None = 2641) -> Publisher:
    return Publisher(
        MemoryStore(),
        None,  # type: ignore[arg-type]  # site_values makes no request
        node_prefix="88.118",
        upstreams=(),
        identity="300:0.NA/88.118",
        secret="s",
        address=("10.0.0.1", 8000),
        handle_port=handle_port,
        mirrors=mirrors,
    )


def test_the_primary_publishes_itself_first_then_each_mirror_as_a_site_that_is_not_primary() -> None:
    values = publisher((SiteAddress("10.0.0.2", 8001, 2642), SiteAddress("10.0.0.3", 8002))).site_values()
    assert [v["index"] for v in values] == [SITE_INDEX, *MIRROR_INDEXES[:2]]
    sites = [decoded(v) for v in values]
    assert [s.is_primary for s in sites] == [True, False, False]
    assert [s.servers[0].address for s in sites] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert [i.protocol for i in sites[2].servers[0].interfaces] == ["HTTP"]  # that mirror serves no Handle


def test_more_mirror_sites_than_indexes_kept_for_them_are_refused() -> None:
    with pytest.raises(ValueError, match="mirror sites"):
        publisher(tuple(SiteAddress("10.0.0.2", 8000 + n) for n in range(MAX_MIRROR_SITES + 1)))


def test_the_servers_of_a_prefix_are_asked_primary_first_whatever_the_value_order() -> None:
    # A mirror's value at a lower index than the primary's (written by hand): the primary is asked first.
    mirror = site_value(1, "10.0.0.2", 8000, "HTTP", 3600, primary=False)
    primary = site_value(2, "10.0.0.1", 8000, "HTTP", 3600)
    values = [HandleValue(v.value.index, v.value.type, v.value.data) for v in values_from_body([mirror, primary], 0)]
    sites = sites_of(HandleRecord("0.NA/88.118", tuple(values)))
    ordered = server_targets(in_order(sites, parse_handle("88.118/x")))
    assert [t.peer for t in ordered] == ["10.0.0.1:8000", "10.0.0.2:8000"]


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        ({"mirror_site": ["node.example:8000"]}, "mirror_site"),
        ({"mirror_site": ["10.0.0.2"]}, "mirror_site"),
        ({"mirror_site": ["10.0.0.2:8000/"]}, "mirror_site"),
        ({"mirror_site": ["10.0.0.2:8000/70000"]}, "mirror_site"),
        ({"mirror_site": ["10.0.0.2:8000/2641"] * (MAX_MIRROR_SITES + 1)}, "mirror_site"),
        ({"mirror_of": "10.0.0.1:8000", "store": "postgresql://u@h/db"}, "mirror_of"),
        ({"mirror_of": "http://10.0.0.1:8000/api", "store": "postgresql://u@h/db"}, "mirror_of"),
        ({"mirror_of": "http://10.0.0.1:8000"}, "mirror_of"),  # the embedded store has no standby
        (
            {"mirror_of": "http://10.0.0.1:8000", "store": "postgresql://u@h/db", "mirror_site": ["10.0.0.2:8000"]},
            "mirror_site",
        ),
        (
            {
                "mirror_of": "http://10.0.0.1:8000",
                "store": "postgresql://u@h/db",
                "store_replica": ["postgresql://u@r/db"],
            },
            "store_replica",
        ),
    ],
)
def test_bad_mirror_settings_are_refused_by_name(flags: dict[str, Any], named: str) -> None:
    with pytest.raises(config.ConfigError, match=named):
        config.load(env={}, flags=flags)


def test_mirror_settings_are_read_from_the_environment() -> None:
    loaded = config.load(env={"IDNODE_MIRROR_SITE": "10.0.0.2:8000/2641, [fd00::2]:8000"})
    assert [config.mirror_address(t) for t in loaded.mirror_site] == [("10.0.0.2", 8000, 2641), ("fd00::2", 8000, None)]
    mirror = config.load(env={"IDNODE_MIRROR_OF": "https://10.0.0.1:8443/", "IDNODE_STORE": "postgresql://u@h/db"})
    assert mirror.mirror_of == "https://10.0.0.1:8443"
    assert mirror.mirror_refusal is not None and "https://10.0.0.1:8443" in mirror.mirror_refusal
    assert config.load(env={}).mirror_refusal is None


def test_a_mirror_refusal_is_503_over_http_and_not_responsible_over_the_handle_protocol() -> None:
    refusal = MirrorReadOnly("mirror")
    assert refusal.code == ResponseCode.SERVER_NOT_RESPONSIBLE
    assert refusal.http_status == 503 != http_status(refusal.code)


def test_a_mirror_service_refuses_every_write_before_reading_anything() -> None:
    store = MemoryStore()
    service = RegistrationService(store, node_prefix="88.118", read_only="a mirror: write at http://10.0.0.1:8000")
    caller = Caller(None, "127.0.0.1")
    handle = service.parse("88.118/x")

    async def attempts() -> None:
        for write in (
            service.put(caller, handle, []),
            service.create(caller, handle, []),
            service.delete(caller, handle),
            service.put_template(caller, "88.118", "t", {}),
            service.set_quota(caller, "88.118.1", {}),
        ):
            with pytest.raises(MirrorReadOnly, match=r"http://10\.0\.0\.1:8000"):
                await write
        await service.charge_resolution(caller)  # a resolution is not refused: nothing is counted

    asyncio.run(attempts())  # MemoryStore keeps no audit log: a refusal logged would raise NotImplementedError


def test_a_server_that_did_not_answer_is_asked_last_for_a_while_not_skipped() -> None:
    a, m, c = (Target(f"http://10.0.0.{n}:8000", f"10.0.0.{n}:8000") for n in (1, 2, 3))
    unanswered = Unanswered(seconds=10.0)
    assert unanswered.ordered((a, m, c), 0.0) == (a, m, c)
    unanswered.failed(a.peer, 100.0)
    assert unanswered.ordered((a, m, c), 105.0) == (m, c, a)  # still asked, after the others
    assert unanswered.ordered((a, m, c), 110.0) == (a, m, c)  # its time is up: first again
    unanswered.failed(a.peer, 200.0)
    unanswered.answered(a.peer)
    assert unanswered.ordered((a, m, c), 201.0) == (a, m, c)  # it answered (asked last): first again


def test_the_servers_that_did_not_answer_are_bounded() -> None:
    unanswered = Unanswered(limit=2)
    for n in range(5):
        unanswered.failed(f"10.0.0.{n}:8000", 0.0)
    assert len(unanswered) == 2


def test_a_mirror_shows_itself_as_a_site_that_is_not_primary_and_takes_no_administration() -> None:
    from resolver.server import node_site  # the serving stack: imported only by this test

    primary = node_site(config.load(env={}), ("10.0.0.1", 2641))
    mirror = node_site(
        config.load(env={"IDNODE_MIRROR_OF": "http://10.0.0.1:8000", "IDNODE_STORE": "postgresql://u@h/db"}),
        ("10.0.0.2", 2641),
    )  # GET_SITE_INFO's answer
    assert primary.is_primary and any(i.admin for i in primary.servers[0].interfaces)
    assert not mirror.is_primary and not any(i.admin for i in mirror.servers[0].interfaces)
