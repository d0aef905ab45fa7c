"""Handle parsing and normalisation (RFC 3651 §2): what is accepted, how it is keyed, what is refused."""

from __future__ import annotations

import dataclasses

import pytest

from protocol.codes import ResponseCode, http_status
from protocol.errors import InvalidHandle
from protocol.identifiers import (
    MAX_HANDLE_BYTES,
    MAX_PREFIX_CHARS,
    MAX_REGISTERED_CHARS,
    ascii_upper,
    check_registrable,
    is_at_or_under,
    parse_handle,
    parse_prefix,
    prefix_handle,
)

# Parsing and normalisation ------------------------------------------------------------


def test_parses_prefix_and_suffix() -> None:
    h = parse_handle("88.118.8/JXDY2106023")
    assert (h.prefix, h.suffix, h.key) == ("88.118.8", "JXDY2106023", "88.118.8/JXDY2106023")
    assert h.text == str(h) == "88.118.8/JXDY2106023"
    assert not h.is_prefix_handle


def test_suffix_may_hold_dots_colons_and_slashes() -> None:
    h = parse_handle("88.709.911/lot:7/part.3")
    assert h.prefix == "88.709.911"
    assert h.suffix == "lot:7/part.3"


def test_prefix_is_ascii_upper_cased() -> None:
    h = parse_handle("88.abc.x9/Item")
    assert h.prefix == "88.ABC.X9"
    assert h.text == "88.ABC.X9/Item"


def test_suffix_kept_as_written_but_keyed_case_insensitively_by_default() -> None:
    h = parse_handle("88.1/AbC-def")
    assert h.suffix == "AbC-def"
    assert h.key == "88.1/ABC-DEF"
    assert parse_handle("88.1/abc-DEF").key == h.key


def test_case_sensitive_mode_keys_the_suffix_as_written() -> None:
    lower = parse_handle("88.1/abc", case_sensitive=True)
    upper = parse_handle("88.1/ABC", case_sensitive=True)
    assert lower.key == "88.1/abc"
    assert upper.key == "88.1/ABC"
    assert lower.key != upper.key


def test_prefix_stays_case_insensitive_in_case_sensitive_mode() -> None:
    assert parse_handle("88.ab/x", case_sensitive=True).key == parse_handle("88.AB/x", case_sensitive=True).key


@pytest.mark.parametrize(
    ("suffix", "key_suffix"),
    [
        ("straße", "STRAßE"),  # str.upper() would give "STRASSE"
        ("ﬀ", "ﬀ"),  # str.upper() would give "FF"
        ("ı", "ı"),  # dotless i: str.upper() would give "I"
        ("café", "CAFé"),
        ("标识abc", "标识ABC"),
    ],
)
def test_non_ascii_letters_are_not_case_folded(suffix: str, key_suffix: str) -> None:
    assert parse_handle(f"88.1/{suffix}").key == f"88.1/{key_suffix}"


def test_dotless_i_is_not_the_same_handle_as_ascii_i() -> None:
    assert parse_handle("88.1/ı").key != parse_handle("88.1/i").key


def test_ascii_upper_touches_only_a_to_z() -> None:
    assert ascii_upper("abz-AZ_09") == "ABZ-AZ_09"
    assert ascii_upper("aßéı") == "Aßéı"


def test_handle_is_immutable() -> None:
    h = parse_handle("88.1/x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        h.suffix = "y"  # type: ignore[misc]


# Prefix handles and zones -------------------------------------------------------------


def test_prefix_handle_normalises_its_suffix_as_a_prefix() -> None:
    h = parse_handle("0.na/88.abc.8")
    assert h.is_prefix_handle
    assert (h.prefix, h.suffix, h.key) == ("0.NA", "88.ABC.8", "0.NA/88.ABC.8")


def test_prefix_handle_suffix_is_upper_cased_even_in_case_sensitive_mode() -> None:
    assert parse_handle("0.NA/88.abc", case_sensitive=True).key == "0.NA/88.ABC"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("0.NA/88..1", "empty segment"),
        ("0.NA/88.1/x", "contains '/'"),
        ("0.NA/88 .1", "white-space"),
        ("0.NA/" + "1" * (MAX_PREFIX_CHARS + 1), "longer than 64"),
    ],
)
def test_prefix_handle_with_an_invalid_prefix_is_refused(text: str, match: str) -> None:
    with pytest.raises(InvalidHandle, match=match):
        parse_handle(text)


