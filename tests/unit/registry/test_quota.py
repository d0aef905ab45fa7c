"""The quota rules without a store: which limits govern a prefix, and how a write transaction's
changes are admitted or refused against the counts it read (``registry.quota``, ``changeset.plan``)."""

from __future__ import annotations

import datetime as dt

import pytest

from protocol.codes import ResponseCode, http_status
from protocol.errors import DailyQuotaExceeded, IdentifierQuotaExceeded, PrefixQuotaExceeded
from protocol.records import HandleRecord, HandleValue
from protocol.wire.message import (
    CreateHandleRequest,
    ErrorResponse,
    Message,
    OpCode,
    decode_message,
    encode_message,
    response_to,
)
from registry import changeset
from registry.days import CHINA, china_day, seconds_to_midnight
from registry.quota import (
    Ledger,
    Limits,
    QuotaPolicy,
    QuotaSetting,
    identity_prefix,
    needs,
    parse_setting_changes,
)
from registry.store import BatchAborted, Write

# 2026-12-06 23:59:30 in China is 15:59:30 UTC: still the 6th there, the 7th half a minute later.
LATE = dt.datetime(2026, 12, 6, 23, 59, 30, tzinfo=CHINA).timestamp()


def rec(handle: str) -> HandleRecord:
    return HandleRecord(handle, (HandleValue(1, "URL", b"https://q.example/"),))


def create(handle: str) -> Write:
    return Write(handle.upper(), lambda old: rec(handle))


def delete(key: str) -> Write:
    return Write(key, lambda old: None)


def policy(**defaults: int) -> QuotaPolicy:
    return QuotaPolicy("88.118", Limits(**defaults), clock=lambda: LATE)


def test_days_are_china_days() -> None:
    assert china_day(LATE) == "2026-12-06"
    assert china_day(LATE + 30) == "2026-12-07"
    assert seconds_to_midnight(LATE) == 30
    assert seconds_to_midnight(LATE + 30) == 86400  # midnight itself: a whole day to the next


def test_the_codes_and_statuses_of_refusals() -> None:
    assert [int(c) for c in (ResponseCode.REQUEST_LIMIT_DAILY, ResponseCode.REGISTER_COUNT_LIMIT)] == [603, 604]
    assert int(ResponseCode.PREFIX_LIMIT) == 605
    assert http_status(ResponseCode.REQUEST_LIMIT_DAILY) == 429
    assert http_status(ResponseCode.REGISTER_COUNT_LIMIT) == http_status(ResponseCode.PREFIX_LIMIT) == 403


def test_limits_are_the_prefixs_own_where_set_else_the_defaults_never_the_node_prefixs() -> None:
    p = policy(identifiers=100, registrations_per_day=10)
    assert p.limits("88.118.8", None) == Limits(identifiers=100, registrations_per_day=10)
    own = QuotaSetting(identifiers=5, registrations_per_day=0, prefixes=2)
    assert p.limits("88.118.8", own) == Limits(identifiers=5, registrations_per_day=0, prefixes=2)
    assert p.limits("88.118.8.1", None).identifiers == 100  # a sub-prefix has the defaults of its own
    assert p.limits("88.118", own) == Limits()  # the node's own prefix
    assert p.limits("88.1180", own) == Limits()  # not under the node prefix
    assert p.ancestors("88.118.8.1.2") == ["88.118.8.1", "88.118.8"]
    assert identity_prefix("0.NA/88.118.8") == identity_prefix("88.118.8/ADMIN") == "88.118.8"


def test_setting_changes_are_checked() -> None:
    assert parse_setting_changes({"identifiers": 7, "resolutionsPerDay": None}) == {
        "identifiers": 7,
        "resolutions_per_day": None,
    }
    bad: list[object] = [{}, [], {"identifier": 1}, {"prefixes": -1}, {"prefixes": True}, {"prefixes": 1.5}]
    for body in [*bad, {"prefixes": "2"}]:
        with pytest.raises(ValueError):
            parse_setting_changes(body)
    assert QuotaSetting().changed({"prefixes": 3}).as_json()["prefixes"] == 3


def ledger_for(p: QuotaPolicy, keys: list[str], stored: dict[str, HandleRecord], **counts: dict[str, int]) -> Ledger:
    watch = p.watch(keys, stored)
    limits = {prefix: p.limits(prefix, None) for prefix in watch.every}
    wanted = needs(watch, limits)
    ledger = Ledger.of(p, limits)
    ledger.held = {k: counts.get("held", {}).get(k, 0) for k in wanted.held}
    ledger.today = {k: counts.get("today", {}).get(k, 0) for k in wanted.today}
    ledger.derived = {k: counts.get("derived", {}).get(k, 0) for k in wanted.derived}
    return ledger


