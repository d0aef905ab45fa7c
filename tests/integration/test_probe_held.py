"""What issue #21's probe found held, kept so: each claim a test against a real node.

The probe (an attacker on loopback against one node) reported these as held. Each is tested
here at the probe's scale or wider, on one node of two workers over PostgreSQL, through the
REST API, the Handle protocol (UDP and TCP) and SNMS:

| the probe's claim | here |
|---|---|
| 200 replays of used answers refused | ``test_200_replays_of_used_answers_are_refused`` |
| 16 admin operations without rights refused | ``test_admin_operations_without_the_right_are_refused`` |
| HS_SECKEY never returned by Handle resolution | ``test_handle_resolution_never_returns_a_secret`` |
| 7 forged SNMS tokens refused | ``test_forged_snms_tokens_are_refused`` |
| cross-enterprise SNMS batches refused per item | ``test_a_batch_across_enterprises_...`` |
| 144 SQL-injection attempts on PostgreSQL | ``test_sql_injection_attempts_inject_nothing`` |
| console views with script payloads | tests/integration/test_console.py, ``test_script_payloads_stay_text`` |

Mutated Handle messages are the Handle fuzzer's. Held at this breadth, one operation was not:
an identity with value rights only could overwrite an HS_ADMIN with a value of another type,
removing an admin ("turn an admin into another value"; ``registry.authority.change_permissions``).

Layout: node prefix 88 (SNMS's examples are under it); enterprise A owns 88.400.1, enterprise B
88.400.2; A's prefix handle grants A's editor the value rights only (no admin, prefix or list
rights); A's record 88.400.1/rec carries an HS_ADMIN at 100, a URL at 1 and an EMAIL at 2.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import pytest

from protocol import valuedata as vd
from protocol.codes import ResponseCode
from protocol.records import HandleValue
from protocol.wire.auth import client_secret_kind, hashed_secret_key, secret_answer
from protocol.wire.message import (
    AddValueRequest,
    Body,
    ChallengeAnswerRequest,
    ChallengeResponse,
    CreateHandleRequest,
    DeleteHandleRequest,
    GenericRequest,
    ListHandlesRequest,
    Message,
    ModifyValueRequest,
    OpCode,
    OpFlag,
    RemoveValueRequest,
    ResolutionRequest,
    ResolutionResponse,
    decode_message,
    encode_message,
)
from registry.identity import sealing
from registry.identity.auth import Identity
from registry.identity.tokens import LIFETIME, TokenSigner, load_key
from tests.conftest import LIMITS_OFF
from tests.integration.test_handle_admin_wire import request
from tests.integration.test_permissions import admin_value
from tests.support.handleclient import copies_at_once, read_message
from tests.support.nodeproc import Auth, Node, Reply, record, url_value
from tests.support.pgproc import query, temp_database
from tests.support.snmsclient import (
    NODE_ADMIN,
    Snms,
    enterprise,
    envelope,
    identifier,
    item,
    logged_in,
    secret_of,
    template,
    value,
)

A, B, C = "88.400.1", "88.400.2", "88.400.3"  # C's secret is changed by a test
REC = f"{A}/rec"
SUB = f"{A}.7"  # a sub-prefix of A, with one identifier
EDITOR_HANDLE = f"{A}/editor"
VALUE_RIGHTS = "010001110011"  # read, add / remove / modify value, delete / add handle: nothing else
A_AUTH: Auth = (f"300:0.NA/{A}", secret_of(A))
B_AUTH: Auth = (f"300:0.NA/{B}", secret_of(B))
EDITOR: Auth = (f"300:{EDITOR_HANDLE}", "editor-secret-of-88.400.1")
SNMS_ITEM = item("网址", "URL", 2000, 1, 255)
_ids = itertools.count(5000)


@dataclass(frozen=True)
class Probe:
    node: Node
    database: str  # the node's PostgreSQL database


@dataclass(frozen=True)
class Wire:
    """An identity as a Handle client names it, with the MAC key its secret gives."""

    handle: str
    index: int
    secret: str

    @property
    def key(self) -> bytes:
        return hashed_secret_key(self.secret.encode())


def wire(auth: Auth) -> Wire:
    assert auth is not None
    index, _, handle = auth[0].partition(":")
    return Wire(handle, int(index), auth[1])


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probe]:
    args = ["--node-prefix", "88", "--workers", "2"]
    with temp_database() as url:
        node = Node(tmp_path_factory.mktemp("probe") / "data", args=args, env=LIMITS_OFF, store=url).start()
        try:
            lay_out(node)
            query(url, "CREATE TABLE canary (note text); INSERT INTO canary VALUES ('still here')")
            yield Probe(node, url)
        finally:
            node.stop()


def lay_out(node: Node) -> None:
    for prefix in (A, B, C):
        enterprise(node, prefix)
        client = logged_in(node, prefix)
        assert envelope(client.call("POST", "/snms/api/v5/template", template(prefix, "1", SNMS_ITEM)))[0] == 1
        made = client.call("POST", "/identityv2/data", identifier(f"{prefix}/snms-1", "1", value(2000, "URL", "u1")))
        assert envelope(made)[0] == 1
    grant = {**admin_value(EDITOR_HANDLE, permissions=VALUE_RIGHTS), "index": 101}
    writes = [
        node.put(f"/api/handles/0.NA/{A}?index=101", record(grant), auth=NODE_ADMIN),
        node.put(f"/api/handles/{EDITOR_HANDLE}", record(seckey(EDITOR)), auth=A_AUTH),
        node.put(f"/api/handles/{REC}", record(admin_value(f"0.NA/{A}"), *REC_VALUES), auth=A_AUTH),
        node.put(f"/api/handles/0.NA/{SUB}", record({"index": 1, "type": "DESC", "data": "line 7"}), auth=A_AUTH),
        node.put(f"/api/handles/{SUB}/item", record(url_value(1, "https://item/")), auth=A_AUTH),
        node.put(f"/api/templates/{A}/motor", MOTOR, auth=A_AUTH),
    ]
    assert [w.status for w in writes] == [200, 201, 201, 201, 201, 201], [w.body for w in writes]


REC_VALUES = (url_value(1, "https://rec.example/"), {"index": 2, "type": "EMAIL", "data": "rec@example.com"})
MOTOR = {"version": "1.0", "fields": [{"index": 2000, "type": "productName", "dataType": "string"}]}


def seckey(auth: Auth, index: int = 300, **extra: Any) -> dict[str, Any]:
    assert auth is not None
    return {"index": index, "type": "HS_SECKEY", "data": auth[1], **extra}


# The Handle protocol as an administrator's client speaks it ------------------------------------


def send(node: Node, data: bytes, transport: str) -> Message:
    return decode_message(send_raw(node, data, transport))


def send_raw(node: Node, data: bytes, transport: str) -> bytes:
    """The answer's bytes: one datagram over UDP (the node sends no more), one message over TCP."""
    if transport == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(data, ("127.0.0.1", node.handle_port))
            return sock.recv(65536)
    with socket.create_connection(("127.0.0.1", node.handle_port), timeout=5) as sock:
        sock.sendall(data)
        return read_message(sock)