def test_prefix_handle_builder_matches_parsing() -> None:
    assert prefix_handle("88.abc") == parse_handle("0.NA/88.ABC")


def test_zone_of_an_ordinary_handle_is_its_prefix() -> None:
    assert parse_handle("88.118.8/x").zone == "88.118.8"
    assert parse_handle("88.abc/x").zone == "88.ABC"


def test_zone_of_a_prefix_handle_is_the_prefix_it_names() -> None:
    assert parse_handle("0.NA/88.118.8").zone == "88.118.8"
    assert parse_handle("0.na/88.ab").zone == "88.AB"


@pytest.mark.parametrize(
    ("prefix", "ancestor", "expected"),
    [
        ("88.118", "88.118", True),
        ("88.118.8", "88.118", True),
        ("88.118.8.1", "88.118", True),
        ("88.1180", "88.118", False),  # a sibling sharing leading digits
        ("88.11", "88.118", False),
        ("88", "88.118", False),
        ("89.118.8", "88.118", False),
    ],
)
def test_is_at_or_under(prefix: str, ancestor: str, expected: bool) -> None:
    assert is_at_or_under(prefix, ancestor) is expected


# Limits -------------------------------------------------------------------------------


def test_handle_of_exactly_2048_bytes_is_accepted() -> None:
    text = "88.1/" + "a" * (MAX_HANDLE_BYTES - 5)
    assert len(text.encode()) == MAX_HANDLE_BYTES
    assert parse_handle(text).suffix == "a" * (MAX_HANDLE_BYTES - 5)


def test_handle_over_2048_bytes_is_refused() -> None:
    with pytest.raises(InvalidHandle, match="longer than 2048 bytes"):
        parse_handle("88.1/" + "a" * (MAX_HANDLE_BYTES - 4))


def test_byte_limit_counts_utf8_bytes_not_characters() -> None:
    text = "88.1/" + "é" * 1022  # 1027 characters, 2049 bytes
    with pytest.raises(InvalidHandle, match="2048 bytes"):
        parse_handle(text)


def test_prefix_of_64_characters_is_accepted_and_65_refused() -> None:
    assert parse_prefix("1" * MAX_PREFIX_CHARS) == "1" * MAX_PREFIX_CHARS
    with pytest.raises(InvalidHandle, match="prefix is longer than 64"):
        parse_handle("1" * (MAX_PREFIX_CHARS + 1) + "/x")


def test_registrable_limit_is_255_characters() -> None:
    ok = parse_handle("88.1/" + "x" * (MAX_REGISTERED_CHARS - 5))
    check_registrable(ok)  # must not raise
    too_long = parse_handle("88.1/" + "x" * (MAX_REGISTERED_CHARS - 4))
    with pytest.raises(InvalidHandle, match="longer than 255 characters") as info:
        check_registrable(too_long)
    assert info.value.handle == too_long.text


def test_registrable_limit_counts_characters_not_bytes() -> None:
    check_registrable(parse_handle("88.1/" + "标" * (MAX_REGISTERED_CHARS - 5)))  # 755 bytes, 255 characters


# Refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "no '/'"),
        ("88.118.8", "no '/'"),
        ("/abc", "prefix is empty"),
        ("88.1/", "empty suffix"),
        ("88..1/x", "empty segment"),
        (".88/x", "empty segment"),
        ("88./x", "empty segment"),
        ("88 .1/x", "white-space"),
        ("88.1\u3000/x", "white-space"),
        ("88.1/a\x00b", "control characters"),
        ("88.1/a\nb", "control characters"),
        ("88.1/\x1f", "control characters"),
        ("88.1/a\x7fb", "control characters"),  # DEL
        ("88.1/a\x80b", "control characters"),  # C1
        ("88.1/a\x9fb", "control characters"),  # C1
        ("88\t.1/x", "control characters"),
        ("88.1/\ud800", "not valid UTF-8"),  # lone surrogate
    ],
)
def test_invalid_handles_are_refused_with_a_reason(text: str, match: str) -> None:
    with pytest.raises(InvalidHandle, match=match) as info:
        parse_handle(text)
    assert info.value.message
    assert info.value.code == ResponseCode.INVALID_HANDLE


def test_characters_just_outside_the_control_ranges_are_accepted() -> None:
    assert parse_handle("88.1/a\x20b\x7e\xa0c").suffix == "a b~\xa0c"


def test_invalid_handle_maps_to_code_102_and_http_400() -> None:
    assert int(InvalidHandle.code) == 102
    assert http_status(InvalidHandle.code) == 400
