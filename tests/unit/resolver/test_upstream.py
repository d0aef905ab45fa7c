"""Choosing servers of a site, reading other nodes' answers, and the hierarchy settings."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from protocol import valuedata as vd
from protocol.errors import InvalidValue
from protocol.identifiers import parse_handle
from protocol.jsonfmt import values_from_answer
from protocol.records import HandleRecord, HandleValue
from resolver import config
from resolver.delegation.hop import HopFailed
from resolver.delegation.http_client import HttpClient
from resolver.delegation.sites import Target, hash_index, serves, sites_of, targets
from resolver.delegation.target_policy import TargetPolicy, TargetRefused


def http_server(n: int, port: int, *, protocol: str = "HTTP") -> vd.Server:
    return vd.Server(n, f"127.0.0.{n}", b"", (vd.Interface(protocol, port),))


def site(*servers: vd.Server, primary: bool = True, hash_option: str = "BY_ALL") -> vd.Site:
    return vd.Site(servers, is_primary=primary, hash_option=vd.HASH_OPTIONS[hash_option])


# The handle hash ----------------------------------------------------------------------------


def java_server_number(part: str, servers: int) -> int:
    """handle.net's SiteInfo: MD5 of the upper-cased part, last four bytes as a Java int."""
    word: int = struct.unpack(">i", hashlib.md5(part.upper().encode()).digest()[-4:])[0]
    return abs(word) % servers


@pytest.mark.parametrize("text", ["88.118.8/JXDY2106023", "88.200/a", "88.118/x-y.z", "0.NA/88.118.8"])
@pytest.mark.parametrize("servers", [2, 3, 7])
def test_the_hash_picks_the_server_handle_net_picks(text: str, servers: int) -> None:
    handle = parse_handle(text)
    assert hash_index(site(), handle, servers) == java_server_number(handle.text, servers)


def test_hashing_by_prefix_keeps_a_prefix_on_one_server() -> None:
    by_prefix = site(hash_option="BY_PREFIX")
    picks = {hash_index(by_prefix, parse_handle(f"88.118.8/item-{n}"), 5) for n in range(50)}
    assert picks == {java_server_number("88.118.8", 5)}
    spread = {hash_index(site(), parse_handle(f"88.118.8/item-{n}"), 5) for n in range(50)}
    assert len(spread) > 1


def test_hashing_ignores_ascii_case() -> None:
    assert hash_index(site(), parse_handle("88.118/abc"), 7) == hash_index(site(), parse_handle("88.118/ABC"), 7)


def test_targets_start_at_the_hashed_server_then_fail_over_to_the_rest_and_the_mirrors() -> None:
    handle = parse_handle("88.200/fail-over")
    servers = tuple(http_server(n, 9000 + n) for n in range(1, 4))
    mirror = site(http_server(9, 9009), primary=False)
    ordered = targets([site(*servers), mirror], handle)
    first = java_server_number(handle.text, 3)
    expected = [servers[(first + k) % 3] for k in range(3)]
    assert [t.url for t in ordered] == [f"http://{s.address}:{9000 + s.server_id}" for s in expected] + [
        "http://127.0.0.9:9009"
    ]


def test_servers_without_an_http_interface_are_skipped() -> None:
    tcp_only = http_server(1, 2641, protocol="TCP")
    ordered = targets([site(tcp_only, http_server(2, 8000, protocol="HTTPS"))], parse_handle("88.1/x"))
    assert ordered == (Target("https://127.0.0.2:8000", "127.0.0.2:8000"),)


def test_sites_of_puts_primaries_first_and_skips_malformed_values() -> None:
    mirror, primary = site(http_server(1, 1), primary=False), site(http_server(2, 2))
    record = HandleRecord(
        "0.NA/88.1",
        (
            HandleValue(1, "HS_SITE", vd.encode_site(mirror)),
            HandleValue(2, "HS_SITE", b"\x00garbage"),
            HandleValue(3, "HS_SITE", vd.encode_site(primary)),
            HandleValue(4, "URL", b"https://example.com/"),
        ),
    )
    assert sites_of(record) == [primary, mirror]


def test_a_node_recognises_itself_in_a_site() -> None:
    sites = [site(http_server(1, 8101))]
    assert serves(sites, "127.0.0.1", 8101)
    assert not serves(sites, "127.0.0.1", 8102)
    assert not serves(sites, "127.0.0.2", 8101)


