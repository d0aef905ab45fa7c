"""Behind a reverse proxy: failure limits, audit and access log key on the client the proxy names.

The proxy is played by the test itself: its requests come from 127.0.0.1 carrying
X-Forwarded-For (the addresses there are only header values; no traffic goes to them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_authentication import ENTERPRISE, OWNER, OWNER_HANDLE, allocate
from tests.support.nodeproc import Node, record, url_value
from tests.support.poll import wait_until

A = {"X-Forwarded-For": "10.0.0.1"}
B = {"X-Forwarded-For": "10.0.0.2"}


def burst(node: Node, headers: dict[str, str], source: str = "127.0.0.1") -> None:
    """Ten wrong secrets: the failure limit per address."""
    for _ in range(10):
        assert node.get(OWNER_HANDLE, auth=(OWNER[0], "guess"), headers=headers, source=source).status == 403


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[Node]:
    node = Node(tmp_path / "data", args=["--trusted-proxy", "127.0.0.1", "--access-log"]).start()
    allocate(node)
    yield node
    node.stop()


def test_a_burst_behind_the_proxy_locks_out_its_client_only(proxied: Node) -> None:
    node = proxied
    burst(node, A)
    assert node.get(OWNER_HANDLE, auth=OWNER, headers=A).status == 429
    other = node.get(OWNER_HANDLE, auth=OWNER, headers=B)
    assert other.status == 200, other.body
    # The audit entry and the access log name the client, not the proxy.
    written = node.put(f"/api/handles/{ENTERPRISE}/x", record(url_value(1, "https://x/")), auth=OWNER, headers=B)
    assert written.status == 201, written.body
    audit = node.get(f"/api/audit?prefix={ENTERPRISE}", auth=OWNER, headers=B)
    assert audit.status == 200, audit.body
    assert [e["address"] for e in audit.json["entries"] if e["handle"] == f"{ENTERPRISE}/x"] == ["10.0.0.2"]
    wait_until(lambda: any("GET /api/audit" in line for line in node.stderr_lines), what="the access log")
    logged = [line for line in node.stderr_lines if "GET /api/audit" in line]
    assert len(logged) == 1 and "idnode.access: 10.0.0.2 " in logged[0], logged


def test_from_an_untrusted_peer_the_header_is_ignored(proxied: Node) -> None:
    node = proxied
    burst(node, A, source="127.0.0.2")
    assert node.get(OWNER_HANDLE, auth=OWNER, headers=B, source="127.0.0.2").status == 429
    assert node.get(OWNER_HANDLE, auth=OWNER, headers=B).status == 200  # via the proxy: another client


def test_a_malformed_header_falls_back_to_the_peer(proxied: Node) -> None:
    node = proxied
    burst(node, {"X-Forwarded-For": "10.0.0.1, not-an-address"})
    assert node.get(OWNER_HANDLE, auth=OWNER).status == 429  # the proxy's own address took the failures
    assert node.get(OWNER_HANDLE, auth=OWNER, headers=B).status == 200


def test_without_trusted_proxies_the_header_is_ignored(tmp_path: Path) -> None:
    # Set to nothing, as an operator clearing it would: the peer's address is the client's.
    node = Node(tmp_path / "data", env={"IDNODE_TRUSTED_PROXIES": ""}).start()
    try:
        allocate(node)
        burst(node, A)
        assert node.get(OWNER_HANDLE, auth=OWNER, headers=B).status == 429
    finally:
        node.stop()
