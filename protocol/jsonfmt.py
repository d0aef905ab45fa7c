"""handle.net v9 JSON forms of values (as the JSON REST API of handle.net's server shows them), both ways.

Parsing treats its input as hostile: every shape, type and range is checked and any
problem is an InvalidValue whose message names the offending value and field.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

from protocol import valuedata as vd
from protocol.errors import HandleError, InvalidValue
from protocol.identifiers import parse_handle
from protocol.records import (
    DEFAULT_PERMISSIONS,
    DEFAULT_TTL,
    HS_ADMIN,
    HS_PUBKEY,
    HS_SECKEY,
    HS_SITE,
    HS_VLIST,
    MAX_INDEX,
    MAX_TYPE_CHARS,
    HandleValue,
)
from protocol.wire.keys import key_type

_new_tuple = tuple.__new__
_C0 = re.compile(r"[\x00-\x1f]")
_MISSING = object()
DATA_FORMATS = ("string", "base64", "hex", "admin", "vlist", "site", "key", "hash")


class IncomingValue(NamedTuple):
    """A value as a client sent it, with the data format it used."""

    value: HandleValue
    format: str


@lru_cache(maxsize=65536)
def format_timestamp(epoch: int) -> str:
    # Cached: strftime costs microseconds, and records written together share their times.
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str, where: str) -> int:
    """An ISO-8601 time as seconds since the epoch, UTC when it names no zone; InvalidValue
    naming ``where`` otherwise."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidValue(f"{where}: {text!r} is not an ISO-8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _int(obj: Any, where: str, lo: int, hi: int, *, digits_ok: bool = False) -> int:
    if digits_ok and isinstance(obj, str) and obj.isascii() and obj.isdigit():
        if len(obj.lstrip("0")) > len(str(hi)):  # also keeps int() under its 4300-digit limit
            raise InvalidValue(f"{where} must be between {lo} and {hi}")
        obj = int(obj)
    if not isinstance(obj, int) or isinstance(obj, bool):
        raise InvalidValue(f"{where} must be an integer")
    if not lo <= obj <= hi:
        raise InvalidValue(f"{where} must be between {lo} and {hi}")
    return obj


def _str(obj: Any, where: str) -> str:
    if not isinstance(obj, str):
        raise InvalidValue(f"{where} must be a string")
    return obj


