"""The Handle front-end's pure parts: the byte-level fast path, server signatures, UDP rates."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.records import HandleRecord, HandleValue
from protocol.wire.keys import generate_dsa_key
from protocol.wire.message import Envelope, Message, OpCode, OpFlag, ResolutionRequest, decode_message, encode_message
from protocol.wire.sign import bound_prefix, signed_credential, verify_signed_credential
from registry.sqlite.store import SqliteStore
from resolver.cache.local import ZDICT_SAMPLES
from resolver.engine import ResolutionEngine
from resolver.handle.frontend import HandleFrontend
from resolver.handle.transport import SourceRates


def request(handle: str, rid: int = 5, **kw: object) -> bytes:
    env = Envelope(request_id=rid, session_id=3, version=(2, 5), suggest=(2, 5))
    return encode_message(Message(OpCode.RESOLUTION, ResolutionRequest(handle, **kw), envelope=env))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def frontend(tmp_path_factory: pytest.TempPathFactory) -> HandleFrontend:
    async def build() -> HandleFrontend:
        store = SqliteStore(Path(tmp_path_factory.mktemp("fe")) / "s.sqlite3")
        await store.open()
        await store.create("88.118/A", HandleRecord("88.118/A", (HandleValue(1, "URL", b"https://a.example/"),)))
        engine = ResolutionEngine(store, node_prefix="88.118")
        front = HandleFrontend(engine, case_sensitive=False)
        answer = await front.respond(request("88.118/a"), "127.0.0.1", "udp")  # fills the cache and the memo
        assert decode_message(answer).response_code == 1
        return front

    return asyncio.run(build())


def test_a_memoised_answer_carries_the_new_request_s_ids(frontend: HandleFrontend) -> None:
    answer = frontend.cached(request("88.118/a", rid=777))
    assert answer is not None
    message = decode_message(answer)
    assert (message.request_id, message.envelope.session_id, message.response_code) == (777, 3, 1)
    assert frontend.cached(request("88.118/other")) is None  # never asked: the long way
    assert frontend.cached(request("88.118/a", types=("URL",))) is None  # filtered: the long way
    certified = decode_message(request("88.118/a"))
    assert frontend.cached(encode_message(Message(OpCode.RESOLUTION, certified.body, envelope=certified.envelope,
                                                  flags=certified.flags | OpFlag.CERTIFY))) is None  # fmt: skip


def test_only_bytes_that_are_exactly_one_message_are_answered(frontend: HandleFrontend) -> None:
    # The TCP listener hands ``cached`` each read before framing it: a part of a request, or
    # a request and the start of the next, must go the long way (through the framer).
    whole = request("88.118/a")
    assert frontend.cached(whole) is not None
    for read in (whole[:-1], whole + whole, whole + whole[:20], whole + b"\0"):
        assert frontend.cached(read) is None


def test_an_answer_packed_into_the_cold_tier_is_sent_from_it_as_it_was(tmp_path: Path) -> None:
    handles = [f"88.118/P{n}" for n in range(ZDICT_SAMPLES)]

    async def run() -> None:
        store = SqliteStore(tmp_path / "s.sqlite3")
        await store.open()
        for h in handles:
            await store.create(h, HandleRecord(h, (HandleValue(1, "URL", f"https://{h}.example/".encode()),)))
        engine = ResolutionEngine(store, node_prefix="88.118")
        front = HandleFrontend(engine, case_sensitive=False)
        first = {h: await front.respond(request(h), "127.0.0.1", "udp") for h in handles}
        local = engine._tiers.local
        for _ in range(2):  # one pass clears the "used" marks, the next packs what stayed unused
            while local.sweep(10_000) or local._pass:
                pass
        assert not local.entries and len(local.cold) == len(handles)

        for h in handles:
            answer = front.cached(request(h, rid=9))
            assert answer is not None and answer[12:] == first[h][12:]  # the same bytes, with its own ids
            assert decode_message(answer).request_id == 9
        assert not local.entries  # each asked once: sent from the cold form, left there
        assert front.cached(request(handles[7], rid=10)) is not None  # asked again: made hot
        thawed = local.entries[handles[7]]
        assert thawed._deflated is not None and thawed._record is None  # neither inflated nor decoded
        await store.close()

    asyncio.run(run())


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 120), st.binary(min_size=1, max_size=8))
def test_any_bytes_give_an_answer_or_none_never_an_error(
    frontend: HandleFrontend, noise: bytes, at: int, patch: bytes
) -> None:
    assert frontend.cached(noise) is None or isinstance(frontend.cached(noise), bytes)
    good = bytearray(request("88.118/a"))
    good[at : at + len(patch)] = patch  # a real request with some bytes changed
    answer = frontend.cached(bytes(good))
    if answer is not None:  # only ever the memoised answer, for a request that still asks the same
        assert decode_message(answer).response_code == 1


@pytest.mark.parametrize("version", [(2, 1), (2, 5), (2, 6), (2, 7), (2, 10), (2, 11)])
@pytest.mark.parametrize("kind", ["rsa", "dsa"])
def test_server_signatures_verify_and_bind_the_message(version: tuple[int, int], kind: str) -> None:
    key = rsa.generate_private_key(65537, 2048) if kind == "rsa" else generate_dsa_key(2048)
    body = b"\x00\x00\x00\x01header and body"
    prefix = bound_prefix(version, (2, 11), 9, 1234)
    credential = signed_credential(key, body, prefix, version)
    public = key.public_key()
    assert verify_signed_credential(public, credential, body, prefix)
    assert not verify_signed_credential(public, credential, body + b"x", prefix)
    if version >= (2, 7):  # from 2.7 the request id is bound
        assert not verify_signed_credential(public, credential, body, bound_prefix(version, (2, 11), 9, 1235))
    assert not verify_signed_credential(public, credential[:-3], body, prefix)


def test_source_rates_allow_a_burst_then_the_rate_and_exempt_networks() -> None:
    rates = SourceRates(10, ("10.0.0.0/8",), sources=4)
    assert sum(rates.allow("192.0.2.1", 0.0) for _ in range(50)) == 20  # two seconds' worth at once
    assert rates.allow("192.0.2.1", 0.05) is False
    assert rates.allow("192.0.2.1", 0.2) is True  # refilled at 10 a second
    assert all(rates.allow("10.1.2.3", 0.0) for _ in range(100))
    for n in range(10):  # more sources than tracked: the oldest are forgotten, the table stays small
        rates.allow(f"198.51.100.{n}", 1.0)
    assert len(rates._buckets) <= 4