# Answers from other nodes ------------------------------------------------------------------


def test_an_answer_keeps_the_values_and_their_timestamps() -> None:
    values = values_from_answer(
        [{"index": 1, "type": "URL", "data": {"format": "string", "value": "x"}, "ttl": 60,
          "timestamp": "2026-01-02T03:04:05Z"}]
    )  # fmt: skip
    assert values == [HandleValue(1, "URL", b"x", 60, timestamp=1767323045)]


@pytest.mark.parametrize(
    "items",
    [
        {"index": 1},
        "values",
        [{"index": 1, "type": "URL", "data": "x"}, {"index": 1, "type": "URL", "data": "y"}],
        [{"index": 0, "type": "URL", "data": "x"}],
        [{"index": 1, "type": "URL", "data": "x", "timestamp": "yesterday"}],
        [{"index": 1, "type": "URL", "data": {"format": "site", "value": {"servers": "none"}}}],
        [{"index": 1, "type": "URL", "data": "x", "ttl": -5}],
    ],
)
def test_a_malformed_answer_is_refused(items: Any) -> None:
    with pytest.raises(InvalidValue):
        values_from_answer(items)


# Settings ----------------------------------------------------------------------------------


def test_a_secondary_node_recurses_and_a_top_level_node_does_not_by_default() -> None:
    assert config.load(env={}).recursion is True
    top = config.load(env={}, flags={"role": "top-level"})
    assert (top.recursion, top.node_prefix) == (False, "88")
    assert config.load(env={}).node_prefix == "88.118"
    assert config.load(env={}, flags={"recursion": False}).recursion is False


def test_upstreams_come_from_flags_or_a_comma_separated_variable() -> None:
    env = {"IDNODE_UPSTREAM": "http://127.0.0.1:8100/, http://127.0.0.2:8100", "IDNODE_UPSTREAM_SECRET": "s"}
    loaded = config.load(env=env)
    assert loaded.upstream == ("http://127.0.0.1:8100", "http://127.0.0.2:8100")
    assert loaded.upstream_identity == "300:0.NA/88.118"


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        ({"upstream": ["http://127.0.0.1:8100"]}, "upstream_secret"),
        ({"upstream": ["ftp://127.0.0.1"], "upstream_secret": "s"}, "upstream"),
        ({"role": "top-level", "upstream": ["http://127.0.0.1:1"], "upstream_secret": "s"}, "upstream"),
        ({"role": "middle"}, "role"),
        ({"advertise": "node.example:8000"}, "advertise"),
        ({"advertise": "127.0.0.1"}, "advertise"),
        ({"upstream_timeout": 0}, "upstream_timeout"),
        ({"max_delegation_depth": 0}, "max_delegation_depth"),
        (
            {"listen": "0.0.0.0:8000", "upstream": ["http://127.0.0.1:8100"], "upstream_secret": "s"},
            "advertise",
        ),
    ],
)
def test_bad_hierarchy_settings_are_refused_by_name(flags: dict[str, Any], named: str) -> None:
    with pytest.raises(config.ConfigError, match=named):
        config.load(env={}, flags=flags)


def test_a_bad_delegation_allow_network_is_refused_by_name() -> None:
    with pytest.raises(config.ConfigError, match="delegation_allow"):
        config.load(env={"IDNODE_DELEGATION_ALLOW": "10.1.2.3/8"})
    with pytest.raises(config.ConfigError, match="delegation_allow"):
        config.load(env={}, flags={"delegation_allow": ["localhost"]})


def test_delegation_allow_comes_from_flags_or_a_comma_separated_variable() -> None:
    assert config.load(env={}).delegation_allow == ()
    loaded = config.load(env={"IDNODE_DELEGATION_ALLOW": "127.0.0.0/8, fd00::/8,10.20.0.7"})
    assert loaded.delegation_allow == ("127.0.0.0/8", "fd00::/8", "10.20.0.7/32")
    assert config.load(env={}, flags={"delegation_allow": ["::1"]}).delegation_allow == ("::1/128",)


# Where delegation may send queries ----------------------------------------------------------

