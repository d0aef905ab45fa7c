"""China's SDKs' logins, driven in-process over a real SQLite store (``resolver.handle.login``).

Each ``Link`` stands for one TCP connection, as the transport's connection object does; None
is UDP. Requests are encoded as the SDKs send them (``tests.support.handleauth``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from protocol.codes import ResponseCode
from protocol.records import HandleValue
from protocol.wire.auth import hashed_secret_key
from protocol.wire.message import (
    AddValueRequest,
    CreateHandleRequest,
    DeleteHandleRequest,
    ErrorResponse,
    LoginRequest,
    Message,
    ModifyValueRequest,
    OpCode,
    RemoveValueRequest,
    ResolutionResponse,
)
from resolver.handle.admin import HandleAdmin
from resolver.handle.login import Link, LoginPolicy
from tests.support.handle_admin_node import (
    ADMIN,
    NODE,
    OTHER_KEY,
    PEER,
    SECKEY_ADMIN,
    SECRET,
    AdminNode,
    seeded_admin,
    send,
)
from tests.support.handleauth import Who, encoded, login_answer, login_request, private_key

ENTERPRISE_ADMIN = Who("88.118.8.2/ADMIN", 300, OTHER_KEY)  # admin of 88.118.8.2 only


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[AdminNode]:
    async with seeded_admin(tmp_path, LoginPolicy(password_login=True)) as seeded:
        yield seeded


async def log_in(admin: HandleAdmin, who: Who, link: Link | None, *, own_session: bool = False) -> Message:
    """LOGIN_ID_SYSTEM on ``link``, its challenge answered as the SDKs answer it."""
    challenge = await send(admin, login_request(who), link=link)
    if challenge.response_code != ResponseCode.AUTHENTICATION_NEEDED:
        return challenge
    assert challenge.op_code == OpCode.LOGIN_ID_SYSTEM  # the ID-SDK answers only a challenge to its login
    return await send(admin, login_answer(who, challenge, own_session=own_session), link=link)


def create(handle: str) -> bytes:
    return encoded(OpCode.CREATE_HANDLE, CreateHandleRequest(handle, (HandleValue(1, "URL", b"https://l.example/"),)))


async def audited(node: AdminNode, handle: str) -> list[tuple[str, str, str, int]]:
    entries = await node.store.audit_entries(None, 0, 1000)
    return [(e.identity, e.address, e.operation, e.result) for e in entries if e.handle == handle]


KEYS = [SECKEY_ADMIN, Who(ADMIN, 301, private_key("dsa")), Who(ADMIN, 302, private_key("rsa"))]


@pytest.mark.parametrize("who", KEYS, ids=["seckey", "dsa", "rsa"])
async def test_a_login_authorises_the_connection_s_admin_requests_without_challenges(node: AdminNode, who: Who) -> None:
    link = Link()
    done = await log_in(node.admin, who, link)
    assert (done.op_code, done.response_code) == (OpCode.LOGIN_ID_SYSTEM, ResponseCode.SUCCESS)
    handle = f"{NODE}/LOGIN-{who.index}"
    steps = [
        create(handle),
        encoded(OpCode.ADD_VALUE, AddValueRequest(handle, (HandleValue(2, "EMAIL", b"a@l.example"),))),
        encoded(OpCode.MODIFY_VALUE, ModifyValueRequest(handle, (HandleValue(2, "EMAIL", b"b@l.example"),))),
        encoded(OpCode.REMOVE_VALUE, RemoveValueRequest(handle, (2,))),
    ]
    for raw in steps:
        assert (await send(node.admin, raw, link=link)).response_code == ResponseCode.SUCCESS
    record = await node.store.get(handle)
    assert record is not None and [v.index for v in record.values] == [1]
    deleted = await send(node.admin, encoded(OpCode.DELETE_HANDLE, DeleteHandleRequest(handle)), link=link)
    assert deleted.response_code == ResponseCode.SUCCESS and await node.store.get(handle) is None
    me = f"{who.index}:{ADMIN}"
    assert [op for _, _, op, _ in await audited(node, handle)] == [
        f"login_{op}" for op in ("create", "update", "update", "remove_values", "delete")
    ]
    assert {(i, a) for i, a, _, _ in await audited(node, handle)} == {(me, PEER)}


async def test_an_answer_under_the_client_s_own_session_id_is_matched_to_its_connection(node: AdminNode) -> None:
    link = Link()
    assert (await log_in(node.admin, SECKEY_ADMIN, link, own_session=True)).response_code == ResponseCode.SUCCESS
    assert (await send(node.admin, create(f"{NODE}/IDSDK"), link=link)).response_code == ResponseCode.SUCCESS
    # The same answer on another connection matches no challenge of its own.
    other = Link()
    challenge = await send(node.admin, login_request(SECKEY_ADMIN), link=link)
    stray = await send(node.admin, login_answer(SECKEY_ADMIN, challenge, own_session=True), link=other)
    assert stray.response_code == ResponseCode.AUTHEN_TIMEOUT and other.identity is None


async def test_a_login_reaches_no_other_connection_worker_or_udp(node: AdminNode) -> None:
    link = Link()
    assert (await log_in(node.admin, SECKEY_ADMIN, link)).response_code == ResponseCode.SUCCESS
    for admin, other in ((node.admin, Link()), (node.worker(), Link()), (node.admin, None)):
        challenged = await send(admin, create(f"{NODE}/ELSEWHERE"), link=other)
        assert challenged.response_code == ResponseCode.AUTHENTICATION_NEEDED
    assert await node.store.get(f"{NODE}/ELSEWHERE") is None
    over_udp = await send(node.admin, login_request(SECKEY_ADMIN), link=None, transport="udp")
    assert over_udp.response_code == ResponseCode.OPERATION_NOT_SUPPORTED


async def test_a_login_answered_on_another_connection_binds_nothing(node: AdminNode) -> None:
    sent_on, answered_on = Link(), Link()
    challenge = await send(node.admin, login_request(SECKEY_ADMIN), link=sent_on)
    refused = await send(node.admin, login_answer(SECKEY_ADMIN, challenge), link=answered_on)
    assert refused.response_code == ResponseCode.AUTHENTICATION_FAILED
    assert sent_on.identity is None and answered_on.identity is None


async def test_a_logged_in_identity_keeps_its_permissions(node: AdminNode) -> None:
    link = Link()
    assert (await log_in(node.admin, ENTERPRISE_ADMIN, link)).response_code == ResponseCode.SUCCESS
    assert (await send(node.admin, create("88.118.8.2/MINE"), link=link)).response_code == ResponseCode.SUCCESS
    refused = await send(node.admin, create("88.118.8.1/NOT-MINE"), link=link)
    assert refused.response_code == ResponseCode.INSUFFICIENT_PERMISSIONS
    assert await node.store.get("88.118.8.1/NOT-MINE") is None
    assert ("300:88.118.8.2/ADMIN", PEER, "login_put", 401) in await audited(node, "88.118.8.1/NOT-MINE")


async def test_the_answer_must_come_from_the_identity_the_login_names(node: AdminNode) -> None:
    link = Link()
    challenge = await send(node.admin, login_request(SECKEY_ADMIN), link=link)
    other = await send(node.admin, login_answer(ENTERPRISE_ADMIN, challenge), link=link)
    assert other.response_code == ResponseCode.AUTHENTICATION_FAILED and link.identity is None
    absent = await send(node.admin, login_request(Who("99.9/NOBODY", 300, OTHER_KEY)), link=link)
    assert absent.response_code == ResponseCode.AUTHENTICATION_FAILED  # not held here: no challenge


async def test_a_second_login_replaces_the_first_and_a_failed_one_logs_out(node: AdminNode) -> None:
    link = Link()
    assert (await log_in(node.admin, SECKEY_ADMIN, link)).response_code == ResponseCode.SUCCESS
    assert (await log_in(node.admin, ENTERPRISE_ADMIN, link)).response_code == ResponseCode.SUCCESS
    assert (await send(node.admin, create("88.118.8.2/SECOND"), link=link)).response_code == ResponseCode.SUCCESS
    assert [i for i, *_ in await audited(node, "88.118.8.2/SECOND")] == ["300:88.118.8.2/ADMIN"]
    challenge = await send(node.admin, login_request(SECKEY_ADMIN), link=link)  # pending: still logged in
    assert link.identity is not None and str(link.identity) == "300:88.118.8.2/ADMIN"
    wrong = Who(ADMIN, 300, hashed_secret_key(b"a guess"))
    failed = await send(node.admin, login_answer(wrong, challenge), link=link)
    assert failed.response_code == ResponseCode.AUTHENTICATION_FAILED and link.identity is None
    after = await send(node.admin, create("88.118.8.2/AFTER"), link=link)
    assert after.response_code == ResponseCode.AUTHENTICATION_NEEDED


async def test_failed_logins_meet_the_failure_limit(node: AdminNode) -> None:
    wrong = Who(ADMIN, 300, hashed_secret_key(b"a guess"))
    for _ in range(3):
        assert (await log_in(node.admin, wrong, Link())).response_code == ResponseCode.AUTHENTICATION_FAILED
    refused = await log_in(node.admin, SECKEY_ADMIN, Link())  # the right key, over the limit
    assert refused.response_code == ResponseCode.AUTHENTICATION_FAILED
    assert isinstance(refused.body, ErrorResponse) and "too many failed" in refused.body.message


async def test_the_password_login_checks_the_secret_as_an_http_login(node: AdminNode) -> None:
    def password(secret: bytes, index: int = 300) -> bytes:
        return encoded(OpCode.LOGIN, LoginRequest(ADMIN, (index,), (secret.decode(),)))

    link = Link()
    done = await send(node.admin, password(SECRET), link=link)
    assert (done.op_code, done.response_code) == (OpCode.LOGIN, ResponseCode.SUCCESS)
    assert done.body == ResolutionResponse(ADMIN)  # the handle, and no values: never its secret
    assert (await send(node.admin, create(f"{NODE}/PW"), link=link)).response_code == ResponseCode.SUCCESS
    assert [op for _, _, op, _ in await audited(node, f"{NODE}/PW")] == ["login_create"]
    for bad in (password(b"a guess"), password(SECRET, 301), encoded(OpCode.LOGIN, LoginRequest(ADMIN))):
        assert (await send(node.admin, bad, link=link)).response_code == ResponseCode.AUTHENTICATION_FAILED
        assert link.identity is None
    refused = await send(node.admin, password(SECRET), link=link)  # three failures from PEER: limited
    assert refused.response_code == ResponseCode.AUTHENTICATION_FAILED and link.identity is None
    assert (await send(node.admin, password(SECRET), link=None)).response_code == ResponseCode.OPERATION_NOT_SUPPORTED


async def test_the_password_login_takes_the_user_where_the_id_sdk_puts_it(node: AdminNode) -> None:
    # IDManageServiceChannelImpl.login(username, password, settings): the user name in the
    # handle field and no index, as run against the node (tests/vectors/idsdk-2.0.x).
    link = Link()
    sdk_login = encoded(OpCode.LOGIN, LoginRequest(f"300:{ADMIN}", (), (SECRET.decode(),)))
    done = await send(node.admin, sdk_login, link=link)
    assert (done.op_code, done.response_code) == (OpCode.LOGIN, ResponseCode.SUCCESS)
    assert (await send(node.admin, create(f"{NODE}/PW-SDK"), link=link)).response_code == ResponseCode.SUCCESS
    assert [op for _, _, op, _ in await audited(node, f"{NODE}/PW-SDK")] == ["login_create"]


async def test_logins_switched_off_are_refused_saying_so(node: AdminNode) -> None:
    off = node.worker(LoginPolicy(login=False, password_login=False))
    for raw, setting in (
        (login_request(SECKEY_ADMIN), "handle_login"),
        (encoded(OpCode.LOGIN, LoginRequest(ADMIN, (300,), (SECRET.decode(),))), "handle_password_login"),
    ):
        refused = await send(off, raw, link=Link())
        assert refused.response_code == ResponseCode.OPERATION_NOT_SUPPORTED
        assert isinstance(refused.body, ErrorResponse) and setting in refused.body.message
