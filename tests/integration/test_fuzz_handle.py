"""A quick run of the Handle protocol fuzzer (bench.fuzz_handle) against a real node, over UDP and TCP.

The full runs (100,000 messages each way) are ``python -m bench.fuzz_handle``; this one sends a
few thousand of the same seeded cases each way, so a change that brings back a traceback, a
hang, a worker crash, a reply that does not decode or answers another request fails here
first. The oracle's own judgments are checked on made-up replies, so that it is known to fail.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace

import pytest

from bench.fuzz_handle import NODE_ENV, fuzz, node_problems, still_answers, world_of
from bench.fuzzgen_handle import Generator, Identity, World
from bench.fuzzoracle_handle import Frames, frames, judge_tcp
from protocol.codes import ResponseCode
from protocol.wire.message import (
    ChallengeResponse,
    DigestAlgorithm,
    Envelope,
    ErrorResponse,
    Message,
    OpCode,
    OpFlag,
    RequestDigest,
    ResolutionRequest,
    decode_message,
    encode_message,
)
from tests.support.nodeproc import ADMIN_SECRET, Node, child_pids

SEED = 11
COUNT = {"udp": 3000, "tcp": 2000}
CONCURRENCY = {"udp": 32, "tcp": 96}
SECONDS = 20.0  # a slow machine sends fewer; the oracle still judges every one sent


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Generator]]:
    node = Node(tmp_path_factory.mktemp("fuzz-handle") / "data", args=["--workers", "2"], env=dict(NODE_ENV))
    node.start()
    yield node, Generator(SEED, world_of(node.port, ADMIN_SECRET))
    node.stop()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_seeded_handle_fuzz_run_meets_the_oracle(fuzzed: tuple[Node, Generator], transport: str) -> None:
    node, generator = fuzzed
    assert node.proc is not None
    before = child_pids(node.proc.pid)
    tally = asyncio.run(fuzz(generator, node.handle_port, transport, COUNT[transport], SECONDS, CONCURRENCY[transport]))
    assert tally.sent >= 500, "too few cases to mean anything"
    assert tally.failures == [], json.dumps(tally.failures[:5], indent=1, ensure_ascii=False)
    assert child_pids(node.proc.pid) == before, "a worker died and was replaced"
    assert node_problems(node.stderr_lines) == []
    assert asyncio.run(still_answers(node.handle_port)) == []
    # The cases reach past the codec: successes, challenges answered both ways, lookups, refusals.
    for code in (1, 4, 5, 100, 102, 200, 402, 403, 405):
        assert tally.codes[code] > 0, f"no reply with code {code}: {tally.codes}"
    assert tally.follow_ups > 0


WORLD = World(
    admin=Identity("0.NA/88.118", 300, b"a" * 40),
    enterprise=Identity("0.NA/88.118.5", 300, b"b" * 40),
    handles=("88.118.5/REC-0",),
    writable=("88.118.5/REC-0",),
)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_generator_is_a_function_of_seed_and_number(transport: str) -> None:
    numbers = (0, 17, 999, 4242)
    first = [Generator(3, WORLD).case(n, transport).units for n in numbers]
    assert first == [Generator(3, WORLD).case(n, transport).units for n in numbers]
    assert first != [Generator(4, WORLD).case(n, transport).units for n in numbers]
    interleaved = Generator(3, WORLD)
    assert [interleaved.case(n, transport).units for n in reversed(numbers)] == first[::-1]


def test_a_challenge_is_answered_the_same_way_each_time() -> None:
    challenge = encode_message(
        Message(
            OpCode.CREATE_HANDLE,
            ChallengeResponse(bytes(range(16))),
            response_code=ResponseCode.AUTHENTICATION_NEEDED,
            envelope=Envelope(request_id=9, session_id=77, version=(2, 10), suggest=(2, 10)),
            request_digest=RequestDigest(DigestAlgorithm.SHA1, bytes(20)),
        )
    )
    for n in range(20):
        case = Generator(3, WORLD).case(n, "udp")
        answers = Generator(3, WORLD).answers(case, challenge, 0)
        assert answers == Generator(3, WORLD).answers(case, challenge, 0)
        assert answers and all(decode_message(a).envelope.session_id == 77 for a in answers[-1:])


# The oracle, on replies made up to be wrong ------------------------------------------------------


def _request(rid: int, *, keep_alive: bool = False, before_2_8: bool = False) -> bytes:
    """A resolution request; ``before_2_8``: as CNRI 7.x writes it, suggesting no version."""
    flags = OpFlag.RECURSIVE | (OpFlag.KEEP_ALIVE if keep_alive else OpFlag(0))
    envelope = Envelope(request_id=rid, version=(2, 5), suggest=(0, 0)) if before_2_8 else Envelope(request_id=rid)
    return encode_message(Message(OpCode.RESOLUTION, ResolutionRequest("88.118/x"), envelope=envelope, flags=flags))


def _reply(rid: int, code: int = ResponseCode.HANDLE_NOT_FOUND) -> bytes:
    request = decode_message(_request(rid))
    envelope = replace(request.envelope, request_id=rid)
    return encode_message(Message(OpCode.RESOLUTION, ErrorResponse("no"), response_code=code, envelope=envelope))


def test_the_oracle_accepts_replies_in_order_and_a_close_after_them() -> None:
    stream = frames(_request(1, keep_alive=True) + _request(2, before_2_8=True))
    assert stream.messages == [(1, True), (2, False)] and stream.refused is None and not stream.partial
    assert judge_tcp(stream, [_reply(1), _reply(2)], "closed")[1] == []
    plain = frames(_request(1) + _request(2))  # no KEEP_ALIVE: answered all the same, as China's SDKs need
    assert plain.messages == [(1, True), (2, True)]
    assert judge_tcp(plain, [_reply(1), _reply(2)], "closed")[1] == []
    old = frames(_request(1, before_2_8=True) + _request(2, before_2_8=True))  # CNRI 7.x: one request a connection
    assert judge_tcp(old, [_reply(1)], "closed")[1] == []
    # A reset (the node closed with our bytes unread) may discard replies sent before such a request.
    assert judge_tcp(old, [], "reset")[1] == []


def test_the_oracle_fails_a_wrong_id_a_hang_an_early_close_and_garbage() -> None:
    stream = frames(_request(1, keep_alive=True) + _request(2, before_2_8=True))
    assert "wrong request id" in judge_tcp(stream, [_reply(1), _reply(3)], "closed")[1][0]
    assert "hang" in judge_tcp(stream, [_reply(1)], "hang")[1][0]
    assert "closed" in judge_tcp(stream, [_reply(1)], "closed")[1][0]  # a message left unanswered
    plain = frames(_request(1) + _request(2))
    assert "closed" in judge_tcp(plain, [_reply(1)], "closed")[1][0]  # KEEP_ALIVE or not, each is answered
    assert "closed" in judge_tcp(plain, [], "reset")[1][0]
    assert "does not decode" in judge_tcp(stream, [_reply(1)[:-3]], "closed")[1][0]
    assert "request (response code 0)" in judge_tcp(stream, [_request(1)], "closed")[1][0]


def test_an_envelope_out_of_bounds_ends_the_framing_and_its_refusal_carries_its_id() -> None:
    bad = bytearray(_request(-5))
    bad[16:20] = (2**31 - 1).to_bytes(4, "big")
    stream = frames(_request(1, keep_alive=True) + bytes(bad))
    assert stream == Frames([(1, True)], refused=-5)
    assert judge_tcp(stream, [_reply(1), _reply(-5, ResponseCode.PROTOCOL_ERROR)], "closed")[1] == []
    assert judge_tcp(stream, [_reply(-5, ResponseCode.PROTOCOL_ERROR)], "closed")[1] == []
    masked = _reply(2**31 - 5, ResponseCode.PROTOCOL_ERROR)  # what the node answered before the fix
    assert "wrong request id" in judge_tcp(stream, [_reply(1), masked], "closed")[1][0]