def answer_to(challenge: Message, who: Wire) -> bytes:
    """The CHALLENGE_RESPONSE a client holding ``who``'s secret sends to ``challenge``."""
    assert isinstance(challenge.body, ChallengeResponse) and challenge.request_digest is not None, challenge
    kind = client_secret_kind(challenge.version, challenge.envelope.suggest)
    mac = secret_answer(kind, who.key, challenge.body.nonce, challenge.request_digest.digest)
    body = ChallengeAnswerRequest("HS_SECKEY", who.handle, who.index, mac)
    return request(OpCode.CHALLENGE_RESPONSE, body, session_id=challenge.envelope.session_id, rid=next(_ids))


def as_identity(node: Node, who: Wire, op: OpCode, body: Body, transport: str = "tcp") -> tuple[Message, bytes]:
    """``op`` done as ``who`` (challenge, then answer): the final answer and the answer's bytes."""
    challenge = send(node, request(op, body, rid=next(_ids)), transport)
    if challenge.response_code != ResponseCode.AUTHENTICATION_NEEDED:
        return challenge, b""
    answer = answer_to(challenge, who)
    return send(node, answer, transport), answer


# 1. Replays of used answers -----------------------------------------------------------------

USED = 10  # answers used once each, half over UDP, half over TCP
AT_ONCE = 10  # UDP copies of each sent at once, from sockets of their own (so over both workers)
OVER_TCP = 9  # then one after the other, a connection each


def grafted(answer: bytes, challenge: Message) -> bytes:
    """A used answer put on another request's fresh challenge (its session id)."""
    message = decode_message(answer)
    envelope = replace(message.envelope, session_id=challenge.envelope.session_id)
    return encode_message(replace(message, envelope=envelope))


def test_200_replays_of_used_answers_are_refused(probe: Probe) -> None:
    node, owner = probe.node, wire(A_AUTH)
    victim = f"{A}/REPLAY-VICTIM"
    assert node.put(f"/api/handles/{victim}", record(url_value(1, "https://victim/")), auth=A_AUTH).status == 201
    used = []
    for n in range(USED):
        handle, transport = f"{A}/REPLAY-{n}", ("udp", "tcp")[n % 2]
        body = CreateHandleRequest(handle, (HandleValue(1, "URL", b"https://replay.example/"),))
        done, answer = as_identity(node, owner, OpCode.CREATE_HANDLE, body, transport)
        assert done.response_code == ResponseCode.SUCCESS, done.body
        # Gone again, so that a replay that ran would bring it back.
        assert node.delete(f"/api/handles/{handle}", auth=A_AUTH).status == 200
        used.append(answer)
    codes: Counter[int] = Counter()
    for answer in used:
        codes.update(copies_at_once(node.handle_port, answer, AT_ONCE, timeout=5))
        codes.update(send(node, answer, "tcp").response_code for _ in range(OVER_TCP))
        fresh = send(node, request(OpCode.DELETE_HANDLE, DeleteHandleRequest(victim), rid=next(_ids)), "tcp")
        assert fresh.response_code == ResponseCode.AUTHENTICATION_NEEDED
        codes[send(node, grafted(answer, fresh), "udp").response_code] += 1
    assert sum(codes.values()) == 200
    assert codes == {ResponseCode.AUTHEN_TIMEOUT: USED * (AT_ONCE + OVER_TCP), ResponseCode.AUTHENTICATION_FAILED: USED}
    assert [node.get(f"/api/handles/{A}/REPLAY-{n}").status for n in range(USED)] == [404] * USED
    assert node.get(f"/api/handles/{victim}").status == 200


# 2. Administrative operations without the right ------------------------------------------------


def state_of(node: Node) -> list[Any]:
    """What A holds, as the node admin reads it: records (timestamps too), listing, templates, prefixes."""
    reads = [node.get(f"/api/handles/{h}", auth=NODE_ADMIN).json for h in (REC, f"0.NA/{A}", f"0.NA/{SUB}")]
    reads += [node.get(f"/api/handles?prefix={p}", auth=NODE_ADMIN).json for p in (A, SUB)]
    reads += [node.get(f"/api/templates/{A}").json, node.get(f"/api/templates/{A}/motor").json]
    reads.append(node.get("/api/prefixes").json)
    return reads


