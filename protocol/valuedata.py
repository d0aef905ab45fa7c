"""Binary layouts of structured value data (RFC 3651 §3.2): HS_ADMIN, HS_VLIST, HS_SITE.

Value data is stored as the bytes the Handle wire protocol carries, so the future binary
front-end serves them untouched; the JSON front-end converts through these codecs.
All integers are big-endian; strings are UTF-8 with a 4-byte length.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from functools import lru_cache

from protocol.errors import InvalidValue
from protocol.wire.base import Reader, WholeErrors, pack_blob, pack_text

# HS_ADMIN permission bits, bit 0 first, as handle.net reads and writes them (its Encoder's
# PERM_* masks and RFC 3651 §3.2.1): read_value is bit 10 (0x0400), after the admin bits.
ADMIN_PERMISSION_NAMES = (
    "add_handle",
    "delete_handle",
    "add_prefix",
    "delete_prefix",
    "modify_value",
    "remove_value",
    "add_value",
    "modify_admin",
    "remove_admin",
    "add_admin",
    "read_value",
    "list_handles",
)
ADMIN_PERMISSION_BITS = len(ADMIN_PERMISSION_NAMES)


def _refusals(kind: str) -> WholeErrors:
    # Whatever field is short, the value is refused naming its type: what the REST API answers.
    return WholeErrors(
        truncated=lambda r: InvalidValue(f"{kind} data is truncated"),
        not_utf8=lambda r: InvalidValue(f"{kind} data holds a string that is not UTF-8"),
        trailing=lambda r: InvalidValue(f"{kind} data has {r.end - r.pos} trailing bytes"),
    )


_ADMIN, _VLIST, _SITE = _refusals("HS_ADMIN"), _refusals("HS_VLIST"), _refusals("HS_SITE")
_ANY = 0xFFFFFFFF  # a value's strings are bounded by its data alone, not by a message's limits


def _count(r: Reader, what: str, min_size: int) -> int:
    # Against the whole value's size rather than what remains (Reader.count): a value wrong in
    # two ways is refused for the same one as it always was.
    n = r.u32(f"number of {what}")
    if n * min_size > len(r.data):
        raise r.errors.too_many(r, n, what)
    return n


@dataclass(frozen=True, slots=True)
class AdminRef:
    """HS_ADMIN data: an identity (or group) and the permissions it is granted."""

    handle: str
    index: int
    permissions: int  # bit i is ADMIN_PERMISSION_NAMES[i]

    def allows(self, name: str) -> bool:
        return bool(self.permissions >> ADMIN_PERMISSION_NAMES.index(name) & 1)

    def permission_string(self) -> str:
        """handle.net's form: the 12-bit mask, most significant bit (list handles) first."""
        return format(self.permissions, f"0{ADMIN_PERMISSION_BITS}b")

    @staticmethod
    def parse_permissions(text: str) -> int:
        if len(text) != ADMIN_PERMISSION_BITS or set(text) - {"0", "1"}:
            raise InvalidValue(f"admin permissions must be {ADMIN_PERMISSION_BITS} characters of 0 and 1")
        return int(text, 2)


def encode_admin(ref: AdminRef) -> bytes:
    return struct.pack(">H", ref.permissions) + pack_text(ref.handle) + struct.pack(">I", ref.index)


@lru_cache(maxsize=65536)  # an enterprise's records share their HS_ADMIN; AdminRef is immutable
def decode_admin(data: bytes) -> AdminRef:
    r = Reader(data, errors=_ADMIN)
    permissions = r.u16("permissions")
    handle = r.text("admin handle", _ANY)
    index = r.u32("admin index")
    r.done()
    return AdminRef(handle, index, permissions & (1 << ADMIN_PERMISSION_BITS) - 1)


def encode_vlist(members: list[tuple[str, int]]) -> bytes:
    out = [struct.pack(">I", len(members))]
    out += [pack_text(handle) + struct.pack(">I", index) for handle, index in members]
    return b"".join(out)


def decode_vlist(data: bytes) -> list[tuple[str, int]]:
    r = Reader(data, errors=_VLIST)
    count = _count(r, "members", 8)
    members = [(r.text("member handle", _ANY), r.u32("member index")) for _ in range(count)]
    r.done()
    return members


# HS_SITE ----------------------------------------------------------------------------