DEFAULT = TargetPolicy()


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("fd12:3456::1", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "reserved"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.10", "reserved"),
        ("2001:db8::1", "reserved"),
        # IPv6 forms that reach an IPv4 address are judged by it.
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
    ],
)
def test_addresses_from_records_that_reach_inside_are_refused_by_default(address: str, why: str) -> None:
    assert DEFAULT.refusal(ipaddress.ip_address(address)) == why


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2400:3200::1", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert DEFAULT.refusal(ipaddress.ip_address(address)) is None


def test_delegation_allow_opens_exactly_its_networks() -> None:
    policy = TargetPolicy.from_text(["10.20.0.0/16", "127.0.0.0/8"])
    assert policy.refusal(ipaddress.ip_address("10.20.3.4")) is None
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("10.21.0.1")) == "private"
    assert policy.refusal(ipaddress.ip_address("169.254.169.254")) == "link-local"
    assert policy.refusal(ipaddress.ip_address("::1")) == "loopback"  # IPv6 loopback not listed


async def test_a_host_name_is_judged_by_every_address_it_resolves_to() -> None:
    with pytest.raises(TargetRefused, match=r"resolves to .*loopback"):
        await DEFAULT.address("localhost")
    with pytest.raises(TargetRefused, match="loopback"):
        await DEFAULT.address("127.0.0.1")
    with pytest.raises(TargetRefused, match="private"):
        await DEFAULT.address("10.0.0.1")  # judged, never connected to
    # Allowed, the name is answered with the address it was checked at (no second lookup).
    allowed = TargetPolicy.from_text(["127.0.0.0/8", "::1/128"])
    assert ipaddress.ip_address(await allowed.address("localhost")).is_loopback
    assert await allowed.address("127.0.0.1") == "127.0.0.1"


def test_targets_named_by_records_share_one_metrics_label_and_upstreams_keep_theirs() -> None:
    handle = parse_handle("88.1/x")
    labels = {t.label for n in range(1, 50) for t in targets([site(http_server(n, 9000 + n))], handle)}
    assert labels == {"site"}
    upstream = Target.from_url("http://127.0.0.1:8100")
    assert (upstream.trusted, upstream.label) == (True, "127.0.0.1:8100")


# The client against a loopback server, in-process -------------------------------------------


@contextlib.asynccontextmanager
async def handle_server() -> AsyncIterator[tuple[int, list[str]]]:
    """An aiohttp server on 127.0.0.1 answering every query for 88.1/x; yields its port and the Host headers seen."""
    seen: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Host", ""))
        return web.json_response({"responseCode": 1, "handle": "88.1/x", "values": []})

    app = web.Application()
    app.router.add_get("/api/handles/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1], seen
    finally:
        await runner.cleanup()


async def test_the_client_never_connects_to_a_refused_target_and_says_the_same_for_any_port() -> None:
    client = HttpClient("test")
    try:
        async with handle_server() as (port, seen):
            target = Target(f"http://127.0.0.1:{port}", f"127.0.0.1:{port}")
            with pytest.raises(HopFailed) as refused:
                await client.resolve(target, parse_handle("88.1/x"), ())
        assert seen == []
        assert refused.value.result == "refused"
        # An upstream the operator configured is trusted: asked on loopback too.
        async with handle_server() as (port, seen):
            record = await client.resolve(Target.from_url(f"http://127.0.0.1:{port}"), parse_handle("88.1/x"), ())
        assert record is not None and len(seen) == 1
    finally:
        await client.close()


async def test_a_server_named_by_a_host_name_is_asked_at_the_address_checked() -> None:
    first = (await asyncio.get_running_loop().getaddrinfo("localhost", None, type=socket.SOCK_STREAM))[0][4][0]
    if first != "127.0.0.1":
        pytest.skip(f"localhost resolves to {first} first here; the server listens on 127.0.0.1")
    client = HttpClient("test", policy=TargetPolicy.from_text(["127.0.0.0/8", "::1/128"]))
    try:
        async with handle_server() as (port, seen):
            named = Target(f"http://localhost:{port}", f"localhost:{port}")
            # The URL asked holds the checked address: the name is not looked up again (rebinding).
            assert await client._destination(named) == (f"http://127.0.0.1:{port}", "localhost")
            assert await client.resolve(named, parse_handle("88.1/x"), ()) is not None
        assert seen == [f"localhost:{port}"]  # the name kept in Host, the checked address connected to
    finally:
        await client.close()