def test_creations_past_the_identifier_quota_fail_alone_and_count_nothing() -> None:
    p = policy(identifiers=3)
    writes = [create(f"88.118.8/n{i}") for i in range(4)] + [create("88.118.9/other"), create("88.118/own")]
    ledger = ledger_for(p, [w.key for w in writes], {}, held={"88.118.8": 1})
    changes = changeset.plan({}, writes, atomic=False, ledger=ledger)
    first, second = changes.outcomes[2:4]
    assert isinstance(first, IdentifierQuotaExceeded) and isinstance(second, IdentifierQuotaExceeded)
    assert first.code == ResponseCode.REGISTER_COUNT_LIMIT and "holds 3 identifiers" in first.message
    assert [k for k, _, _ in changes.inserts] == ["88.118.8/N0", "88.118.8/N1", "88.118.9/OTHER", "88.118/OWN"]
    assert changes.counts["88.118.8"] == 2 and changes.created["88.118.8"] == 2
    assert changes.refusals == {("88.118.8", "identifiers"): 2}
    assert changes.day == "2026-12-06"


def test_an_atomic_batch_past_a_quota_writes_nothing() -> None:
    p = policy(identifiers=2)
    writes = [create(f"88.118.8/a{i}") for i in range(3)]
    changes = changeset.plan({}, writes, atomic=True, ledger=ledger_for(p, [w.key for w in writes], {}))
    assert isinstance(changes.outcomes[2], IdentifierQuotaExceeded)
    assert all(isinstance(o, BatchAborted) for o in changes.outcomes[:2])
    assert not changes.inserts and not changes.counts and not changes.created
    assert changes.refusals == {("88.118.8", "identifiers"): 1}


def test_a_deletion_in_the_same_transaction_makes_room() -> None:
    p = policy(identifiers=1)
    stored = {"88.118.8/OLD": rec("88.118.8/old")}
    writes = [create("88.118.8/new1"), delete("88.118.8/OLD"), create("88.118.8/new2")]
    ledger = ledger_for(p, [w.key for w in writes], stored, held={"88.118.8": 1})
    outcomes = changeset.plan(stored, writes, atomic=False, ledger=ledger).outcomes
    assert isinstance(outcomes[0], IdentifierQuotaExceeded) and outcomes[1] is None
    assert isinstance(outcomes[2], HandleRecord)


def test_the_daily_registration_quota_says_when_to_come_back() -> None:
    p = policy(registrations_per_day=2)
    writes = [create(f"88.118.8/d{i}") for i in range(2)]
    ledger = ledger_for(p, [w.key for w in writes], {}, today={"88.118.8": 1})
    first, second = changeset.plan({}, writes, atomic=False, ledger=ledger).outcomes
    assert isinstance(first, HandleRecord) and isinstance(second, DailyQuotaExceeded)
    assert second.code == ResponseCode.REQUEST_LIMIT_DAILY and second.retry_after == 30
    assert second.kind == "registrations" and "2026-12-06" in second.message


def test_replacing_an_existing_record_is_not_a_registration() -> None:
    p = policy(identifiers=1, registrations_per_day=1)
    stored = {"88.118.8/X": rec("88.118.8/x")}
    writes = [Write("88.118.8/X", lambda old: rec("88.118.8/x"))]
    assert p.watch([w.key for w in writes], stored).every == []  # nothing to read: no quota can be reached
    changes = changeset.plan(stored, writes, atomic=False, ledger=ledger_for(p, ["88.118.8/X"], stored))
    assert isinstance(changes.outcomes[0], HandleRecord) and changes.refusals == {}


def test_derived_prefixes_count_against_every_prefix_above() -> None:
    p = policy(prefixes=1)
    writes = [create("0.NA/88.118.8.1"), create("0.NA/88.118.8.2"), create("0.NA/88.118.9")]
    ledger = ledger_for(p, [w.key for w in writes], {})
    assert sorted(ledger.derived) == ["88.118.8"]  # 88.118.9 is derived from the node prefix alone
    outcomes = changeset.plan({}, writes, atomic=False, ledger=ledger).outcomes
    assert isinstance(outcomes[0], HandleRecord) and isinstance(outcomes[2], HandleRecord)
    refused = outcomes[1]
    assert isinstance(refused, PrefixQuotaExceeded) and refused.code == ResponseCode.PREFIX_LIMIT
    assert refused.prefix == "88.118.8" and refused.handle == "0.NA/88.118.8.2"
    deeper = [create("0.NA/88.118.8.1.5")]
    nested = ledger_for(p, [w.key for w in deeper], {}, derived={"88.118.8": 1})
    (outcome,) = changeset.plan({}, deeper, atomic=False, ledger=nested).outcomes
    assert isinstance(outcome, PrefixQuotaExceeded) and outcome.prefix == "88.118.8"  # its grandparent is full


@pytest.mark.parametrize("code", [ResponseCode.REQUEST_LIMIT_DAILY, ResponseCode.REGISTER_COUNT_LIMIT, 605])
def test_a_refusal_on_the_wire_is_an_error_answer_our_clients_read(code: int) -> None:
    """As Teleinfo's SDK decodes 603-605 (Encoder.decodeMessage: an error message body), so does
    the node's own decoder, which the delegation client and the tests use."""
    request = Message(OpCode.CREATE_HANDLE, CreateHandleRequest("88.118.8/x", (HandleValue(1, "URL", b"u"),)))
    sent = decode_message(encode_message(request))
    answer = decode_message(encode_message(response_to(sent, ErrorResponse("full"), code, expiration=0)))
    assert answer.response_code == code and answer.body == ErrorResponse("full")
