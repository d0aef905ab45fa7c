"""Generated Handle protocol messages for fuzzing a node: every op code, then mutated.

Pure: no I/O. ``Generator(seed, world).case(n, transport)`` is a function of (seed, n,
transport) alone, so any failing case can be rebuilt from its number
(``python -m bench.fuzz_handle --replay N``). A case is the bytes the fuzzer sends: the
datagrams of one message over UDP (one, or the parts of a long one), or the pieces of a TCP
stream written one after the other (one message or several, cut anywhere, maybe stopping
half-way). Messages are built with the project's own encoder (``protocol.wire``) from a
well-formed request of some op code (the codec's, and unknown ones such as the SDKs' 2000
and 2001), then, most of the time, mutated: envelope and header fields set to edge values,
bits flipped, bytes cut, added or replaced, length and count fields inside the body set to
huge, negative or off-by-one values, handles and types made of bad UTF-8, credential
sections of garbage, value data whose own inner lengths lie.

An administrative request is answered with a challenge (402); how the fuzzer answers that
is part of the case too (``Case.answer``: the right MAC, a wrong key, an identity the node
does not hold, a garbled answer, or none), and ``Generator.answers`` builds the answer from
the case and the challenge the node sent: a function of (seed, n, the challenge).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from bench.fuzzwire_handle import INT32_EDGES, UNKNOWN_OPS, VERSIONS, Mutator, pack
from protocol import valuedata as vd
from protocol.records import HandleValue
from protocol.wire.auth import MacKind, client_secret_kind, pbkdf2_mac, secret_answer
from protocol.wire.bodies import KEY_EXCHANGE_DH
from protocol.wire.message import (
    ENVELOPE_SIZE,
    MAX_HANDLE,
    MAX_UDP_PACKET,
    AddValueRequest,
    Body,
    ChallengeAnswerRequest,
    ChallengeResponse,
    CreateHandleRequest,
    DeleteHandleRequest,
    Envelope,
    ErrorResponse,
    GenericRequest,
    ListHandlesRequest,
    ListPrefixesRequest,
    Message,
    ModifyValueRequest,
    OpCode,
    OpFlag,
    RemoveValueRequest,
    ResolutionRequest,
    ResolutionResponse,
    SessionExchangeKeyRequest,
    SessionSetupRequest,
    VerifyAuthRequest,
    decode_message,
    encode_message,
    split_datagrams,
)
from protocol.wire.session import KNOWN_GROUPS, DhPublic, encode_dh_public

MAX_INDEX = 2**31 - 1
KEEP_ALIVE = int(OpFlag.KEEP_ALIVE)
MAX_DATAGRAM = 65_000  # longer cannot go as one UDP datagram
# fmt: off
TYPES = ("URL", "EMAIL", "HS_ADMIN", "HS_VLIST", "HS_SITE", "HS_SERV", "HS_ALIAS", "HS_PUBKEY", "HS_SECKEY",
         "HS_SIGNATURE", "productName", "batchNo", "", "x" * 129, "类型", "URL.", "hs_admin", "\x00")
# fmt: on


@dataclass(frozen=True)
class Identity:
    """An identity the node holds: ``index:handle`` and the key its HS_SECKEY answers are MACed with."""

    handle: str
    index: int
    key: bytes


@dataclass(frozen=True)
class World:
    """What the node under test holds, so that some requests reach past validation."""

    admin: Identity  # the node admin
    enterprise: Identity  # an enterprise prefix's admin
    enterprise_prefix: str = "88.118.5"
    node_prefix: str = "88.118"
    handles: tuple[str, ...] = ()  # records that exist, to resolve
    writable: tuple[str, ...] = ()  # records an authenticated write may change (no identity's)


@dataclass
class Case:
    n: int
    transport: str  # "udp" or "tcp"
    kind: str  # the op (or the stream shape) it was built from
    units: list[bytes] = field(default_factory=list)  # UDP: datagrams; TCP: pieces written in turn
    mutations: list[str] = field(default_factory=list)
    answer: str = "none"  # how to answer a challenge: right, wrong_key, stranger, garbled, none
    identity: Identity | None = None  # whose key the right answer uses

    def stream(self) -> bytes:
        return b"".join(self.units)

    def describe(self, limit: int = 4096) -> dict[str, object]:
        """The case for a failure report: its shape and its bytes in hex (cut to ``limit`` each)."""
        return {
            "n": self.n,
            "transport": self.transport,
            "kind": self.kind,
            "mutations": self.mutations,
            "answer": self.answer,
            "units": [u[:limit].hex() + ("" if len(u) <= limit else f"...({len(u)} bytes)") for u in self.units],
        }


# The generator -------------------------------------------------------------------------------


class Generator:
    """Handle messages for a node holding ``world``; case ``n`` of ``seed`` is always the same."""

    def __init__(self, seed: int, world: World) -> None:
        self.seed = seed
        self.world = world
        self.r = random.Random()
        self.clean = False  # this case's message is well-formed, so that it reaches the op itself
        self._ops: list[tuple[Callable[[], Request], int]] = [
            (self._resolution, 30),
            (self._site_info, 3),
            (self._create, 8),
            (self._delete, 3),
            (self._add_value, 4),
            (self._remove_value, 3),
            (self._modify_value, 4),
            (self._list_handles, 4),
            (self._prefixes, 3),
            (self._challenge_answer, 3),
            (self._verify, 3),
            (self._session_setup, 2),
            (self._session_end, 2),
            (self._exchange_key, 1),
            (self._unserved, 2),
            (self._response_as_request, 2),
        ]

    # Cases ------------------------------------------------------------------------------

    def case(self, n: int, transport: str) -> Case:
        self.r.seed(f"{self.seed}:{transport}:{n}")
        self.clean = self.chance(0.3)
        case = Case(n, transport, "")
        if transport == "udp":
            self._udp_case(case)
        else:
            self._tcp_case(case)
        if self.chance(0.98):  # else the challenge is left to expire
            case.answer = self.r.choices(["right", "wrong_key", "stranger", "garbled"], [55, 20, 10, 15])[0]
        case.identity = self.r.choice([self.world.admin, self.world.enterprise])
        return case

    def _udp_case(self, case: Case) -> None:
        data, kind, mutations = self.message()
        case.kind, case.mutations = kind, mutations
        if len(data) > MAX_DATAGRAM or (len(data) > MAX_UDP_PACKET and (self.clean or self.chance(0.8))):
            case.units = self._parts(data, case)
        else:
            case.units = [data]  # one datagram, however long

    def _parts(self, data: bytes, case: Case) -> list[bytes]:
        """A long message in datagrams, as CNRI's client splits it; sometimes lost, repeated, reordered or lying."""
        r = self.r
        envelope = Envelope(
            request_id=int.from_bytes(data[8:12], "big", signed=True),
            session_id=int.from_bytes(data[4:8], "big", signed=True),
            version=(data[0], data[1]),
            suggest=(data[2] & 0x03 or data[0], data[3]) if data[0] <= 3 else (2, 11),
        )
        parts = split_datagrams(envelope, data[ENVELOPE_SIZE:])
        case.mutations.append(f"{len(parts)} datagrams")
        if self.clean or self.chance(0.5):
            return parts
        pick = r.random()
        if pick < 0.2:
            del parts[r.randrange(len(parts))]
            case.mutations.append("a part lost")
        elif pick < 0.4:
            parts.insert(r.randrange(len(parts) + 1), r.choice(parts))
            case.mutations.append("a part sent twice")
        elif pick < 0.6:
            r.shuffle(parts)
            case.mutations.append("parts shuffled")
        else:
            at = r.randrange(len(parts))
            part = bytearray(parts[at])
            field_at = r.choice((12, 16, 8))
            part[field_at : field_at + 4] = (r.choice(INT32_EDGES) & 0xFFFFFFFF).to_bytes(4, "big")
            if r.random() < 0.3:
                del part[r.randrange(ENVELOPE_SIZE, len(part) + 1) :]
            parts[at] = bytes(part)
            case.mutations.append(f"part {at}'s envelope field at {field_at} changed")
        return parts

    def _tcp_case(self, case: Case) -> None:
        r = self.r
        count = r.choices([1, 2, 3, 5], [70, 15, 10, 5])[0]
        messages = []
        for i in range(count):
            data, kind, mutations = self.message()
            if i < count - 1 and len(data) > ENVELOPE_SIZE + 8 and self.chance(0.85):
                kept = bytearray(data)
                kept[ENVELOPE_SIZE + 8] |= KEEP_ALIVE >> 24  # more follows: keep the connection
                data = bytes(kept)
            messages.append(data)
            case.kind = kind if count == 1 else f"{count} messages"
            case.mutations += [f"#{i}: {m}" for m in mutations]
        stream = b"".join(messages) or b"\x02"  # a byte at least: a connection that sent nothing is owed nothing
        if self.chance(0.03) and len(stream) > 1:
            stream = stream[: r.randrange(1, len(stream))]
            case.mutations.append(f"stream stops after {len(stream)} bytes")
        if self.chance(0.001):
            stream += self._huge()
            case.mutations.append("a message of 256 KiB follows")
        if self.chance(0.25) and len(stream) > 1:
            cuts = sorted(r.sample(range(1, len(stream)), min(len(stream) - 1, r.choice((1, 2, 5)))))
            case.units = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
            case.mutations.append(f"written in {len(case.units)} pieces")
        else:
            case.units = [stream]

    def _huge(self) -> bytes:
        values = tuple(HandleValue(i, "URL", b"u" * 1000) for i in range(1, 250))
        body = CreateHandleRequest(f"{self.world.enterprise_prefix}/HUGE", values)
        return self.encode(OpCode.CREATE_HANDLE, body, int(OpFlag.KEEP_ALIVE))

    # One message ---------------------------------------------------------------------------

    def message(self) -> tuple[bytes, str, list[str]]:
        """A request of some op code, encoded, and mutated unless the case is clean."""
        r = self.r
        op_maker = r.choices([f for f, _ in self._ops], [w for _, w in self._ops])[0]
        request = op_maker()
        kind = op_maker.__name__.strip("_")
        data = self.encode(request.op, request.body, request.flags, rc=request.rc)
        if self.clean or self.chance(0.3):
            return data, kind, []
        mutator = Mutator(r, data)
        data = mutator.apply()
        return data, kind, mutator.done

    def encode(self, op: int, body: Body, flags: int, *, session_id: int | None = None, rc: int = 0) -> bytes:
        r = self.r
        version = r.choice(VERSIONS[:2]) if self.chance(0.6) else r.choice(VERSIONS)
        envelope = Envelope(
            request_id=r.randrange(1, 2**31) if self.chance(0.95) else r.choice((0, -1, 2**31 - 1, -(2**31))),
            session_id=(0 if self.chance(0.9) else r.randrange(1, 2**31)) if session_id is None else session_id,
            version=version,
            suggest=version if self.chance(0.9) else r.choice(VERSIONS),
        )
        known = op if op in OpCode._value2member_map_ else OpCode.RESOLUTION
        message = Message(
            OpCode(known),
            body,
            response_code=rc,
            envelope=envelope,
            flags=OpFlag(flags & 0xFFFFFFFF),
            recursion_count=0 if self.chance(0.95) else r.choice((1, 7, 8, 200)),
            credential=b"" if self.chance(0.95) else bytes(r.getrandbits(8) for _ in range(r.choice((4, 60)))),
        )
        data = encode_message(message)
        if known != op:  # an op code the codec does not know: written into the header as it is
            data = data[:ENVELOPE_SIZE] + (op & 0xFFFFFFFF).to_bytes(4, "big") + data[ENVELOPE_SIZE + 4 :]
        return data

    def flags(self, *extra: int) -> int:
        """CNRI's default request flags, now and then with others."""
        r = self.r
        flags = int(OpFlag.RECURSIVE | OpFlag.CACHE_CERTIFY | OpFlag.PUBLIC_ONLY)
        if self.chance(0.2):
            flags |= r.choice(
                (
                    int(OpFlag.CERTIFY),
                    int(OpFlag.RETURN_REQUEST_DIGEST),
                    int(OpFlag.AUTHORITATIVE),
                    *extra,
                    *extra,
                    int(OpFlag.DO_NOT_REFER),
                    int(OpFlag.CONTINUOUS),
                )
            )
        if self.chance(0.1):
            flags &= ~int(OpFlag.RECURSIVE)
        return flags

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    # Handles and values --------------------------------------------------------------------

    def handle(self, *, for_write: bool = False) -> str:
        r, w = self.r, self.world
        pick = r.random() * (0.7 if self.clean else 1.0)
        if pick < 0.4:
            pool = w.writable if for_write else w.handles
            if pool:
                return r.choice(pool)
        if pick < 0.65:
            return (
                f"{w.enterprise_prefix}/W{r.randrange(300)}"
                if for_write
                else f"{w.enterprise_prefix}/F{r.randrange(10**6)}"
            )
        if pick < 0.7:
            return r.choice(
                (
                    w.node_prefix,
                    f"0.NA/{w.enterprise_prefix}.{r.randrange(50)}",
                    "0.NA/88",
                    "86.100/x",
                    f"{w.enterprise_prefix}.9/x",
                    f"{w.enterprise_prefix}.{r.randrange(50)}/x",  # under prefix handles the fuzzer may create
                    f"{w.node_prefix}/N{r.randrange(100)}",
                    "20.500.1/a",
                )
            )
        return r.choice(
            (
                "",
                "/",
                "0.NA/",
                "0.NA",
                f"{w.enterprise_prefix}/",
                f"{w.enterprise_prefix}//x",
                f"{w.enterprise_prefix}/{'S' * r.choice((200, MAX_HANDLE - 9, MAX_HANDLE))}",
                f"{w.enterprise_prefix}/产品-🚀",
                f"{w.enterprise_prefix}/a\x00b",
                f"{w.enterprise_prefix}/a b",
                f"{'8' * 300}/x",
                f"{w.node_prefix}..5/x",
                f".{w.node_prefix}/x",
                f"0.na/{w.enterprise_prefix}" + (".77" if for_write else ""),  # never an identity's to write
                f"{w.enterprise_prefix}/\t\r\n",
                f"{w.enterprise_prefix}/" + "x" * 5000,
            )
        )

    def value(self) -> HandleValue:
        r = self.r
        if self.clean or self.chance(0.5):
            vtype, data = r.choice(
                (("URL", b"https://example.com/p"), ("EMAIL", b"a@example.com"), ("batchNo", b"B-1"))
            )
            return HandleValue(r.choice((1, 2, 3, 4, 5, 6)), vtype, data)
        vtype = r.choice(TYPES)
        if vtype == "HS_SECKEY" and not self.chance(0.05):
            vtype = "EMAIL"  # every new secret is hashed at a cost the node pays on purpose: keep them few
        data = self.data(vtype)
        if self.chance(0.3):
            data = self.mangle(data)
        return HandleValue(
            index=r.choice((1, 2, 3, 100, 200, 300, 1001, 2000, MAX_INDEX, 0, -1, r.randrange(1, 10**6))),
            type=vtype,
            data=data,
            ttl=r.choice((86400, 0, 1, 2**31 - 1, 3600)) if self.chance(0.9) else r.choice((2**32 - 1, 2**31)),
            ttl_absolute=self.chance(0.1),
            timestamp=0 if self.chance(0.8) else r.choice((1, 2**31 - 1, 4_000_000_000)),
            permissions=r.choice((0b1110, 0b1111, 0b1100, 0b0010, 0, 0b0001)),
            references=tuple((r.choice((1, -1, 0)), self.handle()) for _ in range(r.choice((0, 0, 0, 1, 3)))),
        )

    def data(self, vtype: str) -> bytes:
        r, w = self.r, self.world
        if vtype == "HS_ADMIN":
            ref = vd.AdminRef(
                r.choice((f"0.NA/{w.enterprise_prefix}", "0.NA/88.118", "", "x")),
                r.choice((300, 200, 0)),
                r.getrandbits(12),
            )
            return vd.encode_admin(ref)
        if vtype == "HS_VLIST":
            return vd.encode_vlist([(f"0.NA/{w.enterprise_prefix}", 300)] * r.choice((0, 1, 3)))
        if vtype in ("HS_SERV", "HS_ALIAS"):  # a handle to follow: a service handle, an alias's target
            return r.choice((f"0.NA/{w.enterprise_prefix}.9", f"0.NA/{w.node_prefix}", self.handle())).encode()
        if vtype == "HS_SITE" and self.chance(0.9):
            port = r.choice((1, 2641, 70000 & 0xFFFF))
            interface = vd.Interface(r.choice(("TCP", "UDP", "HTTP")), port)
            server = vd.Server(r.choice((1, 2**32 - 1)), r.choice(("127.0.0.1", "::1")), b"", (interface,))
            attributes = (("desc", "primary"),) if self.chance(0.3) else ()
            return vd.encode_site(vd.Site((server,) * r.choice((0, 1, 2)), attributes=attributes))
        if vtype in ("HS_PUBKEY", "HS_SIGNATURE"):
            return pack(b"DSA_PUB_KEY") + b"\0\0" + pack(b"\x01", b"\x02", b"\x03", b"\x04")
        if vtype == "HS_SECKEY":
            return r.choice((b"a-new-secret", b"0" * 40))
        return r.choice(
            (b"https://example.com/", b"", "中文".encode(), b"\xff\xfe", b"x" * r.choice((10, 1000, 1000, 20000)))
        )

    def mangle(self, data: bytes) -> bytes:
        """Value data whose own structure lies: cut, lengthened, or with an inner length or count set wrong."""
        r = self.r
        pick = r.random()
        if pick < 0.3 and data:
            return data[: r.randrange(len(data))]
        if pick < 0.5:
            return data + r.choice((b"\x00", b"\xff\xff\xff\xff", bytes(9)))
        spots = [i for i in range(max(0, len(data) - 3)) if int.from_bytes(data[i : i + 4], "big") <= 4096]
        if not spots:
            return bytes(r.getrandbits(8) for _ in range(r.choice((1, 4, 30))))
        at = r.choice(spots)
        value = r.choice((2**31 - 1, 2**32 - 1, int.from_bytes(data[at : at + 4], "big") + 1, 65536))
        return data[:at] + value.to_bytes(4, "big") + data[at + 4 :]

    def values(self) -> tuple[HandleValue, ...]:
        return tuple(self.value() for _ in range(self.r.choice((1, 1, 2, 3, 6, 0))))

    def indexes(self) -> tuple[int, ...]:
        return self.r.choice(((), (), (1,), (1, 2, 300), (100,), (-1, 0, MAX_INDEX), tuple(range(1, 40))))

    # Op codes: each gives (op code, body, flags) ---------------------------------------------------

    def _resolution(self) -> Request:
        r = self.r
        types = r.choice(
            (
                (),
                (),
                (),
                ("URL",),
                ("HS_ADMIN",),
                ("HS_SITE", "HS_SERV"),
                ("URL.",),
                ("",),
                tuple(f"T{n}" for n in range(60)),
                ("\x00",),
            )
        )
        indexes = self.indexes() if self.chance(0.3) else ()
        return Request(OpCode.RESOLUTION, ResolutionRequest(self.handle(), indexes, types), self.flags())

    def _site_info(self) -> Request:
        return Request(OpCode.GET_SITE_INFO, GenericRequest(self.r.choice(("/", "", "0.NA/88.118", "x"))), self.flags())

    def _create(self) -> Request:
        r = self.r
        handle = self.handle(for_write=True)
        flags = self.flags(int(OpFlag.OVERWRITE), int(OpFlag.MINT_NEW_SUFFIX))
        if self.chance(0.1):
            flags |= int(OpFlag.MINT_NEW_SUFFIX)
            handle = r.choice((f"{self.world.enterprise_prefix}/", f"{self.world.enterprise_prefix}/M-"))
        return Request(OpCode.CREATE_HANDLE, CreateHandleRequest(handle, self.values()), flags)

    def _delete(self) -> Request:
        handle = self.handle(for_write=True)
        if self.clean or handle in self.world.writable:  # the records stay, for resolutions to find
            handle = f"{self.world.enterprise_prefix}/W{self.r.randrange(300)}"
        return Request(OpCode.DELETE_HANDLE, DeleteHandleRequest(handle), self.flags())

    def _add_value(self) -> Request:
        return Request(OpCode.ADD_VALUE, AddValueRequest(self.handle(for_write=True), self.values()), self.flags())

    def _modify_value(self) -> Request:
        return Request(
            OpCode.MODIFY_VALUE, ModifyValueRequest(self.handle(for_write=True), self.values()), self.flags()
        )

    def _remove_value(self) -> Request:
        body = RemoveValueRequest(self.handle(for_write=True), self.indexes() or (2,))
        return Request(OpCode.REMOVE_VALUE, body, self.flags())

    def _list_handles(self) -> Request:
        w = self.world
        prefix = self.r.choice(
            (
                f"0.NA/{w.enterprise_prefix}",
                f"0.NA/{w.node_prefix}",
                w.enterprise_prefix,
                "0.NA/99",
                "0.NA/",
                "x/y",
                f"0.NA/{w.enterprise_prefix}.9",
                "",
            )
        )
        return Request(OpCode.LIST_HANDLES, ListHandlesRequest(prefix), self.flags())

    def _prefixes(self) -> Request:
        r = self.r
        op = r.choice((OpCode.LIST_HOMED_PREFIXES, OpCode.HOME_PREFIX, OpCode.UNHOME_PREFIX))
        target = r.choice(("/", f"0.NA/{self.world.enterprise_prefix}", "0.NA/99.1", "0.NA/88.118", ""))
        body: Body = ListPrefixesRequest(target) if op == OpCode.LIST_HOMED_PREFIXES else GenericRequest(target)
        return Request(op, body, self.flags())

    def _challenge_answer(self) -> Request:
        """An answer to no challenge (a session id the node never gave, or none)."""
        r = self.r
        identity = r.choice((self.world.admin, self.world.enterprise))
        signed = r.choice((b"", b"\x02" + bytes(20), b"\x22" + bytes(40), bytes(r.getrandbits(8) for _ in range(33))))
        body = ChallengeAnswerRequest(
            r.choice(("HS_SECKEY", "HS_PUBKEY", "", "X")), identity.handle, identity.index, signed
        )
        return Request(OpCode.CHALLENGE_RESPONSE, body, self.flags())

    def _verify(self) -> Request:
        r = self.r
        identity = r.choice((self.world.admin, self.world.enterprise))
        nonce, digest = r.randbytes(16), r.randbytes(r.choice((16, 20, 32)))
        kind = r.choice((MacKind.SHA1, MacKind.MD5, MacKind.HMAC_SHA256, MacKind.SHA256))
        signed = secret_answer(kind, identity.key, nonce, digest) if self.chance(0.5) else r.randbytes(21)
        index = identity.index if self.chance(0.8) else r.choice((0, -1, 301))
        algorithm = {16: 1, 20: 2, 32: 3}[len(digest)] if self.chance(0.3) else 0  # CNRI writes 0 (length-prefixed)
        body = VerifyAuthRequest(r.choice((identity.handle, "0.NA/99", "")), index, nonce, digest, signed, algorithm)
        return Request(OpCode.VERIFY_RESPONSE, body, self.flags())

    def _session_setup(self) -> Request:
        r = self.r
        group = KNOWN_GROUPS[0] if self.chance(0.8) else r.choice(KNOWN_GROUPS)
        y = pow(group.g, r.getrandbits(160) | 1 << 159, group.p)
        public = DhPublic(y, group.p, group.g)
        if not self.clean and self.chance(0.4):
            public = r.choice(
                (
                    DhPublic(1, group.p, group.g),
                    DhPublic(group.p - 1, group.p, group.g),
                    DhPublic(5, 23, 2),
                    DhPublic(y, group.p, 5),
                    DhPublic(0, 0, 0),
                )
            )
        key = encode_dh_public(public) if self.chance(0.9) else r.randbytes(r.choice((0, 12, 200)))
        mode = KEY_EXCHANGE_DH if self.clean or self.chance(0.8) else r.choice((0, 1, 2, 3, 5, 65535))
        identity = r.choice((self.world.admin, self.world.enterprise))
        timeout = r.choice((86400, 60, 0, -1, 2**31 - 1))
        body = SessionSetupRequest(mode, timeout, identity.handle, identity.index, key, "0.NA/88.118", 300)
        return Request(OpCode.SESSION_SETUP, body, self.flags() | (int(OpFlag.CERTIFY) if self.chance(0.5) else 0))

    def _session_end(self) -> Request:
        return Request(OpCode.SESSION_TERMINATE, GenericRequest(""), self.flags())

    def _exchange_key(self) -> Request:
        key = None if self.chance(0.3) else self.r.randbytes(self.r.choice((0, 8, 128)))
        return Request(OpCode.SESSION_EXCHANGE_KEY, SessionExchangeKeyRequest(key), self.flags())

    def _unserved(self) -> Request:
        """Op codes the codec knows no request body for, and ones it does not know (the SDKs' 2000, 2001)."""
        r = self.r
        op = r.choice((*UNKNOWN_OPS, 1000, 1001, 1002, 1003, 0))
        identity = r.choice((self.world.admin, self.world.enterprise))
        if op == 2001:  # the ID-SDK's login: identity handle and index
            return Request(op, _Raw(pack(identity.handle.encode()) + struct.pack(">i", identity.index)), self.flags())
        if op == 2000:  # its user name and password login
            return Request(op, _Raw(pack(b"admin", b"password")), self.flags())
        return Request(op, GenericRequest(self.handle()), self.flags())

    def _response_as_request(self) -> Request:
        """Bytes of a response where a request belongs (encoded as one, response code set)."""
        r = self.r
        pick = r.random()
        if pick < 0.4:
            values = (HandleValue(1, "URL", b"https://example.com/"),)
            return Request(OpCode.RESOLUTION, ResolutionResponse(self.handle(), values), self.flags(), rc=1)
        if pick < 0.7:
            return Request(r.choice(list(OpCode)), ErrorResponse("an error"), self.flags(), rc=r.choice((2, 100, 403)))
        return Request(OpCode.CREATE_HANDLE, ChallengeResponse(r.randbytes(16)), self.flags(), rc=402)

    # Answers to challenges -------------------------------------------------------------------

    def answers(self, case: Case, challenge: bytes, nth: int) -> list[bytes]:
        """What to send back to the ``nth`` challenge (an encoded 402) a case met: its answer,
        and after a garbled one a wrong answer on the same session, so the challenge does not stay."""
        r = random.Random(f"{self.seed}:{case.transport}:{case.n}:answer:{nth}")
        message = decode_message(challenge)
        assert isinstance(message.body, ChallengeResponse) and message.request_digest is not None
        identity = case.identity or self.world.admin
        nonce, digest = message.body.nonce, message.request_digest.digest
        session = message.envelope.session_id
        how = case.answer if nth == 0 else r.choice(("right", "wrong_key"))
        if how == "right":
            mac = self._right_mac(r, message, identity, nonce, digest)
            return [self._answer(r, identity, mac, session)]
        if how == "stranger":
            stranger = Identity(r.choice(("0.NA/99.1", f"0.NA/{self.world.enterprise_prefix}", "")), 300, b"k")
            return [self._answer(r, replace(stranger, index=r.choice((300, 1, -1))), r.randbytes(21), session)]
        wrong = self._answer(r, identity, secret_answer(MacKind.SHA1, b"not-the-key", nonce, digest), session)
        if how == "wrong_key":
            return [wrong]
        mutator = Mutator(r, self._answer(r, identity, r.randbytes(21), session))
        return [mutator.apply() or b"\x02", wrong]  # a byte at least: an empty connection is owed nothing

    def in_session(self, case: Case, setup: bytes, nth: int) -> list[bytes]:
        """Requests in the session a SESSION_SETUP answer (``setup``, encoded) opened: a request of
        any op code with the session's id (maybe certified, so that its answer is MACed with the
        session key), maybe sent twice (a retry: the same challenge again), maybe the session's end."""
        session = int.from_bytes(setup[4:8], "big", signed=True)
        saved, self.r = self.r, random.Random(f"{self.seed}:{case.transport}:{case.n}:session:{nth}")
        try:
            data = bytearray(self.message()[0])
            if len(data) >= 8:
                data[4:8] = (session & 0xFFFFFFFF).to_bytes(4, "big")
            if len(data) >= ENVELOPE_SIZE + 12 and self.chance(0.5):
                data[ENVELOPE_SIZE + 8] |= int(OpFlag.CERTIFY) >> 24
            sent = [bytes(data)] * (2 if self.chance(0.3) else 1)
            if self.chance(0.5):
                end = self.encode(OpCode.SESSION_TERMINATE, GenericRequest(""), self.flags(), session_id=session)
                sent.append(end)
            return sent
        finally:
            self.r = saved

    def _right_mac(self, r: random.Random, message: Message, identity: Identity, nonce: bytes, digest: bytes) -> bytes:
        kind = client_secret_kind(message.version, message.envelope.suggest)
        if kind == MacKind.PBKDF2_HMAC_SHA1:
            if r.random() < 0.8:  # as CNRI's client, but cheaper: the cost is the client's to choose
                return bytes([kind]) + pbkdf2_mac(
                    identity.key, nonce + digest, r.randbytes(16), r.choice((1, 1000)), 160
                )
            kind = r.choice((MacKind.HMAC_SHA256, MacKind.SHA1, MacKind.HMAC_SHA1))
        return secret_answer(kind, identity.key, nonce, digest)

    def _answer(self, r: random.Random, identity: Identity, mac: bytes, session: int) -> bytes:
        body = ChallengeAnswerRequest("HS_SECKEY", identity.handle, identity.index, mac)
        envelope = Envelope(request_id=r.randrange(1, 2**31), session_id=session, version=(2, 10), suggest=(2, 10))
        flags = OpFlag.RECURSIVE | OpFlag.CACHE_CERTIFY | OpFlag.PUBLIC_ONLY
        return encode_message(Message(OpCode.CHALLENGE_RESPONSE, body, envelope=envelope, flags=flags))


@dataclass(frozen=True)
class Request:
    """A request before encoding: op code (maybe one the codec does not know), body, flags, and a
    response code that is 0 but where a response is sent in a request's place."""

    op: int
    body: Body
    flags: int
    rc: int = 0


@dataclass(frozen=True, slots=True)
class _Raw(Body):
    """A body given as its bytes (for op codes the codec has no body for)."""

    data: bytes

    def encode(self, version: tuple[int, int]) -> bytes:
        return self.data
