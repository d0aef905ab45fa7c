"""``source_address``: queries to other nodes leave from the address set, over HTTP, UDP and TCP.

Each server here is a real socket on 127.0.0.1 that notes where a query came from and then
fails it; the query must have come from 127.0.0.2 when that is the source address."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator

import pytest

from protocol.identifiers import parse_handle
from resolver import config
from resolver.delegation.handle_client import HandleClient
from resolver.delegation.hop import HopFailed
from resolver.delegation.http_client import HttpClient
from resolver.delegation.sites import HandleTarget, Target
from resolver.delegation.target_policy import TargetPolicy

LOOPBACK = TargetPolicy.from_text(["127.0.0.0/8"])
HANDLE = parse_handle("88.300/doc-1")


class Peers:
    """A TCP listener and a UDP socket on 127.0.0.1 noting the address of whoever came."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.setblocking(False)
        self.server: asyncio.Server | None = None

    async def start(self) -> Peers:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.seen.append(("tcp", writer.get_extra_info("peername")[0]))
            writer.close()

        self.server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        asyncio.get_running_loop().add_reader(self.udp.fileno(), self._datagram)
        return self

    def _datagram(self) -> None:
        _data, peer = self.udp.recvfrom(65535)
        self.seen.append(("udp", peer[0]))

    @property
    def tcp_port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        asyncio.get_running_loop().remove_reader(self.udp.fileno())
        self.udp.close()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def peers() -> AsyncIterator[Peers]:
    running = await Peers().start()
    yield running
    await running.stop()


@pytest.mark.parametrize("source", [None, "127.0.0.2"])
async def test_http_queries_leave_from_the_source_address(peers: Peers, source: str | None) -> None:
    client = HttpClient("node-a", 0.5, LOOPBACK, source)
    try:
        with pytest.raises(HopFailed):
            await client.resolve(
                Target(f"http://127.0.0.1:{peers.tcp_port}", f"127.0.0.1:{peers.tcp_port}"), HANDLE, ()
            )
    finally:
        await client.close()
    assert peers.seen and {seen for seen in peers.seen} == {("tcp", source or "127.0.0.1")}


@pytest.mark.parametrize("source", [None, "127.0.0.2"])
async def test_handle_queries_leave_from_the_source_address(peers: Peers, source: str | None) -> None:
    client = HandleClient(0.5, LOOPBACK, source)
    target = HandleTarget("127.0.0.1", peers.udp.getsockname()[1], peers.tcp_port)
    with pytest.raises(HopFailed):
        await client.resolve(target, HANDLE, ())  # UDP is silent, then TCP closes at once
    assert {kind for kind, _ in peers.seen} == {"udp", "tcp"}
    assert {address for _, address in peers.seen} == {source or "127.0.0.1"}


def test_a_source_address_must_be_one_of_this_machine() -> None:
    assert config.load(env={}, flags={"source_address": "127.0.0.2"}).source_address == "127.0.0.2"
    with pytest.raises(config.ConfigError, match=re.escape("'source_address': 'node-a' is not an IP address")):
        config.load(env={}, flags={"source_address": "node-a"})
    with pytest.raises(config.ConfigError, match=re.escape("'source_address': this machine cannot send from 192.0.2")):
        config.load(env={"IDNODE_SOURCE_ADDRESS": "192.0.2.1"})


@pytest.mark.parametrize("source", [None, "127.0.0.2"])
def test_a_node_on_every_address_with_advertise_is_accepted_with_or_without_a_source(source: str | None) -> None:
    # source_address is checked beside advertise, not in its place: a node listening on every
    # address that says where others reach it must start, whatever its source address.
    flags = {"listen": "0.0.0.0:8000", "advertise": "127.0.0.1:8000", "upstream": ["http://127.0.0.1:8100"],
             "upstream_secret": "s", "source_address": source}  # fmt: skip
    loaded = config.load(env={}, flags={k: v for k, v in flags.items() if v is not None})
    assert loaded.advertise == "127.0.0.1:8000" and loaded.source_address == source
    with pytest.raises(config.ConfigError, match="'advertise': the node listens on every address"):
        config.load(env={}, flags={k: v for k, v in flags.items() if v is not None and k != "advertise"})