Outcome = tuple[str, bool]  # what was tried, and whether it was refused as it must be


def rest(label: str, reply: Reply, status: int = 403, code: int = ResponseCode.INSUFFICIENT_PERMISSIONS) -> Outcome:
    return label, (reply.status, reply.code) == (status, code)


def batch(label: str, node: Node, auth: Auth, *operations: dict[str, Any]) -> Outcome:
    reply = node.request("POST", "/api/batch", {"operations": list(operations)}, auth=auth)
    codes = [r["responseCode"] for r in reply.json.get("results", [])] if reply.status == 200 else []
    return label, codes == [ResponseCode.INSUFFICIENT_PERMISSIONS] * len(operations)


def handle(label: str, node: Node, auth: Auth, op: OpCode, body: Body, transport: str = "tcp") -> Outcome:
    done, _ = as_identity(node, wire(auth), op, body, transport)
    return label, done.response_code == ResponseCode.INSUFFICIENT_PERMISSIONS


def snms(label: str, reply: Reply) -> Outcome:
    return label, envelope(reply)[0] == -3


def snms_items(label: str, reply: Reply) -> Outcome:
    status, _, data = envelope(reply)
    return label, status == 1 and bool(data) and all(r["msg"].startswith("没有权限") for r in data)


def b_snms(node: Node) -> Snms:
    return logged_in(node, B)


def url(index: int, text: str) -> HandleValue:
    return HandleValue(index, "URL", text.encode())


def hs_admin(handle: str, permissions: str = "111111111111", index: int = 100) -> HandleValue:
    ref = vd.AdminRef(handle, 300, vd.AdminRef.parse_permissions(permissions))
    return HandleValue(index, "HS_ADMIN", vd.encode_admin(ref))


def admin_json(handle: str, permissions: str = "111111111111", index: int = 100) -> dict[str, Any]:
    return {**admin_value(handle, permissions=permissions), "index": index}


def op_create_handle(n: Node) -> list[Outcome]:
    new = f"{A}/by-b"
    made = identifier(new, "1", value(2000, "URL", "b"))
    return [
        rest("REST PUT", n.put(f"/api/handles/{new}?overwrite=false", record(url_value(1, "https://b/")), auth=B_AUTH)),
        batch("REST batch", n, B_AUTH, {"op": "create", "handle": new, "values": [url_value(1, "https://b/")]}),
        handle("Handle CREATE", n, B_AUTH, OpCode.CREATE_HANDLE, CreateHandleRequest(new, (url(1, "https://b/"),))),
        snms("SNMS create", b_snms(n).call("POST", "/identityv2/data", made)),
        snms_items("SNMS batchCreate", b_snms(n).call("POST", "/identityv2/data/batchCreate", [made])),
    ]


def op_delete_handle(n: Node) -> list[Outcome]:
    return [
        rest("REST DELETE", n.delete(f"/api/handles/{REC}", auth=B_AUTH)),
        batch("REST batch", n, B_AUTH, {"op": "delete", "handle": REC}),
        handle("Handle DELETE", n, B_AUTH, OpCode.DELETE_HANDLE, DeleteHandleRequest(REC), "udp"),
        snms("SNMS delete", b_snms(n).call("DELETE", "/identityv2/data", {"handle": REC})),
        snms_items("SNMS batchDelete", b_snms(n).call("DELETE", "/identityv2/data/batchDelete", [REC])),
    ]


def op_add_value(n: Node) -> list[Outcome]:
    return [
        rest("REST PUT index=5", n.put(f"/api/handles/{REC}?index=5", record(url_value(5, "https://b/")), auth=B_AUTH)),
        batch("REST batch", n, B_AUTH, {"op": "add_values", "handle": REC, "values": [url_value(5, "https://b/")]}),
        handle("Handle ADD_VALUE", n, B_AUTH, OpCode.ADD_VALUE, AddValueRequest(REC, (url(5, "https://b/"),))),
    ]


def op_remove_value(n: Node) -> list[Outcome]:
    return [
        rest("REST DELETE index=2", n.delete(f"/api/handles/{REC}?index=2", auth=B_AUTH)),
        handle("Handle REMOVE_VALUE", n, B_AUTH, OpCode.REMOVE_VALUE, RemoveValueRequest(REC, (2,)), "udp"),
    ]


def op_modify_value(n: Node) -> list[Outcome]:
    changed = identifier(REC, "1", value(2000, "URL", "b"))
    return [
        rest("REST PUT index=1", n.put(f"/api/handles/{REC}?index=1", record(url_value(1, "https://b/")), auth=B_AUTH)),
        handle("Handle MODIFY_VALUE", n, B_AUTH, OpCode.MODIFY_VALUE, ModifyValueRequest(REC, (url(1, "https://b/"),))),
        snms("SNMS update", b_snms(n).call("PUT", "/identityv2/data", changed)),
        snms_items("SNMS batchUpdate", b_snms(n).call("PUT", "/identityv2/data/batchUpdate", [changed])),
    ]


def op_replace_record(n: Node) -> list[Outcome]:
    return [
        rest("REST PUT", n.put(f"/api/handles/{REC}", record(url_value(1, "https://b/")), auth=B_AUTH)),
        batch("REST batch", n, B_AUTH, {"op": "replace", "handle": REC, "values": [url_value(1, "https://b/")]}),
    ]


def op_add_admin(n: Node) -> list[Outcome]:
    grant = admin_json(EDITOR_HANDLE, index=101)
    added = AddValueRequest(REC, (hs_admin(EDITOR_HANDLE, index=101),))
    return [
        rest("REST PUT index=101", n.put(f"/api/handles/{REC}?index=101", record(grant), auth=EDITOR)),
        batch("REST batch", n, EDITOR, {"op": "add_values", "handle": REC, "values": [grant]}),
        handle("Handle ADD_VALUE", n, EDITOR, OpCode.ADD_VALUE, added),
    ]


