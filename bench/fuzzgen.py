"""Generated HTTP requests for fuzzing a node: the route table, the value grammar, mutations.

Pure: no I/O. ``Generator(seed, world).case(n)`` is a function of (seed, n) alone, so any
failing case can be rebuilt from its number (``python -m bench.fuzz_http --replay N``).
A ``Case`` is the bytes of one HTTP/1.1 request; a ``malformed`` one carries bytes an HTTP
parser may refuse before any route sees them (raw control or non-ASCII bytes in the request
line or a header, broken framing), and so may fairly be answered by a closed connection.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import msgpack

from bench.fuzzdata import (
    ACCEPTS,
    CONTENT_TYPES,
    JUNK_STRINGS,
    JUNK_VALUES,
    MALFORMED,
    ODD_METHODS,
    PERMISSION_BITS,
    QUERY_NAMES,
    QUERY_VALUES,
    ROUTE_METHODS,
    TYPES,
)

MAX_INDEX = 2**31 - 1
PLAIN_PATH_BYTES = frozenset(range(0x21, 0x7F))


@dataclass(frozen=True)
class World:
    """What the node under test holds, so that some requests reach past validation."""

    admin: tuple[str, str]  # the node admin's identity and secret
    enterprise: tuple[str, str]  # an enterprise prefix admin's identity and secret
    enterprise_prefix: str = "88.118.5"
    node_prefix: str = "88.118"
    handles: tuple[str, ...] = ()  # records that exist
    port: int = 1  # the node's own port (HS_SITE values naming it)


@dataclass
class Case:
    n: int
    kind: str
    method: bytes = b"GET"
    target: bytes = b"/"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    raw: bytes | None = None  # the whole request as sent, when the framing itself is the test
    malformed: bool = False

    def wire(self) -> bytes:
        if self.raw is not None:
            return self.raw
        names = {k.lower() for k, _ in self.headers}
        lines = [self.method + b" " + self.target + b" HTTP/1.1"]
        if b"host" not in names:
            lines.append(b"Host: 127.0.0.1")
        lines += [k + b": " + v for k, v in self.headers]
        framed = b"content-length" in names or b"transfer-encoding" in names
        if not framed and (self.body or self.method in (b"PUT", b"POST")):
            lines.append(b"Content-Length: " + str(len(self.body)).encode())
        return b"\r\n".join(lines) + b"\r\n\r\n" + self.body

    def describe(self, limit: int = 4000) -> str:
        """The request for a failure report: its bytes, cut to ``limit`` (with the full length)."""
        wire = self.wire()
        shown = wire[:limit].decode("utf-8", "backslashreplace")
        return shown if len(wire) <= limit else f"{shown}... ({len(wire)} bytes in all)"


# Building blocks ---------------------------------------------------------------------------


def basic(user: str, secret: str, *, escape: bool = True) -> bytes:
    name = quote(user, safe="/").replace(":", "%3A") if escape else user
    return b"Basic " + base64.b64encode(f"{name}:{secret}".encode("utf-8", "surrogatepass"))


class Generator:
    """Requests for a node holding ``world``; case ``n`` of seed ``seed`` is always the same."""

    def __init__(self, seed: int, world: World) -> None:
        self.seed = seed
        self.world = world
        self.r = random.Random()
        self.clean = False  # this case is well-formed throughout, so that it reaches past validation
        self._families: list[tuple[Callable[[Case], None], int]] = [
            (self._resolve, 22),
            (self._put, 16),
            (self._delete, 5),
            (self._list, 5),
            (self._batch, 12),
            (self._templates, 8),
            (self._oversight, 8),
            (self._proxy, 8),
            (self._odd_method, 5),
            (self._malformed, 6),
            (self._unknown, 3),
        ]

    def case(self, n: int) -> Case:
        self.r.seed(f"{self.seed}:{n}")
        self.clean = self.chance(0.2)
        family = self.r.choices([f for f, _ in self._families], [w for _, w in self._families])[0]
        case = Case(n, family.__name__.strip("_"))
        family(case)
        if case.raw is None and any(b not in PLAIN_PATH_BYTES for b in case.target):
            case.malformed = True
        for name, value in case.headers:
            if any((b < 0x20 and b != 9) or b > 0x7E for b in name + value):
                case.malformed = True
        return case

    # Pieces ------------------------------------------------------------------------------

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def handle_text(self, *, for_write: bool = False) -> str:
        r, w = self.r, self.world
        pick = r.random() * (0.6 if self.clean else 1.0)
        if pick < 0.35 and w.handles:
            text = r.choice(w.handles)
        elif pick < 0.6:
            text = f"{w.enterprise_prefix}/F{r.randrange(10**6)}"
        elif pick < 0.7:
            text = r.choice(
                [
                    w.node_prefix,
                    f"0.NA/{w.node_prefix}",
                    f"0.NA/{w.enterprise_prefix}",
                    f"0.NA/{w.enterprise_prefix}.{r.randrange(100)}",
                    "0.NA/88",
                    "86.100/x",
                    "20.500.12345/abc",
                    f"{w.enterprise_prefix}.{r.randrange(100)}/x",
                ]
            )
        else:
            text = r.choice(
                [
                    "",
                    "/",
                    ".",
                    "..",
                    f"{w.enterprise_prefix}/",
                    f"{w.enterprise_prefix}//x",
                    f"{w.enterprise_prefix}/./x",
                    f"{w.enterprise_prefix}/../../etc/passwd",
                    f"{w.enterprise_prefix}/{'S' * r.choice([200, 2000, 20_000])}",
                    f"{w.enterprise_prefix}/产品-🚀",
                    f"{w.enterprise_prefix}/a b",
                    f"{w.enterprise_prefix}/a\x00b",
                    f"{w.enterprise_prefix}/a\tb\x7f",
                    f"{w.enterprise_prefix}/a?b#c",
                    f"{w.enterprise_prefix}/a%b",
                    f"{w.enterprise_prefix}/\\x",
                    f"{w.enterprise_prefix}/\ud800",
                    f"{'8' * 300}/x",
                    "0.NA/",
                    "0.NA",
                    f"{w.node_prefix}.",
                    f".{w.node_prefix}/x",
                    f"{w.node_prefix}..5/x",
                    "88.118.5.1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.25.26.27.28.29.30/x",
                ]
            )
        if for_write and text.upper().startswith("0.NA/") and self.chance(0.9):
            text = f"{w.enterprise_prefix}/W{r.randrange(1000)}"  # keep the identities the fuzzer uses
        return self.respell(text)

    def respell(self, text: str) -> str:
        r = self.r
        pick = 1.0 if self.clean else r.random()
        if pick < 0.08:
            return text.upper()
        if pick < 0.16:
            return text.lower()
        if pick < 0.2:
            return "".join(c.upper() if r.random() < 0.5 else c.lower() for c in text)
        if pick < 0.24 and text.startswith("0.NA/"):
            return r.choice(["0.na/", "0.Na/", "0.nA/", "0.NA//", "00.NA/"]) + text[5:]
        if pick < 0.27:
            return r.choice(["0", " ", "+", "-"]) + text
        return text

    def encode_path(self, text: str) -> bytes:
        """The path as it goes on the wire: quoted, over-quoted, raw, or with broken escapes."""
        r = self.r
        pick = 0.0 if self.clean else r.random()
        if pick < 0.6:
            return quote(text, safe="/:@!$&'()*+,;=", errors="surrogatepass").encode()
        if pick < 0.72:
            return quote(text, safe="", errors="surrogatepass").encode()
        if pick < 0.8:
            return "".join(f"%{b:02X}" for b in text.encode("utf-8", "surrogatepass")).encode()
        if pick < 0.88:
            raw = quote(text, safe="/", errors="surrogatepass")
            at = r.randrange(len(raw) + 1)
            return (
                raw[:at] + r.choice(["%ff%fe", "%00", "%zz", "%", "%2", "%252F", "%C0%AF", "%ED%A0%80"]) + raw[at:]
            ).encode()
        if pick < 0.95:
            return text.encode("utf-8", "surrogatepass")  # raw: spaces, NUL, UTF-8 as they are
        quoted = quote(text, safe="/", errors="surrogatepass").encode()
        at = r.randrange(len(quoted) + 1)
        return quoted[:at] + r.choice([b"\xff", b"\xc0\xaf", b"\x00", b" ", b"\x7f", b"\r"]) + quoted[at:]

    def query(self, names: list[str]) -> bytes:
        r = self.r
        if self.clean or self.chance(0.45):
            return b""
        if self.chance(0.05):
            return r.choice([b"?", b"??", b"?&&&", b"?=", b"?a=b=c", b"?;", b"?%", b"?index=%ff", b"?index=1&&index"])
        pairs = []
        for _ in range(r.choice([1, 1, 2, 3, 5, 40])):
            name = r.choice(names) if self.chance(0.8) else r.choice(QUERY_NAMES)
            value = r.choice(QUERY_VALUES)
            if name == "prefix" and self.chance(0.6):
                value = self.respell(r.choice([self.world.enterprise_prefix, self.world.node_prefix, "0.NA/88.118"]))
            pairs.append(
                quote(name, safe="")
                + ("" if self.chance(0.05) else "=" + quote(value, safe="", errors="surrogatepass"))
            )
        return ("?" + "&".join(pairs)).encode()

    def authorization(self, case: Case, *, writer: bool = False) -> None:
        r, w = self.r, self.world
        pick = r.random()
        if self.clean:
            if writer or pick < 0.3:
                user, secret = r.choice([w.admin, w.enterprise])
                case.headers.append((b"Authorization", basic(user, secret)))
            return
        if pick < (0.2 if writer else 0.55):
            return
        if pick < 0.75:
            user, secret = r.choice([w.admin, w.enterprise])
            if self.chance(0.15):
                user = r.choice([user.lower(), user.replace("0.NA", "0.na"), "0" + user, user.replace(":", "%3A")])
            value = basic(user, secret, escape=self.chance(0.7))
        elif pick < 0.77:
            value = basic(r.choice([w.admin, w.enterprise])[0], "wrong-secret")  # costs a full hash check
        elif pick < 0.85:
            value = basic(
                r.choice(["300:0.NA/88.118.77", "300:88.118.5/nobody", "0:0.NA/88.118", "x:y", ":", "300:"]), "s"
            )
        else:
            value = r.choice(
                [
                    b"Basic",
                    b"Basic ",
                    b"Basic !!!!",
                    b"Basic " + base64.b64encode(b"no-colon"),
                    b"Basic " + base64.b64encode(b"\xff\xfe:\xff"),
                    b"Basic " + base64.b64encode(b"300%3A0.NA%2F88.118:" + b"\x00"),
                    b"Basic " + base64.b64encode(("300:" + "9" * 5000 + ":x").encode()),
                    b"Bearer abc",
                    b"Digest username=x",
                    b"basic " + base64.b64encode(b"300:0.NA/88.118:x"),
                    b"Basic  " + base64.b64encode(b"a:b") + b"  ",
                    b"Basic " + base64.b64encode(b"a:b")[:-2],
                    b"Basic \xff\xfe",
                    b"\x00",
                    b"Basic " + b"A" * 6000,
                ]
            )
        case.headers.append((r.choice([b"Authorization", b"authorization", b"AUTHORIZATION"]), value))

    def extra_headers(self, case: Case, *, body: bool) -> None:
        r = self.r
        if self.clean:
            return
        if (body or self.chance(0.1)) and self.chance(0.9):
            case.headers.append((b"Content-Type", r.choice(CONTENT_TYPES)))
        if self.chance(0.2):
            case.headers.append((b"Accept", r.choice(ACCEPTS)))
        if self.chance(0.03):
            case.headers.append((b"Idnode-Via", b",".join([b"node-a"] * r.choice([1, 2, 64, 65, 500]))))
        if self.chance(0.02):
            case.headers.append((b"Expect", b"100-continue"))
        if self.chance(0.02):
            case.headers.append((b"Content-Encoding", r.choice([b"gzip", b"deflate", b"br", b"x-bogus"])))
        if self.chance(0.02):
            case.headers.append((b"X-Latin1", "caf\xe9".encode("latin-1")))
        if self.chance(0.01):
            case.headers.append((b"Cookie", b"a=" + b"b" * 7000))
        if self.chance(0.02):
            case.headers.append((b"Range", b"bytes=0-1"))

    # The value grammar ---------------------------------------------------------------------

    def handle_ref(self) -> str:
        return self.r.choice([*self.world.handles[:4], f"0.NA/{self.world.enterprise_prefix}", "88.118.5/x", "bad", ""])

    def data(self, vtype: str) -> Any:
        r = self.r
        fmt = r.choices(
            ["plain", "string", "base64", "hex", "admin", "vlist", "site", "key", "odd"], [30, 15, 8, 8, 12, 6, 6, 3, 4]
        )[0]
        if fmt == "plain":
            return r.choice(["https://example.com/p/1", "text", "", "中文", "x" * r.choice([10, 1000, 70_000])])
        if fmt == "string":
            return {"format": "string", "value": r.choice(["https://example.com/", "mail@example.com", ""])}
        if fmt == "base64":
            return {
                "format": "base64",
                "value": r.choice(["aGVsbG8=", "", "!!", "aGVsbG8", base64.b64encode(bytes(300)).decode()]),
            }
        if fmt == "hex":
            return {"format": "hex", "value": r.choice(["00ff", "", "0g", "abc", "AB" * 500])}
        if fmt == "key":
            return {"format": "key", "value": "AAAA"}
        if fmt == "admin":
            value = {
                "handle": self.handle_ref(),
                "index": r.choice([300, 200, 0, "300", -1]),
                "permissions": r.choice(PERMISSION_BITS),
            }
            return {"format": "admin", "value": value}
        if fmt == "vlist":
            return {
                "format": "vlist",
                "value": [
                    {"handle": self.handle_ref(), "index": r.choice([300, 200])} for _ in range(r.choice([0, 1, 3]))
                ],
            }
        if fmt == "site":
            return {"format": "site", "value": self.site()}
        return (
            {"format": r.choice(["rot13", "", "STRING", "hash"]), "value": "x"}
            if self.chance(0.7)
            else {"format": "string"}
        )

    def site(self) -> dict[str, Any]:
        r = self.r
        # Loopback only: a site naming any other address would send the node's traffic off this machine.
        address = r.choice(["127.0.0.1", "::1", "not-an-ip", "", "127.0.0.1.1"])
        interface = {
            "protocol": r.choice(["HTTP", "TCP", "udp", "FTP"]),
            "port": r.choice([1, self.world.port, 70000, -1]),
            "query": True,
        }
        server = {"serverId": r.choice([1, 2**32]), "address": address, "interfaces": [interface]}
        site: dict[str, Any] = {
            "servers": [server],
            "version": 1,
            "protocolVersion": r.choice(["2.10", "x", "2", "300.1"]),
        }
        if self.chance(0.3):
            site["attributes"] = [{"name": "desc", "value": r.choice(["primary", "\ud800"])}]
        if self.chance(0.2):
            site["hashOption"] = r.choice(["BY_ALL", "bogus", 7, 999])
        return site

    def value(self) -> dict[str, Any]:
        r = self.r
        if self.clean or self.chance(0.35):  # a valid value, so that whole records get past validation
            vtype, data = r.choice([("URL", "https://example.com/p"), ("EMAIL", "a@example.com"), ("batchNo", "B-1")])
            return {"index": r.choice([1, 2, 3, 4, 5, 6]), "type": vtype, "data": data}
        vtype = r.choice(TYPES) if self.chance(0.3) else "URL"
        if vtype == "HS_SECKEY" and not self.chance(0.05):
            vtype = "EMAIL"  # every new secret is hashed at a cost the node pays on purpose: keep them few
        v: dict[str, Any] = {
            "index": r.choice([1, 2, 3, 5, 100, 200, 300, 1001, 2000, MAX_INDEX, r.randrange(1, 10**6)]),
            "type": vtype,
            "data": self.data(vtype),
        }
        if self.chance(0.2):
            v["ttl"] = r.choice(
                [86400, "86400", "2030-01-01T00:00:00Z", "1960-01-01T00:00:00Z", -1, 2**40, 1.5, None, "abc"]
            )
        if self.chance(0.15):
            v["permissions"] = r.choice(["1110", "1111", "0010", "11", "abcd", 1110])
        if self.chance(0.1):
            v["references"] = [{"index": r.choice([1, -1, "1"]), "handle": self.handle_ref()}]
        if self.chance(0.05):
            v["timestamp"] = "2026-01-01T00:00:00Z"
        return v

    def values(self) -> Any:
        r = self.r
        items = [self.value() for _ in range(r.choice([1, 1, 2, 3, 6]))]
        shape = r.random()
        if shape < 0.7:
            return {"values": items}
        if shape < 0.9:
            return items
        return items[0]

    def batch_body(self) -> Any:
        r = self.r
        ops = []
        for _ in range(r.choice([1, 2, 5, 20, 100])):
            op = r.choice(["create", "create", "replace", "add_values", "delete", "mint", "update", ""])
            handle = f"{self.world.enterprise_prefix}/" if op == "mint" else self.handle_text(for_write=True)
            item: dict[str, Any] = {"op": op, "handle": handle}
            if op != "delete" or self.chance(0.1):
                item["values"] = self.values()
            ops.append(item)
        if self.chance(0.01):
            ops = [{"op": "delete", "handle": "88.118.5/none"}] * 2001
        return {"atomic": r.choice([True, False, False, "yes", None]), "operations": ops}

    def template_body(self) -> Any:
        r = self.r
        fields = []
        for n in range(r.choice([1, 2, 4, 0])):
            f: dict[str, Any] = {
                "index": r.choice([2000 + n, 1999, 1001, "2000", MAX_INDEX]),
                "type": r.choice(TYPES),
                "dataType": r.choice(["string", "integer", "number", "date", "datetime", "url", "enum", "bogus"]),
                "required": r.choice([True, False, "yes"]),
            }
            if self.chance(0.3):
                f["choices"] = r.choice([["a", "b"], [], [1], "a"])
            if self.chance(0.3):
                f["minLength"], f["maxLength"] = r.choice([(1, 10), (10, 1), (-1, 5), ("1", None)])
            fields.append(f)
        return {"version": r.choice(["1.0", "2.0", "", "x" * 70, 1.0, "a/b"]), "fields": fields}

    # Mutation and encoding -----------------------------------------------------------------

    def mutate(self, obj: Any) -> Any:
        """``obj`` with one node replaced, removed, duplicated or nested deep."""
        r = self.r
        spots: list[tuple[Any, Any]] = []

        def walk(node: Any, depth: int) -> None:
            if depth > 8 or len(spots) > 200:
                return
            items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
            for key, child in items:
                spots.append((node, key))
                walk(child, depth + 1)

        walk(obj, 0)
        if not spots:
            return r.choice(JUNK_VALUES)
        parent, key = r.choice(spots)
        action = r.random()
        if action < 0.55:
            parent[key] = r.choice(JUNK_VALUES)
        elif action < 0.7 and isinstance(parent, dict):
            del parent[key]
        elif action < 0.8:
            parent[key] = [parent[key]]
        elif action < 0.85:
            nested: Any = parent[key]
            for _ in range(r.choice([50, 200, 600])):
                nested = [nested]
            parent[key] = nested
        elif action < 0.9 and isinstance(parent, dict):
            parent[r.choice(["extra", "", "INDEX", "\x00"])] = r.choice(JUNK_VALUES)
        elif isinstance(parent[key], int) and not isinstance(parent[key], bool):
            parent[key] = r.choice([-parent[key], parent[key] + 2**32, -(2**63)])
        else:
            parent[key] = r.choice(JUNK_STRINGS)
        return obj

    def encode(self, case: Case, obj: Any) -> None:
        """Serialise ``obj`` as JSON or msgpack (the Content-Type mostly agreeing), maybe mangled."""
        r = self.r
        if not self.clean and self.chance(0.3):
            obj = self.mutate(obj)
        as_msgpack = self.chance(0.25)
        if as_msgpack:
            try:
                body = msgpack.packb(obj, use_bin_type=self.chance(0.8), unicode_errors="surrogatepass")
            except (ValueError, TypeError, OverflowError):
                body = b"\xc1"  # an unpackable object: send msgpack's one never-used byte
            declared = r.choice([b"application/msgpack", b"application/x-msgpack"])
        else:
            text = json.dumps(obj, ensure_ascii=self.chance(0.5), default=str)
            body = text.encode("utf-8", "surrogatepass")
            declared = b"application/json"
        if not self.clean and self.chance(0.12):
            body = self.mangle(body)
        case.body = body
        if self.clean or self.chance(0.85):
            case.headers.append((b"Content-Type", declared))
        else:
            case.headers.append((b"Content-Type", r.choice(CONTENT_TYPES)))

    def mangle(self, body: bytes) -> bytes:
        r = self.r
        at = r.randrange(len(body) + 1)
        pick = r.random()
        if pick < 0.2:
            return body[:at] + r.choice([b"\x00", b"\xff", b"\xed\xa0\x80", b"\xc0\x80", b"\xef\xbb\xbf"]) + body[at:]
        if pick < 0.35:
            return body[:at]
        if pick < 0.5:
            return body.replace(b'"index":', b'"index": 7, "index":', 1).replace(b'"op":', b'"op": "delete", "op":', 1)
        if pick < 0.6:
            return b"\xef\xbb\xbf" + body
        if pick < 0.7:
            return r.choice([b"[" * 100_000, b'{"a":' * 50_000, b"\x91" * 100_000, b"9" * 5000, b"1e99999", b"-"])
        if pick < 0.75:
            return body + b" " * (1024 * 1024 + 1)  # over the 1 MiB body limit
        if pick < 0.76:
            return b"[" + b"1," * (8 * 1024 * 1024) + b"1]"  # over the 16 MiB batch limit
        if pick < 0.9:
            return body + r.choice([b"garbage", b"}", b"\x00", b"\n\n{}"])
        return bytes(r.randrange(256) for _ in range(r.choice([1, 16, 300])))

    # Route families ------------------------------------------------------------------------

    def _target(self, case: Case, path: bytes, params: list[str]) -> None:
        case.target = path + self.query(params)

    def _resolve(self, case: Case) -> None:
        case.method = b"HEAD" if self.chance(0.05) else b"GET"
        path = b"/api/handles/" + self.encode_path(self.handle_text())
        self._target(case, path, ["index", "type", "publicOnly", "pretty", "auth"])
        self.authorization(case)
        self.extra_headers(case, body=False)

    def _put(self, case: Case) -> None:
        case.method = b"PUT"
        path = b"/api/handles/" + self.encode_path(self.handle_text(for_write=True))
        self._target(case, path, ["index", "overwrite", "mintNewSuffix", "pretty"])
        self.authorization(case, writer=True)
        self.encode(case, self.values())
        self.extra_headers(case, body=False)

    def _delete(self, case: Case) -> None:
        case.method = b"DELETE"
        path = b"/api/handles/" + self.encode_path(self.handle_text(for_write=True))
        self._target(case, path, ["index", "force"])
        self.authorization(case, writer=True)
        self.extra_headers(case, body=False)

    def _list(self, case: Case) -> None:
        self._target(case, self.r.choice([b"/api/handles", b"/api/handles/"]), ["prefix", "page", "pageSize", "prefix"])
        self.authorization(case)
        self.extra_headers(case, body=False)

    def _batch(self, case: Case) -> None:
        case.method = b"POST" if self.chance(0.95) else self.r.choice([b"PUT", b"GET"])
        self._target(case, b"/api/batch", ["atomic", "pretty"])
        self.authorization(case, writer=True)
        self.encode(case, self.batch_body())
        if self.chance(0.3):
            case.headers.append((b"Accept", self.r.choice(ACCEPTS)))

    def _templates(self, case: Case) -> None:
        r = self.r
        prefix = self.respell(
            r.choice([self.world.enterprise_prefix, self.world.node_prefix, "0.NA/88.118", "x", "88.118.5.9"])
        )
        name = r.choice(["tpl", "TPL", "t-1", "a" * 70, "", "..", "a b", "中", "tpl%2Fx"])
        path = "/api/templates/" + quote(prefix, safe="") + ("" if self.chance(0.2) else "/" + quote(name, safe="%"))
        case.method = r.choice([b"GET", b"GET", b"PUT", b"PUT", b"DELETE"])
        self._target(case, path.encode(), ["version", "pretty"])
        self.authorization(case, writer=case.method != b"GET")
        if case.method == b"PUT":
            self.encode(case, self.template_body())
        self.extra_headers(case, body=False)

    def _oversight(self, case: Case) -> None:
        path = self.r.choice([b"/api/prefixes", b"/api/stats", b"/api/audit", b"/healthz", b"/metrics", b"/api/stats/"])
        self._target(case, path, ["prefix", "since", "limit", "pretty"])
        self.authorization(case)
        self.extra_headers(case, body=False)

    def _proxy(self, case: Case) -> None:
        case.method = b"HEAD" if self.chance(0.05) else b"GET"
        self._target(case, b"/" + self.encode_path(self.handle_text()), ["noredirect", "index", "type", "auth"])
        self.extra_headers(case, body=False)

    def _odd_method(self, case: Case) -> None:
        r = self.r
        case.method = r.choice(ODD_METHODS + ROUTE_METHODS)
        path = r.choice(
            [
                b"/api/handles/" + self.encode_path(self.handle_text()),
                b"/api/batch",
                b"/api/prefixes",
                b"/healthz",
                b"/metrics",
                b"/api/templates/88.118.5/tpl",
                b"/",
                b"*",
            ]
        )
        self._target(case, path, ["index"])
        self.authorization(case)
        if self.chance(0.5):
            self.encode(case, self.values())

    def _unknown(self, case: Case) -> None:
        r = self.r
        path = r.choice(
            [
                b"/api",
                b"/api/",
                b"/api/handle",
                b"/API/handles/88.118",
                b"/api/handles88.118/x",
                b"/api/unknown/x",
                b"//api//handles//x",
                b"/api/%2e%2e/healthz",
                b"/api/templates",
                b"/api/templates/",
            ]
        )
        case.method = r.choice(ROUTE_METHODS)
        self._target(case, path, ["index"])
        self.authorization(case)

    def _malformed(self, case: Case) -> None:
        """Broken HTTP framing, sent as it is."""
        case.malformed = True
        case.raw = self.r.choice(MALFORMED)
        case.method = case.raw.split(b" ", 1)[0]