def _dict(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise InvalidValue(f"{where} must be an object")
    return obj


def _list(obj: Any, where: str) -> list[Any]:
    if not isinstance(obj, list):
        raise InvalidValue(f"{where} must be an array")
    return obj


def _utf8(text: str, where: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValue(f"{where} is not valid UTF-8 text") from None


def _text(obj: Any, where: str) -> str:
    """A string that can be stored as UTF-8 (no lone surrogates)."""
    text = _str(obj, where)
    _utf8(text, where)
    return text


def _handle_ref(obj: Any, where: str) -> str:
    text = _str(obj, where)
    try:
        parse_handle(text)
    except HandleError as exc:
        raise InvalidValue(f"{where}: {exc.message}") from None
    return text


def admin_from_json(obj: Any, where: str) -> bytes:
    """HS_ADMIN data from its JSON form ``{"handle", "index", "permissions"}``, encoded;
    InvalidValue naming ``where`` and the field otherwise."""
    obj = _dict(obj, where)
    ref = vd.AdminRef(
        handle=_handle_ref(obj.get("handle"), f"{where}.handle"),
        index=_int(obj.get("index"), f"{where}.index", 0, MAX_INDEX, digits_ok=True),
        permissions=vd.AdminRef.parse_permissions(_str(obj.get("permissions"), f"{where}.permissions")),
    )
    return vd.encode_admin(ref)


def _vlist_from_json(obj: Any, where: str) -> bytes:
    members = []
    for n, item in enumerate(_list(obj, where)):
        item = _dict(item, f"{where}[{n}]")
        handle = _handle_ref(item.get("handle"), f"{where}[{n}].handle")
        members.append((handle, _int(item.get("index"), f"{where}[{n}].index", 0, MAX_INDEX, digits_ok=True)))
    return vd.encode_vlist(members)


def _b64(text: Any, where: str) -> bytes:
    try:
        return base64.b64decode(_str(text, where), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidValue(f"{where} is not valid base64") from None


def _interface_from_json(obj: Any, where: str) -> vd.Interface:
    obj = _dict(obj, where)
    proto = _str(obj.get("protocol"), f"{where}.protocol").upper()
    if proto not in vd.PROTOCOLS:
        raise InvalidValue(f"{where}.protocol must be one of {', '.join(vd.PROTOCOLS)}")
    return vd.Interface(
        protocol=proto,
        port=_int(obj.get("port"), f"{where}.port", 0, 65535),
        query=bool(obj.get("query", True)),
        admin=bool(obj.get("admin", False)),
    )


def _server_from_json(obj: Any, where: str) -> vd.Server:
    obj = _dict(obj, where)
    key = obj.get("publicKey")
    key_bytes = b"" if key is None else _b64(_dict(key, f"{where}.publicKey").get("value"), f"{where}.publicKey.value")
    interfaces = _list(obj.get("interfaces", []), f"{where}.interfaces")
    return vd.Server(
        server_id=_int(obj.get("serverId", 1), f"{where}.serverId", 0, 2**32 - 1),
        address=_str(obj.get("address"), f"{where}.address"),
        public_key=key_bytes,
        interfaces=tuple(_interface_from_json(i, f"{where}.interfaces[{n}]") for n, i in enumerate(interfaces)),
    )


def _site_from_json(obj: Any, where: str) -> bytes:
    obj = _dict(obj, where)
    mask = _dict(obj.get("primaryMask", {}), f"{where}.primaryMask")
    hash_option = obj.get("hashOption", "BY_ALL")
    if isinstance(hash_option, str):
        if hash_option.upper() not in vd.HASH_OPTIONS:
            raise InvalidValue(f"{where}.hashOption must be one of {', '.join(vd.HASH_OPTIONS)}")
        hash_option = vd.HASH_OPTIONS[hash_option.upper()]
    major, _, minor = str(obj.get("protocolVersion", "2.10")).partition(".")
    if not (major.isascii() and major.isdigit() and minor.isascii() and minor.isdigit()):
        raise InvalidValue(f"{where}.protocolVersion must look like '2.10'")
    attrs = _list(obj.get("attributes", []), f"{where}.attributes")
    servers = _list(obj.get("servers"), f"{where}.servers")
    site = vd.Site(
        servers=tuple(_server_from_json(s, f"{where}.servers[{n}]") for n, s in enumerate(servers)),
        version=_int(obj.get("version", 1), f"{where}.version", 0, 65535),
        protocol_version=(
            _int(major, f"{where}.protocolVersion", 0, 255, digits_ok=True),
            _int(minor, f"{where}.protocolVersion", 0, 255, digits_ok=True),
        ),
        serial_number=_int(obj.get("serialNumber", 1), f"{where}.serialNumber", 0, 65535),
        is_primary=bool(mask.get("isPrimary", True)),
        is_multi_primary=bool(mask.get("isMultiPrimary", False)),
        hash_option=_int(hash_option, f"{where}.hashOption", 0, 255),
        hash_filter=_text(obj.get("hashFilter", ""), f"{where}.hashFilter"),
        attributes=tuple(
            (
                _text(_dict(a, f"{where}.attributes[{n}]").get("name"), f"{where}.attributes[{n}].name"),
                _text(a.get("value"), f"{where}.attributes[{n}].value"),
            )
            for n, a in enumerate(attrs)
        ),
    )
    return vd.encode_site(site)


def _data_from_json(obj: Any, where: str) -> tuple[bytes, str]:
    if isinstance(obj, str):
        return _utf8(obj, where), "string"
    if isinstance(obj, bytes):  # msgpack bodies may carry binary data as it is
        return obj, "base64"
    obj = _dict(obj, where)
    fmt = _str(obj.get("format"), f"{where}.format")
    if "value" not in obj:
        raise InvalidValue(f"{where} has no 'value'")
    raw, here = obj["value"], f"{where}.value"
    if fmt == "string" or fmt == "hash":
        return _utf8(_str(raw, here), here), fmt
    if fmt == "base64" or fmt == "key":
        return _b64(raw, here), fmt
    if fmt == "hex":
        try:
            return bytes.fromhex(_str(raw, here)), fmt
        except ValueError:
            raise InvalidValue(f"{here} is not valid hex") from None
    if fmt == "admin":
        return admin_from_json(raw, here), fmt
    if fmt == "vlist":
        return _vlist_from_json(raw, here), fmt
    if fmt == "site":
        return _site_from_json(raw, here), fmt
    raise InvalidValue(f"{where}.format {fmt!r} is unknown; use one of {', '.join(DATA_FORMATS)}")


def _ttl_from_json(obj: Any, where: str) -> tuple[int, bool]:
    if obj is None:
        return DEFAULT_TTL, False
    if isinstance(obj, str) and not obj.isdigit():
        expiry = parse_timestamp(obj, where)
        if not 0 <= expiry <= MAX_INDEX:  # the wire's TTL is a 4-byte count of seconds since 1970
            raise InvalidValue(f"{where}: {obj!r} is not between 1970 and 2038")
        return expiry, True
    return _int(obj, where, 0, MAX_INDEX, digits_ok=True), False


def _permissions_from_json(obj: Any, where: str) -> int:
    if obj is None:
        return DEFAULT_PERMISSIONS
    text = _str(obj, where)
    if len(text) != 4 or set(text) - {"0", "1"}:
        raise InvalidValue(f"{where} must be 4 characters of 0 and 1, e.g. '1110'")
    return int(text, 2)


def _references_from_json(obj: Any, where: str) -> tuple[tuple[int, str], ...]:
    if obj is None:
        return ()
    refs = []
    for n, item in enumerate(_list(obj, where)):
        item = _dict(item, f"{where}[{n}]")
        refs.append(
            (
                _int(item.get("index"), f"{where}[{n}].index", 0, MAX_INDEX),
                _handle_ref(item.get("handle"), f"{where}[{n}].handle"),
            )
        )
    return tuple(refs)


def type_from_json(obj: Any, where: str) -> str:
    """A value's type as given, once checked: a string of at most MAX_TYPE_CHARS characters,
    without control characters, storable as UTF-8; InvalidValue naming ``where`` otherwise."""
    vtype = _str(obj, f"{where}: type")
    if len(vtype) > MAX_TYPE_CHARS:
        raise InvalidValue(f"{where}: type is longer than {MAX_TYPE_CHARS} characters")
    if _C0.search(vtype):
        raise InvalidValue(f"{where}: type contains control characters")
    _utf8(vtype, f"{where}: type")
    return vtype


def value_from_json(obj: Any, where: str | int = "value", timestamp: int = 0) -> IncomingValue:
    """Parse one value object, stamped with ``timestamp`` (the server's write time).

    ``where`` names the value in messages; an int n means "values[n]". Registration pushes
    hundreds of thousands of values a second through here, so the common shapes are
    checked inline and error messages are built only on failure.
    """
    if not isinstance(obj, dict):
        raise InvalidValue(f"{_where(where)} must be an object")
    index = obj.get("index")
    if type(index) is not int or not 1 <= index <= MAX_INDEX:
        where = _where(where)
        _int(index, f"{where}.index", 1, MAX_INDEX)
        raise InvalidValue(f"{where}.index must be an integer")  # pragma: no cover - _int raised
    vtype = obj.get("type")
    if type(vtype) is not str or not vtype.isascii() or len(vtype) > MAX_TYPE_CHARS or _C0.search(vtype):
        vtype = type_from_json(vtype, f"value {index}")
    data = obj.get("data", _MISSING)
    if type(data) is str:
        try:
            raw, fmt = data.encode("utf-8"), "string"
        except UnicodeEncodeError:
            raise InvalidValue(f"value {index}: data is not valid UTF-8 text") from None
    elif data is _MISSING:
        raise InvalidValue(f"value {index} has no data")
    else:
        raw, fmt = _data_from_json(data, f"value {index}: data")
    ttl, absolute = DEFAULT_TTL, False
    if "ttl" in obj:
        ttl, absolute = _ttl_from_json(obj["ttl"], f"value {index}: ttl")
    permissions = obj.get("permissions")
    references = obj.get("references")
    if permissions is not None:
        permissions = _permissions_from_json(permissions, f"value {index}: permissions")
    if references is not None:
        references = _references_from_json(references, f"value {index}: references")
    # tuple.__new__ builds the named tuples without their Python-level __new__ (a third of
    # the cost of parsing a simple value); the field order is HandleValue's.
    value = _new_tuple(
        HandleValue,
        (
            index,
            vtype,
            raw,
            ttl,
            absolute,
            timestamp,
            DEFAULT_PERMISSIONS if permissions is None else permissions,
            () if references is None else references,
        ),
    )
    return _new_tuple(IncomingValue, (value, fmt))


def _where(where: str | int) -> str:
    return f"values[{where}]" if isinstance(where, int) else where


def values_from_body(body: Any, timestamp: int = 0) -> list[IncomingValue]:
    """A PUT body: ``{"values": [...]}``, a bare array, or one value object."""
    if isinstance(body, dict) and "values" in body:
        body = body["values"]
    items = body if isinstance(body, list) else [body]
    if not items:
        raise InvalidValue("the request carries no values")
    parsed = [value_from_json(item, n, timestamp) for n, item in enumerate(items)]
    if len({incoming.value.index for incoming in parsed}) != len(parsed):
        seen: set[int] = set()
        for incoming in parsed:
            if incoming.value.index in seen:
                raise InvalidValue(f"index {incoming.value.index} appears more than once")
            seen.add(incoming.value.index)
    return parsed


def values_from_answer(items: Any) -> list[HandleValue]:
    """The values of another server's resolution answer, with the timestamps it gave them.

    As hostile as any request body: every value is checked as one sent to be stored.
    """
    if not isinstance(items, list):
        raise InvalidValue("the answer's values are not a list")
    values = []
    for n, item in enumerate(items):
        stamp = item.get("timestamp") if isinstance(item, dict) else None
        timestamp = parse_timestamp(stamp, f"values[{n}].timestamp") if isinstance(stamp, str) else 0
        timestamp = min(max(timestamp, 0), 2**32 - 1)  # the record format keeps 32 bits
        values.append(value_from_json(item, n, timestamp).value)
    if len({v.index for v in values}) != len(values):
        raise InvalidValue("the answer carries an index more than once")
    return values


# Output -------------------------------------------------------------------------------


def _site_to_json(site: vd.Site) -> dict[str, Any]:
    return {
        "version": site.version,
        "protocolVersion": f"{site.protocol_version[0]}.{site.protocol_version[1]}",
        "serialNumber": site.serial_number,
        "primaryMask": {"isPrimary": site.is_primary, "isMultiPrimary": site.is_multi_primary},
        "hashOption": vd.HASH_OPTION_NAMES.get(site.hash_option, site.hash_option),
        "hashFilter": site.hash_filter,
        "attributes": [{"name": k, "value": v} for k, v in site.attributes],
        "servers": [
            {
                "serverId": s.server_id,
                "address": s.address,
                "publicKey": {"format": "base64", "value": base64.b64encode(s.public_key).decode()},
                "interfaces": [
                    {"query": i.query, "admin": i.admin, "protocol": i.protocol, "port": i.port} for i in s.interfaces
                ],
            }
            for s in site.servers
        ],
    }


def _structured(value: HandleValue) -> dict[str, Any] | None:
    vtype = value.type.upper()
    try:
        if vtype == HS_ADMIN:
            ref = vd.decode_admin(value.data)
            return {
                "format": "admin",
                "value": {"handle": ref.handle, "index": ref.index, "permissions": ref.permission_string()},
            }
        if vtype == HS_VLIST:
            members = vd.decode_vlist(value.data)
            return {"format": "vlist", "value": [{"handle": h, "index": i} for h, i in members]}
        if vtype == HS_SITE or vtype.startswith(HS_SITE + "."):
            return {"format": "site", "value": _site_to_json(vd.decode_site(value.data))}
    except InvalidValue:
        return None  # stored as raw bytes by a client: show them as such
    if vtype == HS_PUBKEY:
        shown = {"format": "key", "value": base64.b64encode(value.data).decode()}
        kind = key_type(value.data)  # beside the value, which stays the bytes: a reader ignores it
        return shown if kind is None else shown | {"keyType": kind}
    if vtype == HS_SECKEY:
        try:
            return {"format": "hash", "value": value.data.decode("utf-8")}
        except UnicodeDecodeError:
            return None  # not text: base64 shows it without loss
    return None


def data_to_json(value: HandleValue) -> dict[str, Any]:
    shown = _structured(value)
    if shown is not None:
        return shown
    try:
        return {"format": "string", "value": value.data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"format": "base64", "value": base64.b64encode(value.data).decode()}


def value_to_json(value: HandleValue) -> dict[str, Any]:
    out: dict[str, Any] = {"index": value.index, "type": value.type, "data": data_to_json(value)}
    if value.permissions != DEFAULT_PERMISSIONS:
        out["permissions"] = format(value.permissions, "04b")
    out["ttl"] = format_timestamp(value.ttl) if value.ttl_absolute else value.ttl
    out["timestamp"] = format_timestamp(value.timestamp)
    if value.references:
        out["references"] = [{"index": i, "handle": h} for i, h in value.references]
    return out
