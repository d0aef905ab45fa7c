"""China's SDKs' logins over real TCP sockets, against a node of two workers.

As CAICT's ID-SDK and Teleinfo's id-pointer-sdk do it: one connection, LOGIN_ID_SYSTEM (2001)
answered once (with a secret key's MAC, a DSA or an RSA signature), then creations and value
changes with no credentials, each seen through the REST API. The login holds for that
connection only, never for another connection, another worker, UDP or after the idle timeout.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from protocol.codes import ResponseCode
from protocol.records import HandleValue
from protocol.wire.auth import hashed_secret_key
from protocol.wire.message import (
    AddValueRequest,
    CreateHandleRequest,
    DeleteHandleRequest,
    ErrorResponse,
    ListHandlesRequest,
    ListHandlesResponse,
    LoginRequest,
    Message,
    ModifyValueRequest,
    OpCode,
    RemoveValueRequest,
)
from tests.support.handleauth import Who, encoded, key_file, login, login_answer, login_request, private_key
from tests.support.handleclient import Connection, udp
from tests.support.nodeproc import ADMIN, Node, record

IDLE = 3.0  # the node's Handle idle timeout, seconds
PREFIX = "88.118.20"  # the enterprise whose admin logs in
OTHER = "88.118.21"  # an enterprise of someone else
SECRET = "sdk-login-secret-20"
IDENTITY = f"0.NA/{PREFIX}"  # 300 HS_SECKEY, 301 HS_PUBKEY DSA, 302 HS_PUBKEY RSA
KEYS = {
    "seckey": Who(IDENTITY, 300, hashed_secret_key(SECRET.encode())),
    "dsa": Who(IDENTITY, 301, private_key("dsa")),
    "rsa": Who(IDENTITY, 302, private_key("rsa")),
}


def grant(value_index: int, handle: str, index: int) -> dict[str, Any]:
    value = {"handle": handle, "index": index, "permissions": "111111111111"}
    return {"index": value_index, "type": "HS_ADMIN", "data": {"format": "admin", "value": value}}


def public_key(index: int, alg: str) -> dict[str, Any]:
    data = base64.b64encode(key_file(f"admin_{alg}_pub.bin")).decode()
    return {"index": index, "type": "HS_PUBKEY", "data": {"format": "base64", "value": data}}


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """Two workers, a short idle timeout, the password login on, 3 failures a minute allowed."""
    env = {"IDNODE_HANDLE_IDLE_TIMEOUT": str(IDLE), "IDNODE_AUTH_FAILURE_LIMIT": "3"}
    args = ["--workers", "2", "--handle-password-login"]
    node = Node(tmp_path_factory.mktemp("sdk") / "data", args=args, env=env).start()
    grants = [grant(100 + n, IDENTITY, 300 + n) for n in range(3)]
    keys = [{"index": 300, "type": "HS_SECKEY", "data": SECRET}, public_key(301, "dsa"), public_key(302, "rsa")]
    assert node.put(f"/api/handles/{IDENTITY}", record(*grants, *keys), auth=ADMIN).status == 201
    others = record(grant(100, f"0.NA/{OTHER}", 300), {"index": 300, "type": "HS_SECKEY", "data": "someone else"})
    assert node.put(f"/api/handles/0.NA/{OTHER}", others, auth=ADMIN).status == 201
    yield node
    node.stop()


def values(node: Node, handle: str) -> dict[int, str] | None:
    """The values of ``handle`` by index, as REST shows them; None when it does not exist."""
    reply = node.get(f"/api/handles/{handle}")
    if reply.status == 404:
        return None
    assert reply.status == 200, reply.body
    return {v["index"]: str(v["data"]["value"]) for v in reply.json["values"]}


def create(handle: str, url: str = "https://sdk.example/") -> bytes:
    return encoded(OpCode.CREATE_HANDLE, CreateHandleRequest(handle, (HandleValue(1, "URL", url.encode()),)))


def code(message: Message) -> ResponseCode:
    return ResponseCode(message.response_code)


def without_credential(raw: bytes) -> bytes:
    """``raw`` without its (empty) credential section, as Teleinfo's SDK sends its login."""
    return raw[:16] + (len(raw) - 24).to_bytes(4, "big") + raw[20:-4]