def op_modify_admin(n: Node) -> list[Outcome]:
    taken = admin_json(EDITOR_HANDLE)  # the grant at 100 turned to the editor
    widened = record(admin_json(EDITOR_HANDLE, index=101))  # the editor's own grant, all bits
    modified = ModifyValueRequest(REC, (hs_admin(EDITOR_HANDLE),))
    return [
        rest("REST PUT index=100", n.put(f"/api/handles/{REC}?index=100", record(taken), auth=EDITOR)),
        rest("REST PUT prefix index=101", n.put(f"/api/handles/0.NA/{A}?index=101", widened, auth=EDITOR)),
        handle("Handle MODIFY_VALUE", n, EDITOR, OpCode.MODIFY_VALUE, modified),
    ]


def op_remove_admin(n: Node) -> list[Outcome]:
    return [
        rest("REST DELETE index=100", n.delete(f"/api/handles/{REC}?index=100", auth=EDITOR)),
        rest("REST PUT without it", n.put(f"/api/handles/{REC}", record(*REC_VALUES), auth=EDITOR)),
        handle("Handle REMOVE_VALUE", n, EDITOR, OpCode.REMOVE_VALUE, RemoveValueRequest(REC, (100,))),
    ]


def op_admin_to_other_type(n: Node) -> list[Outcome]:
    """An HS_ADMIN overwritten by a value of another type is an admin removed."""
    gone = url_value(100, "https://no-admin/")
    modified = ModifyValueRequest(REC, (url(100, "https://no-admin/"),))
    return [
        rest("REST PUT index=100", n.put(f"/api/handles/{REC}?index=100", record(gone), auth=EDITOR)),
        rest("REST PUT whole", n.put(f"/api/handles/{REC}", record(*REC_VALUES, gone), auth=EDITOR)),
        batch("REST batch", n, EDITOR, {"op": "replace", "handle": REC, "values": [*REC_VALUES, gone]}),
        handle("Handle MODIFY_VALUE", n, EDITOR, OpCode.MODIFY_VALUE, modified),
        rest("REST PUT prefix handle", n.put(f"/api/handles/0.NA/{A}?index=100", record(gone), auth=EDITOR)),
    ]


def op_set_an_admins_credentials(n: Node) -> list[Outcome]:
    """The secret or key the enterprise admin logs in with says who the admin is: setting it is
    changing an admin. With value rights alone, the editor would log in as the admin after."""
    taken = record(seckey(EDITOR))  # the editor's own secret, on the admin's index 300
    key = {"index": 301, "type": "HS_PUBKEY", "data": {"format": "base64", "value": "AAAA"}}
    modified = ModifyValueRequest(f"0.NA/{A}", (HandleValue(300, "HS_SECKEY", b"editor-secret-of-88.400.1"),))
    return [
        rest("REST PUT prefix index=300", n.put(f"/api/handles/0.NA/{A}?index=300", taken, auth=EDITOR)),
        rest("REST PUT prefix index=301", n.put(f"/api/handles/0.NA/{A}?index=301", record(key), auth=EDITOR)),
        batch("REST batch", n, EDITOR, {"op": "add_values", "handle": f"0.NA/{A}", "values": [seckey(EDITOR)]}),
        handle("Handle MODIFY_VALUE", n, EDITOR, OpCode.MODIFY_VALUE, modified),
    ]


def op_create_sub_prefix(n: Node) -> list[Outcome]:
    desc = record({"index": 1, "type": "DESC", "data": "sub"})
    return [
        rest("REST PUT (editor)", n.put(f"/api/handles/0.NA/{A}.9", desc, auth=EDITOR)),
        rest("REST PUT (B)", n.put(f"/api/handles/0.NA/{A}.9", desc, auth=B_AUTH)),
        handle("Handle CREATE", n, EDITOR, OpCode.CREATE_HANDLE, CreateHandleRequest(f"0.NA/{A}.9", (url(1, "u"),))),
    ]


def op_delete_prefix(n: Node) -> list[Outcome]:
    return [
        rest("REST DELETE (editor)", n.delete(f"/api/handles/0.NA/{SUB}", auth=EDITOR)),
        rest("REST DELETE (B)", n.delete(f"/api/handles/0.NA/{SUB}", auth=B_AUTH)),
        handle("Handle DELETE", n, EDITOR, OpCode.DELETE_HANDLE, DeleteHandleRequest(f"0.NA/{SUB}")),
    ]


def op_define_template(n: Node) -> list[Outcome]:
    return [
        rest("REST PUT", n.put(f"/api/templates/{A}/by-b", MOTOR, auth=B_AUTH)),
        rest("REST PUT over", n.put(f"/api/templates/{A}/motor", {**MOTOR, "version": "1.0"}, auth=B_AUTH)),
        snms("SNMS POST", b_snms(n).call("POST", "/snms/api/v5/template", template(A, "2", SNMS_ITEM))),
        snms("SNMS PUT", b_snms(n).call("PUT", "/snms/api/v5/template", template(A, "1", dict(SNMS_ITEM, state=0)))),
    ]


def op_delete_template(n: Node) -> list[Outcome]:
    return [
        rest("REST DELETE", n.delete(f"/api/templates/{A}/motor", auth=B_AUTH)),
        snms("SNMS DELETE", b_snms(n).call("DELETE", "/snms/api/v5/template", {"prefix": A, "version": "1"})),
    ]


