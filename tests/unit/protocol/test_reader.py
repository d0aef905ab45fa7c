"""The one bounded reader (protocol.wire.base.Reader) and the formats that read with it: no
read goes past the end it was given, and going past it raises the caller's exception with
the caller's words (WireError for messages, InvalidValue for value data and keys,
ProtocolViolation for a challenge's answer), never IndexError or struct.error."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import valuedata as vd
from protocol.errors import InvalidValue, ProtocolViolation
from protocol.wire.auth import split_signed_response
from protocol.wire.base import Reader, WholeErrors, WireError, pack_blob
from protocol.wire.keys import number, pack, reader
from protocol.wire.sign import credential, read_credential

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

READS: dict[str, Callable[[Reader], object]] = {
    "take": lambda r: r.take(3, "three bytes"),
    "u8": lambda r: r.u8("a byte"),
    "u16": lambda r: r.u16("a short"),
    "i32": lambda r: r.i32("an int"),
    "u32": lambda r: r.u32("an unsigned int"),
    "u64": lambda r: r.u64("a long"),
    "blob": lambda r: r.blob("a blob"),
    "text": lambda r: r.text("a text"),
    "handle": lambda r: r.handle(),
    "count": lambda r: r.count("things", 4),
}
DATA = b"\x00\x00\x00\x09abcdefghi" + bytes(35)  # a 9-byte string, or a count of nine 4-byte things
NEEDS = {"take": 3, "u8": 1, "u16": 2, "i32": 4, "u32": 4, "u64": 8, "blob": 13, "text": 13, "handle": 13, "count": 40}


def value_reader(data: bytes, end: int | None = None) -> Reader:
    # As valuedata reads: every fault an InvalidValue naming the value's type.
    truncated = WholeErrors(
        truncated=lambda r: InvalidValue("HS_SITE data is truncated"),
        not_utf8=lambda r: InvalidValue("HS_SITE data holds a string that is not UTF-8"),
        trailing=lambda r: InvalidValue(f"HS_SITE data has {r.end - r.pos} trailing bytes"),
    )
    return Reader(data, 0, end, errors=truncated)


def key_reader(data: bytes, end: int | None = None) -> Reader:
    r = reader(data, "the key")  # as keys, credentials and challenge answers are read
    r.end = len(data) if end is None else end
    return r


# (make a reader over data, bounded at end; what it must raise)
KINDS: dict[str, tuple[Callable[[bytes, int | None], Reader], type[Exception]]] = {
    "wire": (lambda data, end: Reader(data, 0, end), WireError),
    "value data": (value_reader, InvalidValue),
    "key": (key_reader, InvalidValue),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("read", READS)
def test_reading_past_the_end_raises_the_caller_s_error(kind: str, read: str) -> None:
    make, error = KINDS[kind]
    for end in range(NEEDS[read]):  # the bytes go on past ``end``: a slice of a message is bounded too
        r = make(DATA, end)
        with pytest.raises(error) as caught:
            READS[read](r)
        assert type(caught.value) is error and r.pos <= end
    r = make(DATA, NEEDS[read])
    READS[read](r)
    assert r.pos <= NEEDS[read]


@pytest.mark.parametrize("kind", KINDS)
def test_bytes_left_over_raise_the_caller_s_error_when_the_format_must_end(kind: str) -> None:
    make, error = KINDS[kind]
    make(DATA, 4).u32("all of it")  # nothing left: done
    r = make(DATA, 5)
    r.u32("not all of it")
    with pytest.raises(error) as caught:
        r.done()
    assert type(caught.value) is error


@FAST
@given(st.binary(max_size=64), st.integers(0, 64), st.lists(st.sampled_from([*READS, "done"]), max_size=12))
def test_any_reads_of_any_bytes_give_values_or_the_caller_s_error(data: bytes, end: int, reads: list[str]) -> None:
    for kind, (make, error) in KINDS.items():
        r = make(data, min(end, len(data)))
        try:
            for read in reads:
                r.done() if read == "done" else READS[read](r)
                assert r.pos <= r.end, kind
        except error as exc:
            assert type(exc) is error, kind
            assert r.pos <= r.end, kind


def refusal(error: type[Exception], read: Callable[[], object]) -> str:
    """What ``read`` raised, which must be ``error`` itself (not a subclass, not a parent)."""
    with pytest.raises(error) as caught:
        read()
    assert type(caught.value) is error
    return str(caught.value)


def test_the_wire_names_the_field_and_the_bytes_left() -> None:
    short = b"\x00\x00\x00\x08abc"
    assert refusal(WireError, lambda: Reader(short).blob("value data")) == "value data needs 8 bytes but 3 remain"
    assert refusal(WireError, lambda: Reader(short).text("a text", 4)) == "a text is 8 bytes, more than the 4 allowed"
    assert refusal(WireError, lambda: Reader(pack_blob(b"\xff")).handle()) == "handle is not UTF-8"
    too_many = refusal(WireError, lambda: Reader(short).count("values", 1))
    assert too_many == "8 values cannot fit in the 3 bytes that remain"


def test_value_data_names_its_type_whatever_field_is_short() -> None:
    admin = vd.encode_admin(vd.AdminRef("0.NA/88.118", 200, 0xFFF))
    for cut in range(len(admin)):
        with pytest.raises(InvalidValue) as caught:
            vd.decode_admin(admin[:cut])
        assert type(caught.value) is InvalidValue and str(caught.value) == "HS_ADMIN data is truncated"
    assert refusal(InvalidValue, lambda: vd.decode_admin(admin + b"\0\0")) == "HS_ADMIN data has 2 trailing bytes"
    not_utf8 = b"\x00\x00\x00\x01" + pack_blob(b"\xff") + b"\x00\x00\x00\x01"
    assert refusal(InvalidValue, lambda: vd.decode_vlist(not_utf8)) == "HS_VLIST data holds a string that is not UTF-8"


def test_a_key_encoding_names_itself_and_the_byte_where_it_broke_off() -> None:
    cred = credential(b"HS_SIGNED", 7, pack(b"SHA-256", b"signature"))
    assert read_credential(cred) == (7, b"HS_SIGNED", (b"SHA-256", b"signature"))
    assert refusal(InvalidValue, lambda: read_credential(cred[:13])) == "the credential is truncated at byte 12"
    bad_section = credential(b"HS_SIGNED", 7, b"\x00\x00\x00\x09SHA")
    assert refusal(InvalidValue, lambda: read_credential(bad_section)) == (
        "the credential's section is truncated at byte 4"
    )
    assert refusal(InvalidValue, lambda: reader(b"\0", "the key").done()) == "the key has 1 bytes after its end"
    big = reader(pack(bytes(2050)), "the key")
    assert refusal(InvalidValue, lambda: number(big, "the key")) == "the key holds a number over 16384 bits"


def test_a_challenge_answer_cut_short_is_a_protocol_violation() -> None:
    answer = pack(b"SHA-256", b"signature")
    assert refusal(ProtocolViolation, lambda: split_signed_response(answer[:-1])) == (
        "the public-key answer is truncated at byte 15"
    )
    assert refusal(ProtocolViolation, lambda: split_signed_response(answer + b"\0")) == (
        "the public-key answer has 1 bytes after its end"
    )