@pytest.mark.parametrize(
    ("key", "as_sent"),
    [("seckey", "own-session"), ("dsa", "teleinfo"), ("rsa", "own-session")],
)
def test_a_login_then_writes_without_challenges_seen_through_rest(sdk: Node, key: str, as_sent: str) -> None:
    who, handle = KEYS[key], f"{PREFIX}/LOGIN-{key}"
    with Connection(sdk.handle_port) as conn:
        if as_sent == "teleinfo":  # no credential section; the answer under the challenge's session id
            challenge = conn.ask(without_credential(login_request(who)))
            done = conn.ask(login_answer(who, challenge))
        else:  # the answer under the client's own session id, not the challenge's
            done = login(conn.ask, who, own_session=True)
        assert (done.op_code, code(done)) == (OpCode.LOGIN_ID_SYSTEM, ResponseCode.SUCCESS)

        assert code(conn.ask(create(handle))) == ResponseCode.SUCCESS
        assert values(sdk, handle) == {1: "https://sdk.example/"}
        add = AddValueRequest(handle, (HandleValue(2, "EMAIL", b"a@sdk.example"),))
        assert code(conn.ask(encoded(OpCode.ADD_VALUE, add))) == ResponseCode.SUCCESS
        assert values(sdk, handle) == {1: "https://sdk.example/", 2: "a@sdk.example"}
        modify = ModifyValueRequest(handle, (HandleValue(2, "EMAIL", b"b@sdk.example"),))
        assert code(conn.ask(encoded(OpCode.MODIFY_VALUE, modify))) == ResponseCode.SUCCESS
        assert values(sdk, handle) == {1: "https://sdk.example/", 2: "b@sdk.example"}
        assert code(conn.ask(encoded(OpCode.REMOVE_VALUE, RemoveValueRequest(handle, (2,))))) == ResponseCode.SUCCESS
        assert values(sdk, handle) == {1: "https://sdk.example/"}
        listed = conn.ask(encoded(OpCode.LIST_HANDLES, ListHandlesRequest(IDENTITY)))
        assert isinstance(listed.body, ListHandlesResponse) and handle in listed.body.handles
        assert code(conn.ask(encoded(OpCode.DELETE_HANDLE, DeleteHandleRequest(handle)))) == ResponseCode.SUCCESS
        assert values(sdk, handle) is None


def test_the_audit_names_the_identity_the_address_and_the_login(sdk: Node) -> None:
    handle = f"{PREFIX}/AUDITED"
    with Connection(sdk.handle_port) as conn:
        assert code(login(conn.ask, KEYS["rsa"])) == ResponseCode.SUCCESS
        assert code(conn.ask(create(handle))) == ResponseCode.SUCCESS
    entries = sdk.get(f"/api/audit?prefix={PREFIX}", auth=ADMIN).json["entries"]
    mine = [(e["identity"], e["address"], e["operation"]) for e in entries if e["handle"] == handle]
    assert mine == [(f"302:{IDENTITY}", "127.0.0.1", "login_create")]


def test_a_login_holds_for_its_connection_only(sdk: Node) -> None:
    handle = f"{PREFIX}/ONLY-HERE"
    with Connection(sdk.handle_port) as logged_in:
        assert code(login(logged_in.ask, KEYS["seckey"])) == ResponseCode.SUCCESS
        for _ in range(6):  # new connections, on either worker (from another address: each leaves a challenge)
            with Connection(sdk.handle_port, source="127.0.0.4") as other:
                assert code(other.ask(create(handle))) == ResponseCode.AUTHENTICATION_NEEDED
        assert code(udp(sdk.handle_port, create(handle))) == ResponseCode.AUTHENTICATION_NEEDED
        assert values(sdk, handle) is None
        assert code(logged_in.ask(create(handle))) == ResponseCode.SUCCESS
        answered = time.monotonic()
        assert logged_in.closed_by_peer(within=IDLE + 5)  # idle: closed, and the login with it
        assert time.monotonic() - answered > IDLE / 2
    with Connection(sdk.handle_port) as again:
        assert code(again.ask(create(f"{handle}-2"))) == ResponseCode.AUTHENTICATION_NEEDED