def op_list_handles(n: Node) -> list[Outcome]:
    return [
        rest("REST list (B)", n.get(f"/api/handles?prefix={A}", auth=B_AUTH)),
        rest("REST list (editor)", n.get(f"/api/handles?prefix={A}", auth=EDITOR)),
        handle("Handle LIST_HANDLES (B)", n, B_AUTH, OpCode.LIST_HANDLES, ListHandlesRequest(f"0.NA/{A}")),
        handle("Handle LIST_HANDLES (editor)", n, EDITOR, OpCode.LIST_HANDLES, ListHandlesRequest(f"0.NA/{A}")),
    ]


def op_audit_and_stats(n: Node) -> list[Outcome]:
    return [
        rest("REST audit", n.get(f"/api/audit?prefix={A}", auth=B_AUTH)),
        rest("REST stats", n.get(f"/api/stats?prefix={A}", auth=B_AUTH)),
        rest("REST node audit", n.get("/api/audit", auth=A_AUTH)),
    ]


def op_prefix_homing(n: Node) -> list[Outcome]:
    """The node admin's alone: an enterprise admin is refused even for its own prefix, and may not
    force the deletion of a sub-prefix that still has identifiers."""
    return [
        handle("HOME_PREFIX", n, A_AUTH, OpCode.HOME_PREFIX, GenericRequest(f"0.NA/{A}")),
        handle("UNHOME_PREFIX", n, A_AUTH, OpCode.UNHOME_PREFIX, GenericRequest(f"0.NA/{A}")),
        handle("LIST_HOMED_PREFIXES", n, A_AUTH, OpCode.LIST_HOMED_PREFIXES, GenericRequest("/")),
        rest("REST force delete", n.delete(f"/api/handles/0.NA/{SUB}?force=true", auth=A_AUTH)),
    ]


ADMIN_OPS: dict[str, Callable[[Node], list[Outcome]]] = {
    "create handle": op_create_handle,
    "delete handle": op_delete_handle,
    "add value": op_add_value,
    "remove value": op_remove_value,
    "modify value": op_modify_value,
    "replace record": op_replace_record,
    "add admin": op_add_admin,
    "modify admin": op_modify_admin,
    "remove admin": op_remove_admin,
    "turn an admin into another value": op_admin_to_other_type,
    "set an admin's secret or key": op_set_an_admins_credentials,
    "create sub-prefix": op_create_sub_prefix,
    "delete prefix": op_delete_prefix,
    "define template": op_define_template,
    "delete template": op_delete_template,
    "list handles": op_list_handles,
    "read audit and stats": op_audit_and_stats,
    "home, unhome, list prefixes": op_prefix_homing,
}


@pytest.mark.parametrize("op", ADMIN_OPS)
def test_admin_operations_without_the_right_are_refused(probe: Probe, op: str) -> None:
    before = state_of(probe.node)
    outcomes = ADMIN_OPS[op](probe.node)
    assert [label for label, refused in outcomes if not refused] == [], f"{op}: done without the right"
    assert state_of(probe.node) == before, f"{op}: A's records, templates or prefixes changed"


# 3. HS_SECKEY over Handle resolution ------------------------------------------------------------

PUBLIC_SECKEY = (f"300:{A}/public-seckey", "asked-to-be-public-secret")
LOWER_SECKEY = (f"300:{A}/lower-seckey", "typed-in-lower-case-secret")
WIRE_SECKEY = (f"300:{A}/wire-seckey", "written-over-the-protocol-secret")
SECRETS = (NODE_ADMIN, A_AUTH, EDITOR, PUBLIC_SECKEY, LOWER_SECKEY, WIRE_SECKEY)
RESOLUTIONS: dict[str, tuple[tuple[int, ...], tuple[str, ...], OpFlag]] = {
    "plain": ((), (), OpFlag.RECURSIVE | OpFlag.CACHE_CERTIFY | OpFlag.PUBLIC_ONLY),
    "plain, cached": ((), (), OpFlag.RECURSIVE | OpFlag.CACHE_CERTIFY | OpFlag.PUBLIC_ONLY),
    "all values asked": ((), (), OpFlag(0)),
    "index 300": ((300,), (), OpFlag(0)),
    "type HS_SECKEY": ((), ("HS_SECKEY",), OpFlag(0)),
    "type hs_seckey": ((), ("hs_seckey",), OpFlag(0)),
    "subtypes of HS_SECKEY": ((), ("HS_SECKEY.",), OpFlag(0)),
    "authoritative, certified, digest": (
        (300, 100, 1),
        ("HS_SECKEY",),
        OpFlag.AUTHORITATIVE | OpFlag.CERTIFY | OpFlag.RETURN_REQUEST_DIGEST,
    ),
}


@pytest.fixture(scope="module")
def secrets_held(probe: Probe) -> list[bytes]:
    """Records holding secrets written every way a client may: asked public, typed in lower case,
    over the Handle protocol with public read; what must never appear in an answer comes back."""
    node = probe.node
    made = [
        node.put(
            f"/api/handles/{A}/public-seckey",
            record(url_value(1, "https://p/"), seckey(PUBLIC_SECKEY, permissions="1111")),
            auth=A_AUTH,
        ),
        node.put(
            f"/api/handles/{A}/lower-seckey",
            record(url_value(1, "https://l/"), {**seckey(LOWER_SECKEY), "type": "hs_seckey"}),
            auth=A_AUTH,
        ),
    ]
    assert [m.status for m in made] == [201, 201], [m.body for m in made]
    values = (url(1, "https://w/"), HandleValue(300, "HS_SECKEY", WIRE_SECKEY[1].encode(), permissions=0b1111))
    done, _ = as_identity(node, wire(A_AUTH), OpCode.CREATE_HANDLE, CreateHandleRequest(f"{A}/wire-seckey", values))
    assert done.response_code == ResponseCode.SUCCESS, done.body
    keyring = sealing.load_file(node.data_dir / sealing.KEY_FILE)
    forbidden = [f"v1.{keyring.current}.".encode()]  # any sealed form
    for auth in SECRETS:
        assert auth is not None
        forbidden += [auth[1].encode(), hashed_secret_key(auth[1].encode())]
    return forbidden


