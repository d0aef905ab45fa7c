"""The client address behind a reverse proxy: which X-Forwarded-For hop is believed, and the setting."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolver import config as config_mod
from resolver.cli import _parser
from resolver.http.forwarded import TrustedProxies

PROXIES = TrustedProxies(["127.0.0.1", "10.9.0.0/16", "::1"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("127.0.0.1", ["10.0.0.1"], "10.0.0.1"),  # one proxy
        ("127.0.0.1", ["10.0.0.1, 10.9.3.4"], "10.0.0.1"),  # a second trusted hop is skipped
        ("127.0.0.1", ["10.0.0.1", "10.9.3.4"], "10.0.0.1"),  # the header twice: one list
        ("127.0.0.1", ["6.6.6.6, 10.0.0.1"], "10.0.0.1"),  # what the client wrote itself is not read
        ("127.0.0.1", ["not an address, 10.0.0.1"], "10.0.0.1"),  # ...even when it is garbage
        ("127.0.0.1", [" 2001:db8::7 "], "2001:db8::7"),
        ("::ffff:127.0.0.1", ["10.0.0.1"], "10.0.0.1"),  # a dual-stack socket's IPv4 proxy
        ("::1", ["10.0.0.1"], "10.0.0.1"),
        ("127.0.0.1", ["10.9.0.1, 10.9.0.2"], "10.9.0.1"),  # every hop trusted: the first
        ("127.0.0.1", [], "127.0.0.1"),  # no header
        ("127.0.0.1", [""], "127.0.0.1"),
        ("127.0.0.1", ["10.0.0.1, bogus"], "127.0.0.1"),  # malformed where it is read: the peer
        ("127.0.0.1", ["10.0.0.1:4000"], "127.0.0.1"),
        ("127.0.0.1", ["[2001:db8::7]"], "127.0.0.1"),
        ("127.0.0.1", ["10.0.0.1,"], "127.0.0.1"),
        ("127.0.0.2", ["10.0.0.1"], "127.0.0.2"),  # an untrusted peer: the header is ignored
        ("", ["10.0.0.1"], ""),  # no peer known (a closed socket)
    ],
)
def test_the_client_is_the_right_most_untrusted_hop(peer: str, forwarded: list[str], client: str) -> None:
    assert PROXIES.client(peer, forwarded) == client


@given(st.lists(st.text(max_size=60), max_size=4))
def test_any_header_gives_an_address_or_the_peer(forwarded: list[str]) -> None:
    client = PROXIES.client("127.0.0.1", forwarded)
    assert client == "127.0.0.1" or not PROXIES.trusts(ipaddress.ip_address(client))


def test_no_proxy_is_trusted_by_default() -> None:
    config = config_mod.load(env={})
    assert config.trusted_proxies == ()
    assert TrustedProxies(config.trusted_proxies).client("127.0.0.1", ["10.0.0.1"]) == "127.0.0.1"


def test_env_list_and_repeated_flag() -> None:
    config = config_mod.load(env={"IDNODE_TRUSTED_PROXIES": "127.0.0.1, 10.9.0.0/16"})
    assert config.trusted_proxies == ("127.0.0.1", "10.9.0.0/16")
    args = _parser().parse_args(["serve", "--trusted-proxy", "127.0.0.1", "--trusted-proxy", "::1"])
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    assert config_mod.load(env={}, flags=flags).trusted_proxies == ("127.0.0.1", "::1")


@pytest.mark.parametrize("bad", ["10.0.0.300", "10.0.0.1/8", "proxy.example", "10.0.0.0/33"])
def test_a_bad_network_stops_start_up_naming_the_setting(bad: str) -> None:
    with pytest.raises(config_mod.ConfigError, match="'trusted_proxies'"):
        config_mod.load(env={"IDNODE_TRUSTED_PROXIES": bad})
