"""Anonymous requests for challenges cannot evict another client's pending challenge.

Issue #21, finding 4: every administrative request is challenged, and the request is kept until
its answer arrives; a new challenge used to take the place of the one expiring first. 3,000
anonymous 98-byte UDP requests made a legitimate answer fail with "no challenge pending" 3
times of 3, and 20 anonymous 9 KB ones evicted a legitimate large one (16 large slots). Now
each source address holds a few pending challenges (8 small, 2 large), takes no other's place,
and is answered 3 (SERVER_TOO_BUSY) past that, counted as ``reason="challenge_limit"``.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator

import pytest

from protocol.codes import ResponseCode
from protocol.records import HandleValue
from protocol.wire.auth import client_secret_kind, secret_answer
from protocol.wire.message import (
    ChallengeAnswerRequest,
    ChallengeResponse,
    CreateHandleRequest,
    DeleteHandleRequest,
    Message,
    OpCode,
    decode_message,
)
from tests.integration.test_handle_admin_wire import KEY, NODE_ADMIN, request
from tests.support.handleclient import read_message
from tests.support.nodeproc import Node

FLOODER, CLIENT = "127.0.0.2", "127.0.0.3"
SMALL_QUOTA, LARGE_QUOTA = 8, 2
BATCH = 100  # datagrams in flight at once: well within the socket buffers


@pytest.fixture
def two_workers(fresh_node: Node) -> Iterator[Node]:
    fresh_node.args = ["--workers", "2"]
    yield fresh_node.start()


def over_udp(port: int, source: str, data: bytes) -> Message:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.bind((source, 0))
        sock.sendto(data, ("127.0.0.1", port))
        return decode_message(sock.recvfrom(65536)[0])


def over_tcp(port: int, source: str, data: bytes) -> Message:
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as sock:
        sock.sendall(data)
        return decode_message(read_message(sock))


def answer_to(challenge: Message, rid: int) -> bytes:
    assert challenge.response_code == ResponseCode.AUTHENTICATION_NEEDED, challenge
    assert isinstance(challenge.body, ChallengeResponse) and challenge.request_digest is not None
    kind = client_secret_kind(challenge.version, challenge.envelope.suggest)
    mac = secret_answer(kind, KEY, challenge.body.nonce, challenge.request_digest.digest)
    answer = ChallengeAnswerRequest("HS_SECKEY", NODE_ADMIN, 300, mac)
    return request(OpCode.CHALLENGE_RESPONSE, answer, session_id=challenge.envelope.session_id, rid=rid)


def create(handle: str, data: bytes = b"") -> bytes:
    values = (HandleValue(1, "URL", b"https://flood.example/"), HandleValue(2, "DATA", data))
    return request(OpCode.CREATE_HANDLE, CreateHandleRequest(handle, values), rid=21)


def udp_flood(port: int, count: int) -> Counter[int]:
    """Send ``count`` anonymous delete requests from FLOODER, BATCH at a time; the codes answered."""
    codes: Counter[int] = Counter()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.bind((FLOODER, 0))
        for start in range(0, count, BATCH):
            for n in range(start, min(start + BATCH, count)):
                sock.sendto(request(OpCode.DELETE_HANDLE, DeleteHandleRequest(f"88.118/F{n}")), ("127.0.0.1", port))
            for _ in range(start, min(start + BATCH, count)):
                codes[decode_message(sock.recvfrom(65536)[0]).response_code] += 1
    return codes


def test_a_udp_flood_of_small_requests_leaves_another_client_s_challenge_answerable(two_workers: Node) -> None:
    node = two_workers
    flooded: Counter[int] = Counter()
    for round_ in range(3):
        challenge = over_udp(node.handle_port, CLIENT, create(f"88.118/KEPT-{round_}"))
        flooded += udp_flood(node.handle_port, 3000)
        done = over_udp(node.handle_port, CLIENT, answer_to(challenge, rid=22))
        assert (done.op_code, done.response_code) == (OpCode.CREATE_HANDLE, ResponseCode.SUCCESS), done.body
        assert node.get(f"/api/handles/88.118/KEPT-{round_}").status == 200
    # The flood's first challenges are still pending (60 s): it got its quota once, then 3.
    assert flooded == {
        ResponseCode.AUTHENTICATION_NEEDED: SMALL_QUOTA,
        ResponseCode.SERVER_TOO_BUSY: 9000 - SMALL_QUOTA,
    }
    refused = 9000 - SMALL_QUOTA
    counted = node.metric(
        "idnode_handle_dropped_total", until=lambda n: n >= refused, transport="udp", reason="challenge_limit"
    )
    assert counted == refused


def test_large_requests_from_one_address_do_not_evict_another_s_large_one(two_workers: Node) -> None:
    node = two_workers
    challenge = over_tcp(node.handle_port, CLIENT, create("88.118/LARGE-KEPT", bytes(9000)))
    flood = [over_tcp(node.handle_port, FLOODER, create(f"88.118/LARGE-{n}", bytes(9000))) for n in range(20)]
    assert len(create("88.118/LARGE-19", bytes(9000))) > 9000
    done = over_tcp(node.handle_port, CLIENT, answer_to(challenge, rid=22))
    assert (done.op_code, done.response_code) == (OpCode.CREATE_HANDLE, ResponseCode.SUCCESS), done.body
    assert node.get("/api/handles/88.118/LARGE-KEPT").status == 200
    codes = Counter(m.response_code for m in flood)
    assert codes == {ResponseCode.AUTHENTICATION_NEEDED: LARGE_QUOTA, ResponseCode.SERVER_TOO_BUSY: 20 - LARGE_QUOTA}
    counted = node.metric(
        "idnode_handle_dropped_total", until=lambda n: n >= 18, transport="tcp", reason="challenge_limit"
    )
    assert counted == 20 - LARGE_QUOTA