def unseen(node: Node, data: bytes, transport: str, forbidden: list[bytes]) -> Message:
    """The answer to ``data``, once its bytes are shown to hold none of ``forbidden``."""
    raw = send_raw(node, data, transport)
    assert [secret for secret in forbidden if secret in raw] == []
    return decode_message(raw)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("asked", RESOLUTIONS)
def test_handle_resolution_never_returns_a_secret(
    probe: Probe, secrets_held: list[bytes], asked: str, transport: str
) -> None:
    indexes, types, flags = RESOLUTIONS[asked]
    codes = []
    for auth in SECRETS:
        assert auth is not None
        holder = auth[0].partition(":")[2]
        message = Message(OpCode.RESOLUTION, ResolutionRequest(holder, indexes, types), flags=flags)
        message = replace(message, envelope=replace(message.envelope, request_id=next(_ids), version=(2, 10)))
        answer = unseen(probe.node, encode_message(message), transport, secrets_held)
        if transport == "udp" and answer.response_code == ResponseCode.ERROR:
            assert "TCP" in getattr(answer.body, "message", ""), answer.body  # too large for a datagram
            answer = unseen(probe.node, encode_message(message), "tcp", secrets_held)  # as CNRI's client goes on
        codes.append(answer.response_code)
        if isinstance(answer.body, ResolutionResponse):
            shown = [v for v in answer.body.values if v.type.upper() == "HS_SECKEY"]
            assert all(v.data == b"" for v in shown), holder
    assert set(codes) <= {ResponseCode.SUCCESS, ResponseCode.VALUES_NOT_FOUND}, codes
    if not types and indexes != (300,):  # every record also holds a public value: those were answered
        assert codes.count(ResponseCode.SUCCESS) >= len(SECRETS) - 1, codes  # the editor holds only its key


# 4. Forged SNMS tokens ------------------------------------------------------------------------