def test_per_request_challenges_still_work_on_one_connection(sdk: Node) -> None:
    with Connection(sdk.handle_port) as conn:  # as CNRI's tools, answering on the connection they asked on
        for n in range(3):
            handle = f"{PREFIX}/CHALLENGED-{n}"
            challenge = conn.ask(create(handle))
            assert code(challenge) == ResponseCode.AUTHENTICATION_NEEDED
            answer = KEYS["seckey"].answer(challenge)
            done = conn.ask(encoded(OpCode.CHALLENGE_RESPONSE, answer, session_id=challenge.envelope.session_id))
            assert code(done) == ResponseCode.SUCCESS and values(sdk, handle) is not None


def test_a_logged_in_identity_cannot_exceed_its_permissions(sdk: Node) -> None:
    with Connection(sdk.handle_port) as conn:
        assert code(login(conn.ask, KEYS["dsa"])) == ResponseCode.SUCCESS
        refused = conn.ask(create(f"{OTHER}/NOT-MINE"))
        assert code(refused) == ResponseCode.INSUFFICIENT_PERMISSIONS
        assert code(conn.ask(create(f"{PREFIX}/MINE"))) == ResponseCode.SUCCESS  # still logged in
    assert values(sdk, f"{OTHER}/NOT-MINE") is None


def test_failed_logins_meet_the_failure_limit(sdk: Node) -> None:
    source = "127.0.0.3"  # limits count per address: the other tests' address is left alone
    wrong = Who(IDENTITY, 300, hashed_secret_key(b"a guess"))
    with Connection(sdk.handle_port, source=source) as conn:
        for _ in range(3):
            assert code(login(conn.ask, wrong)) == ResponseCode.AUTHENTICATION_FAILED
        refused = login(conn.ask, KEYS["seckey"])  # the right key, past the limit
        assert code(refused) == ResponseCode.AUTHENTICATION_FAILED
        assert isinstance(refused.body, ErrorResponse) and "too many failed" in refused.body.message
        assert code(conn.ask(create(f"{PREFIX}/LIMITED"))) == ResponseCode.AUTHENTICATION_NEEDED
    with Connection(sdk.handle_port) as elsewhere:  # another address is not locked out
        assert code(login(elsewhere.ask, KEYS["seckey"])) == ResponseCode.SUCCESS


def password_login(secret: str, index: int = 300) -> bytes:
    return encoded(OpCode.LOGIN, LoginRequest(IDENTITY, (index,), (secret,)))


def test_the_password_login_binds_the_connection_when_switched_on(sdk: Node) -> None:
    handle = f"{PREFIX}/PASSWORD"
    with Connection(sdk.handle_port) as conn:
        done = conn.ask(password_login(SECRET))
        assert (done.op_code, code(done)) == (OpCode.LOGIN, ResponseCode.SUCCESS)
        assert code(conn.ask(create(handle))) == ResponseCode.SUCCESS
        assert values(sdk, handle) == {1: "https://sdk.example/"}
    entries = sdk.get(f"/api/audit?prefix={PREFIX}", auth=ADMIN).json["entries"]
    assert [(e["identity"], e["operation"]) for e in entries if e["handle"] == handle] == [
        (f"300:{IDENTITY}", "login_create")
    ]


def test_logins_switched_off_are_refused_saying_so(tmp_path: Path) -> None:
    node = Node(tmp_path / "data", args=["--workers", "1", "--no-handle-login"]).start()
    try:
        with Connection(node.handle_port) as conn:
            for raw, setting in (
                (login_request(KEYS["seckey"]), "handle_login"),
                (password_login(SECRET), "handle_password_login"),  # off by default
            ):
                refused = conn.ask(raw)
                assert code(refused) == ResponseCode.OPERATION_NOT_SUPPORTED
                assert isinstance(refused.body, ErrorResponse) and setting in refused.body.message
    finally:
        node.stop()
