"""Choosing servers of a site, reading other nodes' answers, and the hierarchy settings."""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import pytest

from protocol import valuedata as vd
from protocol.errors import InvalidValue
from protocol.identifiers import parse_handle
from protocol.jsonfmt import values_from_answer
from protocol.records import HandleRecord, HandleValue
from resolver import config
from resolver.upstream import Target, hash_index, serves, sites_of, targets


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