PROTOCOLS = {"UDP": 0, "TCP": 1, "HTTP": 2, "HTTPS": 3}
PROTOCOL_NAMES = {v: k for k, v in PROTOCOLS.items()}
HASH_OPTIONS = {"BY_PREFIX": 0, "BY_SUFFIX": 1, "BY_ALL": 2}
HASH_OPTION_NAMES = {v: k for k, v in HASH_OPTIONS.items()}
_SERVICE_ADMIN = 0x01
_SERVICE_QUERY = 0x02
_PRIMARY = 0x80
_MULTI_PRIMARY = 0x40


@dataclass(frozen=True, slots=True)
class Interface:
    protocol: str  # UDP, TCP, HTTP, HTTPS
    port: int
    query: bool = True
    admin: bool = False


@dataclass(frozen=True, slots=True)
class Server:
    server_id: int
    address: str  # IPv4 or IPv6 text
    public_key: bytes
    interfaces: tuple[Interface, ...]


@dataclass(frozen=True, slots=True)
class Site:
    """HS_SITE data: the servers of a site and how handles are split among them."""

    servers: tuple[Server, ...]
    version: int = 1
    protocol_version: tuple[int, int] = (2, 10)
    serial_number: int = 1
    is_primary: bool = True
    is_multi_primary: bool = False
    hash_option: int = HASH_OPTIONS["BY_ALL"]
    hash_filter: str = ""
    attributes: tuple[tuple[str, str], ...] = ()


def _address_bytes(text: str) -> bytes:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidValue(f"site server address {text!r} is not an IP address") from None
    if addr.version == 4:
        return bytes(12) + addr.packed  # RFC 3651: IPv4 in the last four bytes
    return addr.packed


def _address_text(raw: bytes) -> str:
    if raw[:12] == bytes(12):
        return str(ipaddress.IPv4Address(raw[12:]))
    return str(ipaddress.IPv6Address(raw))


def encode_site(site: Site) -> bytes:
    mask = (_PRIMARY if site.is_primary else 0) | (_MULTI_PRIMARY if site.is_multi_primary else 0)
    out = [
        struct.pack(">HBBHBB", site.version, *site.protocol_version, site.serial_number, mask, site.hash_option),
        pack_text(site.hash_filter),
        struct.pack(">I", len(site.attributes)),
    ]
    out += [pack_text(k) + pack_text(v) for k, v in site.attributes]
    out.append(struct.pack(">I", len(site.servers)))
    for server in site.servers:
        out.append(struct.pack(">I", server.server_id) + _address_bytes(server.address))
        out.append(pack_blob(server.public_key) + struct.pack(">I", len(server.interfaces)))
        for i in server.interfaces:
            service = (_SERVICE_ADMIN if i.admin else 0) | (_SERVICE_QUERY if i.query else 0)
            out.append(struct.pack(">BBI", service, PROTOCOLS[i.protocol], i.port))
    return b"".join(out)


def _decode_interface(r: Reader) -> Interface:
    service, proto, port = r.u8("service"), r.u8("protocol"), r.u32("port")
    if proto not in PROTOCOL_NAMES:
        raise InvalidValue(f"HS_SITE interface has unknown protocol {proto}")
    return Interface(PROTOCOL_NAMES[proto], port, bool(service & _SERVICE_QUERY), bool(service & _SERVICE_ADMIN))


def _decode_server(r: Reader) -> Server:
    server_id = r.u32("server id")
    address = _address_text(r.take(16, "server address"))
    public_key = r.blob("server public key", _ANY)
    count = _count(r, "interfaces", 6)
    return Server(server_id, address, public_key, tuple(_decode_interface(r) for _ in range(count)))


def decode_site(data: bytes) -> Site:
    r = Reader(data, errors=_SITE)
    version, major, minor, serial = r.u16("version"), r.u8("major version"), r.u8("minor version"), r.u16("serial")
    mask, hash_option, hash_filter = r.u8("primary mask"), r.u8("hash option"), r.text("hash filter", _ANY)
    attr_count = _count(r, "attributes", 8)
    attributes = tuple((r.text("attribute name", _ANY), r.text("attribute value", _ANY)) for _ in range(attr_count))
    server_count = _count(r, "servers", 24)
    servers = tuple(_decode_server(r) for _ in range(server_count))
    r.done()
    return Site(
        servers=servers,
        version=version,
        protocol_version=(major, minor),
        serial_number=serial,
        is_primary=bool(mask & _PRIMARY),
        is_multi_primary=bool(mask & _MULTI_PRIMARY),
        hash_option=hash_option,
        hash_filter=hash_filter,
        attributes=attributes,
    )