def _part(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()


def _claims_of(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return claims


def altered(token: str, **claims: Any) -> str:
    """``token`` with some claims changed and its signature kept."""
    header, _, signature = token.split(".")
    return f"{header}.{_part(_claims_of(token) | claims)}.{signature}"


def revoked(node: Node) -> str:
    """A token of C's, from before C's secret was set anew."""
    token = logged_in(node, C).token
    new = record(seckey((f"300:0.NA/{C}", "c-secret-set-anew-0123")))
    assert node.put(f"/api/handles/0.NA/{C}?index=300", new, auth=NODE_ADMIN).status == 200
    return token


def expired(node: Node) -> str:
    """Signed with the node's own key, a day and a minute ago: the signature holds, the time does not."""
    signer = TokenSigner(load_key(node.data_dir / "snms-token-key"), clock=lambda: time.time() - LIFETIME - 60)
    return signer.issue(Identity(300, f"0.NA/{A}"), b"x", 0)


def theirs(node: Node) -> tuple[Any, Any]:
    return node.get(f"/api/handles/{B}/snms-1", auth=NODE_ADMIN).json, node.get(f"/api/templates/{B}").json


Forge = Callable[[Node, str], str]
FORGED: dict[str, Forge] = {
    "wrong signature": lambda n, t: t[:-6] + ("AAAAAA" if not t.endswith("AAAAAA") else "BBBBBB"),
    "expired": lambda n, t: expired(n),
    "another node's key": lambda n, t: TokenSigner(os.urandom(32)).issue(Identity(300, f"0.NA/{A}"), b"x", 0),
    "altered identity: the node admin": lambda n, t: altered(t, sub="300:0.NA/88"),
    "altered identity: A's editor": lambda n, t: altered(t, sub=f"300:{EDITOR_HANDLE}"),
    "altered prefix: A's": lambda n, t: altered(t, sub=f"300:0.NA/{A}"),
    "altered expiry": lambda n, t: altered(t, exp=_claims_of(t)["exp"] + 365 * 86400),
    "alg none": lambda n, t: f"{_part({'alg': 'none', 'typ': 'JWT'})}.{t.split('.')[1]}.",
    "truncated": lambda n, t: t[: t.rindex(".") + 20],
    "signature dropped": lambda n, t: t[: t.rindex(".")],
    "revoked by a secret change": lambda n, t: revoked(n),
}


@pytest.mark.parametrize("form", FORGED)
def test_forged_snms_tokens_are_refused(probe: Probe, form: str) -> None:
    """B, holding a token of its own, forges one (or keeps one it should have lost) and tries
    reads and writes on A and on B with it: each is refused as not logged in (-1)."""
    node = probe.node
    token = FORGED[form](node, logged_in(node, B).token)
    before = state_of(node), theirs(node)
    client = Snms(node, token)
    new = identifier(f"{A}/forged", "1", value(2000, "URL", "f"))
    calls = [
        client.detail(f"{A}/snms-1"),
        client.call("POST", "/identityv2/data", new),
        client.call("PUT", "/identityv2/data", identifier(f"{A}/snms-1", "1", value(2000, "URL", "f"))),
        client.call("DELETE", "/identityv2/data", {"handle": f"{A}/snms-1"}),
        client.call("POST", "/identityv2/data/batchCreate", [new]),
        client.call("DELETE", "/identityv2/data/batchDelete", [f"{B}/snms-1"]),
        client.call("POST", "/snms/api/v5/template", template(A, "9", SNMS_ITEM)),
        client.call("DELETE", "/snms/api/v5/template", {"prefix": B, "version": "1"}),
    ]
    assert [envelope(reply)[0] for reply in calls] == [-1] * len(calls), [c.body[:200] for c in calls]
    assert (state_of(node), theirs(node)) == before
    assert node.get(f"/api/handles/{A}/forged").status == 404


# 5. SNMS batches across enterprises --------------------------------------------------------------

REFUSED = "没有权限"
_batch = itertools.count()


def made_by(node: Node, prefix: str, count: int) -> list[str]:
    client, n = logged_in(node, prefix), next(_batch)
    handles = [f"{prefix}/mixed-{n}-{k}" for k in range(count)]
    batch_body = [identifier(h, "1", value(2000, "URL", f"by {prefix}")) for h in handles]
    assert [r["msg"] for r in envelope(client.call("POST", "/identityv2/data/batchCreate", batch_body))[2]] == [
        "success"
    ] * count
    return handles


def url_of(node: Node, handle: str) -> str | None:
    reply = node.get(f"/api/handles/{handle}")
    return None if reply.status == 404 else str(reply.json["values"][1]["data"]["value"])


def test_a_batch_across_enterprises_does_its_own_items_and_refuses_the_others(probe: Probe) -> None:
    node, a = probe.node, logged_in(probe.node, A)
    n = next(_batch)
    own = [f"{A}/mixed-{n}-new-{k}" for k in range(3)]
    theirs = [f"{B}/mixed-{n}-new", f"{B}.7/mixed-{n}-new", f"{C}/mixed-{n}-new"]
    mixed = [own[0], theirs[0], own[1], theirs[1], theirs[2], own[2]]
    body = [identifier(h, "1", value(2000, "URL", "by A")) for h in mixed]
    results = envelope(a.call("POST", "/identityv2/data/batchCreate", body))[2]
    assert [r["handle"] for r in results] == mixed
    assert [r["msg"] == "success" for r in results] == [h in own for h in mixed], results
    assert all(r["msg"].startswith(REFUSED) for r in results if r["handle"] in theirs), results
    assert [url_of(node, h) for h in mixed] == ["by A" if h in own else None for h in mixed]

    mine, b_made = made_by(node, A, 2), made_by(node, B, 2)
    mixed = [mine[0], b_made[0], mine[1], b_made[1]]
    body = [identifier(h, "1", value(2000, "URL", "updated by A")) for h in mixed]
    results = envelope(a.call("PUT", "/identityv2/data/batchUpdate", body))[2]
    assert [(r["handle"], r["msg"] == "success") for r in results] == [(h, h in mine) for h in mixed], results
    assert all(r["msg"].startswith(REFUSED) for r in results if r["handle"] in b_made)
    assert [url_of(node, h) for h in mixed] == ["updated by A", f"by {B}"] * 2

    results = envelope(a.call("DELETE", "/identityv2/data/batchDelete", mixed))[2]
    assert [(r["handle"], r["code"]) for r in results] == [(h, 1 if h in mine else -3) for h in mixed], results
    assert all(r["msg"].startswith(REFUSED) for r in results if r["code"] == -3)
    assert [url_of(node, h) for h in mixed] == [None, f"by {B}"] * 2


# 6. SQL injection on PostgreSQL ----------------------------------------------------------------

PAYLOADS = (
    "' OR '1'='1",
    "'; DROP TABLE canary; --",
    '"; DROP TABLE canary; --',
    "x'); DELETE FROM handles; --",
    "' UNION SELECT key, record FROM handles --",
    "1; TRUNCATE handles CASCADE",
    "'; SELECT pg_sleep(3); --",
    "$1) OR ($2",
    "%' OR key LIKE '%",
    "\\'; DROP TABLE canary; --",
    "'||(SELECT version())||'",
    "x' AND 1=CAST((SELECT string_agg(key, ',') FROM handles) AS int) --",
)
SLOW = 2.0  # seconds: pg_sleep(3) run by a payload would show


def census(probe: Probe) -> dict[str, str]:
    sql = {
        "tables": "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'",
        "canary": "SELECT string_agg(note, ',') FROM canary",
        "handles": "SELECT count(*) FROM handles",
        "templates": "SELECT count(*) FROM templates",
        "login_digests": "SELECT count(*) FROM login_digests",
    }
    return {name: query(probe.database, text) for name, text in sql.items()}


def q(text: str) -> str:
    return quote(text, safe="")


def literal(reply: Reply, status: int = 201) -> None:
    assert reply.status == status, reply.body[:300]


def inject_handle_suffix(n: Node, payload: str, k: int) -> Counter[str]:
    handle = f"{A}/sql-{k}-{payload}"
    literal(n.put(f"/api/handles/{A}/sql-{k}-{q(payload)}", record(url_value(1, "https://s/")), auth=A_AUTH))
    assert n.get(f"/api/handles/{A}/sql-{k}-{q(payload)}").json["handle"] == handle
    return Counter(handles=1)


def inject_value_data_and_type(n: Node, payload: str, k: int) -> Counter[str]:
    values = record({"index": 1, "type": "DESC", "data": payload}, {"index": 2, "type": payload[:128], "data": "t"})
    literal(n.put(f"/api/handles/{A}/sql-value-{k}", values, auth=A_AUTH))
    shown = n.get(f"/api/handles/{A}/sql-value-{k}").json["values"]
    assert [(v["type"], v["data"]["value"]) for v in shown] == [("DESC", payload), (payload[:128], "t")]
    return Counter(handles=1)


def inject_resolution(n: Node, payload: str, k: int) -> Counter[str]:
    literal(n.get(f"/api/handles/{A}/{q(payload)}"), 404)
    literal(n.get(f"/{A}/{q(payload)}"), 404)  # the proxy form
    shown = n.get(f"/api/handles/{REC}?type={q(payload)}")
    assert (shown.status, shown.code) == (200, ResponseCode.VALUES_NOT_FOUND), shown.body
    literal(n.get(f"/api/handles/{REC}?index={q(payload)}"), 400)
    answer = send(n, request(OpCode.RESOLUTION, ResolutionRequest(f"{A}/{payload}"), rid=next(_ids)), "udp")
    assert answer.response_code == ResponseCode.HANDLE_NOT_FOUND
    return Counter()


def inject_listing(n: Node, payload: str, k: int) -> Counter[str]:
    asked = [f"prefix={q(payload)}"] + [f"prefix={A}&{name}={q(payload)}" for name in ("cursor", "page", "pageSize")]
    for query_text in asked:
        literal(n.get(f"/api/handles?{query_text}", auth=NODE_ADMIN), 400)
    return Counter()


def inject_templates(n: Node, payload: str, k: int) -> Counter[str]:
    field = {"index": 2000, "type": payload[:128], "name": payload, "dataType": "enum", "choices": [payload]}
    body = {"version": payload, "description": payload, "fields": [field]}
    literal(n.put(f"/api/templates/{A}/sql-{k}", body, auth=A_AUTH))
    shown = n.get(f"/api/templates/{A}/sql-{k}?version={q(payload)}").json
    assert (shown["version"], shown["description"], shown["fields"][0]["name"]) == (payload, payload, payload)
    literal(n.put(f"/api/templates/{A}/{q(payload)}", {**body, "version": "1"}, auth=A_AUTH), 400)
    literal(n.get(f"/api/templates/{q(payload)}"), 400)
    return Counter(templates=1)


def inject_identities(n: Node, payload: str, k: int) -> Counter[str]:
    for who in (f"300:0.NA/{payload}", f"300:{A}/{payload}", f"{payload}:0.NA/{A}"):
        reply = n.get(f"/api/handles/{REC}", auth=(who, payload))
        assert reply.status in (400, 401, 403), (who, reply.status)
    return Counter()


def inject_audit_and_stats(n: Node, payload: str, k: int) -> Counter[str]:
    paths = [f"/api/audit?prefix={A}&{name}={q(payload)}" for name in ("since", "limit")]
    for path in [f"/api/audit?prefix={q(payload)}", f"/api/stats?prefix={q(payload)}", *paths]:
        literal(n.get(path, auth=NODE_ADMIN), 400)
    return Counter()


def inject_snms_login(n: Node, payload: str, k: int) -> Counter[str]:
    for path in ("/identity/token", "/identity/token/v1"):
        for username in (payload, f"{A}{payload}", A):
            assert envelope(Snms(n).login(username, payload, path))[0] == -2
    return Counter()


def inject_snms_identifiers(n: Node, payload: str, k: int) -> Counter[str]:
    a = logged_in(n, A)
    handle = f"{A}/sql-snms-{k}-{payload}"
    assert envelope(a.call("POST", "/identityv2/data", identifier(handle, "1", value(2000, "URL", payload))))[0] == 1
    assert envelope(a.detail(handle))[2]["value"][1]["data"]["value"] == payload
    assert envelope(a.detail(f"{A}/{payload}"))[0] == -2
    assert envelope(a.detail(payload))[0] == -2
    versioned = identifier(f"{A}/x{k}", payload, value(2000, "URL", "v"))
    assert envelope(a.call("POST", "/identityv2/data", versioned))[0] == -2
    deleted = envelope(a.call("DELETE", "/identityv2/data/batchDelete", [f"{A}/{payload}"]))[2]
    assert [r["code"] for r in deleted] == [-2]
    return Counter(handles=1)


def inject_snms_templates(n: Node, payload: str, k: int) -> Counter[str]:
    a = logged_in(n, A)
    made = template(A, payload, item(payload, payload[:128], 2000, 1, 64))
    made["description"] = payload
    assert envelope(a.call("POST", "/snms/api/v5/template", made))[0] == 1
    shown = envelope(a.call("GET", f"/snms/api/v5/template?prefix={A}&version={q(payload)}"))[2]
    field = shown["items"][0]
    assert (shown["version"], field["name"], field["idType"]) == (payload, payload, payload[:128])
    assert envelope(a.call("GET", f"/snms/api/v5/template?prefix={q(payload)}&version=1"))[0] == -2
    assert envelope(a.call("DELETE", "/snms/api/v5/template", {"prefix": A, "version": f"{payload}-none"}))[0] == -2
    return Counter(templates=1)


INJECTIONS: dict[str, Callable[[Node, str, int], Counter[str]]] = {
    "handle suffix": inject_handle_suffix,
    "value data and type": inject_value_data_and_type,
    "resolution: handle, filters, Handle protocol": inject_resolution,
    "listing: prefix, cursor, page, pageSize": inject_listing,
    "template name, version, fields": inject_templates,
    "identity names": inject_identities,
    "audit and stats parameters": inject_audit_and_stats,
    "SNMS login": inject_snms_login,
    "SNMS identifiers": inject_snms_identifiers,
    "SNMS templates": inject_snms_templates,
}


@pytest.mark.parametrize("where", INJECTIONS)
def test_sql_injection_attempts_inject_nothing(probe: Probe, where: str) -> None:
    before = census(probe)
    grown: Counter[str] = Counter()
    for k, payload in enumerate(PAYLOADS):
        started = time.monotonic()
        grown += INJECTIONS[where](probe.node, payload, k)
        assert time.monotonic() - started < SLOW, f"{payload!r} took {time.monotonic() - started:.1f} s"
    expected = dict(before)
    for table, more in grown.items():
        expected[table] = str(int(before[table]) + more)
    assert census(probe) == expected
    assert before["canary"] == "still here"
