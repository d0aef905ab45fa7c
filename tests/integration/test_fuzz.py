"""A quick run of the HTTP fuzzer (bench.fuzz_http) against a real node, and the cases it found.

The full run (100,000 requests) is ``python -m bench.fuzz_http``; this one sends a few
thousand of the same seeded requests, so a change that brings back a 500, a hang, a worker
crash or a 4xx without a responseCode fails here first.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator

import pytest

from bench.fuzz_http import fuzz, log_problems, prepare
from bench.fuzzgen import Generator
from tests.support.nodeproc import ADMIN, ADMIN_SECRET, ADMIN_USER, Node, child_pids, record, url_value

SEED = 7
COUNT = 3000
SECONDS = 20.0  # a slow machine sends fewer; the oracle still judges every one sent


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    # The fuzzer sends wrong credentials on purpose; the failure limit has its own test.
    env = {"IDNODE_AUTH_FAILURE_LIMIT": "10000", "IDNODE_AUTH_BRAKE_LIMIT": "10000"}
    node = Node(tmp_path_factory.mktemp("fuzz") / "data", args=["--workers", "2"], env=env).start()
    yield node
    node.stop()


def test_seeded_fuzz_run_meets_the_oracle(fuzzed: Node) -> None:
    assert fuzzed.proc is not None
    world = prepare(fuzzed.port, (ADMIN_USER, ADMIN_SECRET))
    before = child_pids(fuzzed.proc.pid)
    tally = asyncio.run(fuzz("127.0.0.1", fuzzed.port, Generator(SEED, world), COUNT, SECONDS, 8))
    assert tally.sent >= 500, "too few requests to mean anything"
    assert tally.failures == [], json.dumps(tally.failures[:5], indent=1, ensure_ascii=False)
    assert child_pids(fuzzed.proc.pid) == before, "a worker died and was replaced"
    problems, _ = log_problems(fuzzed.stderr_lines)
    assert problems == [], problems[:3]
    assert len(tally.statuses) >= 8, f"the generator reached too few outcomes: {tally.statuses}"


def test_generator_is_a_function_of_seed_and_number() -> None:
    from bench.fuzzgen import World

    world = World(admin=("300:0.NA/88.118", "a"), enterprise=("300:0.NA/88.118.5", "b"), handles=("88.118.5/x",))
    first = [Generator(3, world).case(n).wire() for n in (0, 17, 999)]
    assert first == [Generator(3, world).case(n).wire() for n in (0, 17, 999)]
    assert first != [Generator(4, world).case(n).wire() for n in (0, 17, 999)]


# Cases the fuzzer found: each was a 500 with a traceback, or aiohttp's plain-text answer.


def _assert_clear(reply_status: int, body: bytes, status: int, *words: str) -> None:
    assert reply_status == status, body
    answer = json.loads(body)
    assert isinstance(answer["responseCode"], int)
    for word in words:
        assert word in answer["message"], answer["message"]


@pytest.mark.parametrize("param", ["page", "pageSize"])
def test_an_integer_parameter_longer_than_pythons_conversion_limit_is_a_400(fuzzed: Node, param: str) -> None:
    reply = fuzzed.get(f"/api/handles?prefix=88.118.5&{param}=" + "1" * 5000)
    _assert_clear(reply.status, reply.body, 400, param, "5000 characters")


def test_an_index_longer_than_pythons_conversion_limit_is_a_400(fuzzed: Node, name: str) -> None:
    assert (
        fuzzed.put(f"/api/handles/88.118.6/{name}", record(url_value(1, "https://a.example/")), auth=ADMIN).status
        == 201
    )
    reply = fuzzed.get(f"/api/handles/88.118.6/{name}?index=" + "9" * 5000, auth=ADMIN)
    _assert_clear(reply.status, reply.body, 400, "index")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"atomic": false, "operations": [{"op": "create", "handle": "88.118.5/\\ud800", "values": []}]}',
        b'{"atomic": false, "operations": [{"op": "create", "handle": "88.118.5/\xed\xa0\x80", "values": []}]}',
        b'{"atomic": false, "operations": [{"op": "delete", "handle": "88.118.5/a\\udc00b"}]}',
    ],
)
def test_a_batch_with_half_a_surrogate_pair_is_a_400(fuzzed: Node, raw: bytes) -> None:
    reply = fuzzed.request("POST", "/api/batch", raw=raw, auth=ADMIN)
    _assert_clear(reply.status, reply.body, 400)


def test_an_escaped_surrogate_pair_is_still_text(fuzzed: Node, name: str) -> None:
    body = json.dumps(record(url_value(1, "https://example.com/🚀")), ensure_ascii=True).encode()
    assert b"\\ud83d\\ude80" in body
    assert fuzzed.request("PUT", f"/api/handles/88.118.6/{name}", raw=body, auth=ADMIN).status == 201
    assert "🚀" in fuzzed.get(f"/api/handles/88.118.6/{name}").body.decode()


def test_a_compressed_body_is_a_clear_415(fuzzed: Node, name: str) -> None:
    """Bodies are not decompressed (a bad gzip body was a 500): any Content-Encoding is refused."""
    body = json.dumps(record(url_value(1, "https://example.com/"))).encode()
    headers = {"Content-Encoding": "gzip"}
    reply = fuzzed.request("PUT", f"/api/handles/88.118.6/{name}", raw=body, auth=ADMIN, headers=headers)
    _assert_clear(reply.status, reply.body, 415, "Content-Encoding")


def exchange(node: Node, request: bytes) -> bytes:
    """Send raw bytes on a connection of their own; everything the node sends until it closes."""
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_options_asterisk_is_answered_by_the_node(fuzzed: Node) -> None:
    answer = exchange(fuzzed, b"OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 204"), answer
    assert b"Access-Control-Allow-Methods" in answer


def test_connect_is_a_clear_405(fuzzed: Node) -> None:
    """CONNECT's target is a host, not a path: aiohttp routed it nowhere, a plain-text 404."""
    answer = exchange(fuzzed, b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: a\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405"), answer
    assert json.loads(body) == {"responseCode": 5, "message": "CONNECT is not supported: this is no proxy"}
