"""An answer to a challenge does the challenged request once, however many copies race in.

Issue #21, finding 9: copies of one CHALLENGE_RESPONSE sent at once over UDP land on different
workers, and each used to find the pending challenge before any had cleared it, so the request
ran more than once (201 handles minted in 200 trials). Taking a challenge is now atomic across
workers: one copy does the request, every other one is told no challenge is pending.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from protocol.codes import ResponseCode
from protocol.errors import AuthenticationTimeout
from protocol.records import HandleValue
from protocol.wire.auth import client_secret_kind, secret_answer
from protocol.wire.message import ChallengeAnswerRequest, ChallengeResponse, CreateHandleRequest, OpCode
from tests.integration.test_handle_admin_wire import KEY, NODE_ADMIN, request
from tests.support.handleclient import copies_at_once, tcp
from tests.support.nodeproc import Node

TRIALS = 600
COPIES = 16


@pytest.fixture
def two_workers(fresh_node: Node) -> Iterator[Node]:
    fresh_node.args = ["--workers", "2"]
    yield fresh_node.start()


def answer_for(node: Node, handle: str, rid: int) -> bytes:
    """A correct answer to the challenge of a request creating ``handle``."""
    body = CreateHandleRequest(handle, (HandleValue(1, "URL", b"https://race.example/"),))
    (challenge,) = tcp(node.handle_port, request(OpCode.CREATE_HANDLE, body, rid=rid))
    assert isinstance(challenge.body, ChallengeResponse) and challenge.request_digest is not None
    kind = client_secret_kind(challenge.version, challenge.envelope.suggest)
    mac = secret_answer(kind, KEY, challenge.body.nonce, challenge.request_digest.digest)
    answer = ChallengeAnswerRequest("HS_SECKEY", NODE_ADMIN, 300, mac)
    return request(OpCode.CHALLENGE_RESPONSE, answer, session_id=challenge.envelope.session_id, rid=rid + 1)


def test_racing_copies_of_one_answer_run_the_request_once(two_workers: Node) -> None:
    node = two_workers
    outcomes = []
    for n in range(TRIALS):
        codes = copies_at_once(node.handle_port, answer_for(node, f"88.118/RACE-{n}", rid=1000 + 2 * n), COPIES)
        outcomes.append(sorted(codes))
    once = sorted([ResponseCode.SUCCESS] + [AuthenticationTimeout.code] * (COPIES - 1))
    twice = [o for o in outcomes if o != once]
    assert not twice, f"{len(twice)} of {TRIALS} trials ran the request more than once or not at all: {twice[:5]}"
