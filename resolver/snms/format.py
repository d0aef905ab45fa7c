"""SNMS's management API, as Teleinfo documents it: request shapes in, node models out.

Everything here is checking and translating; the writes go through the registration
service like every other front-end's (``resolver.snms.routes`` wires the two).

- An identifier item ``{handle, templateVersion, value: [{auth, index, type, data: {format,
  value}}]}`` becomes a record whose value at 1001 (type ``TEMPLATE``) names the template
  version and whose other values are the item's, as strings.
- An SNMS template ``{prefix, version, industry..., type, description, items}`` is the
  node's template named ``snms`` at that version (``registry.templates``).
- Errors keep the node's response codes; ``refusal`` turns one into SNMS's status and a
  message, in SNMS's own words where its documentation gives them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocol.codes import ResponseCode
from protocol.errors import HandleError, InvalidValue, ProtocolViolation
from protocol.jsonfmt import IncomingValue, data_to_json
from protocol.records import DEFAULT_PERMISSIONS, DEFAULT_TTL, MAX_INDEX, HandleValue
from registry.templates import (
    FIRST_FIELD_INDEX,
    INDUSTRY_KEYS,
    MAX_FIELDS,
    SNMS_TEMPLATE_TYPE,
    TEMPLATE_INDEX,
    TEMPLATE_TYPE,
    Field,
    Template,
    check_version,
    field_to_json,
)

OK, NOT_LOGGED_IN, FAILED, NO_PERMISSION, INTERNAL = 1, -1, -2, -3, -4
MAX_ITEMS = 2000
MAX_HANDLE_CHARS = 255
MAX_PREFIX_CHARS = 64
MAX_VERSION_CHARS = 128
MAX_TYPE_CHARS = 128
MAX_DATA_CHARS = 255
MAX_AUTH_CHARS = 64
MAX_USERNAME_CHARS = 255
MAX_PASSWORD_CHARS = 1024

# SNMS's words, where its documentation gives them.
LOGIN_FAILED = "用户名/密码错误！"
ALREADY_EXISTS = "标识已存在"
NOT_FOUND = "标识不存在"
NOT_FOUND_SINGLE = "没有找到标识"
BUSY = "系统繁忙"
INTERNAL_ERROR = "系统内部错误"

_PERMISSION_CODES = {
    ResponseCode.INVALID_ADMIN,
    ResponseCode.INSUFFICIENT_PERMISSIONS,
}
_INTERNAL_CODES = {ResponseCode.ERROR, ResponseCode.SERVER_TOO_BUSY}
_KINDS: dict[int, str] = {
    ResponseCode.INVALID_VALUE: "数据不合法",
    ResponseCode.INVALID_HANDLE: "标识不合法",
    ResponseCode.PROTOCOL_ERROR: "请求不合法",
    ResponseCode.SERVER_NOT_RESPONSIBLE: "本节点不负责该标识",
    ResponseCode.VALUE_ALREADY_EXISTS: "属性已存在",
    ResponseCode.VALUES_NOT_FOUND: "属性不存在",
    ResponseCode.AUTHENTICATION_FAILED: "认证失败",
    # Quotas (registry.quota), in the words of Teleinfo's SDK: daily request limit, registration
    # count limit, prefix limit. A business failure (-2), as SNMS answers a refusal it explains.
    ResponseCode.REQUEST_LIMIT_DAILY: "超过每日请求次数限制",
    ResponseCode.REGISTER_COUNT_LIMIT: "超过标识注册数量限制",
    ResponseCode.PREFIX_LIMIT: "超过前缀数量限制",
}


def status_of(code: int) -> int:
    """SNMS's status for a node response code."""
    if code == ResponseCode.SUCCESS:
        return OK
    if code == ResponseCode.AUTHENTICATION_NEEDED:
        return NOT_LOGGED_IN
    if code in _PERMISSION_CODES:
        return NO_PERMISSION
    if code in _INTERNAL_CODES:
        return INTERNAL
    return FAILED


def message_of(code: int, message: str, *, single: bool = False) -> str:
    """SNMS's message for a refusal: its own words for the common cases, else a kind and the reason."""
    if code == ResponseCode.HANDLE_ALREADY_EXISTS:
        return ALREADY_EXISTS
    if code == ResponseCode.HANDLE_NOT_FOUND and message.startswith("handle "):
        return NOT_FOUND_SINGLE if single else NOT_FOUND
    if code == ResponseCode.SERVER_TOO_BUSY:
        return f"{BUSY}：{message}"
    if code in _PERMISSION_CODES:
        return f"没有权限：{message}"
    if _is_chinese(message):
        return message
    kind = _KINDS.get(code)
    return f"{kind}：{message}" if kind else message


def refusal(exc: HandleError, *, single: bool = True) -> tuple[int, str]:
    return status_of(exc.code), message_of(exc.code, exc.message, single=single)


def _is_chinese(text: str) -> bool:
    return bool(text) and "\u4e00" <= text[0] <= "\u9fff"


# Identifier items ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Item:
    handle: str
    version: str
    incoming: list[IncomingValue]  # the template reference at 1001 first, then the item's values


def _missing(name: str) -> ProtocolViolation:
    return ProtocolViolation(f"缺少必要的参数: {name}")


def text_field(obj: dict[str, Any], name: str, limit: int) -> str:
    """A required string member of at most ``limit`` characters."""
    value = obj.get(name)
    if value is None or value == "":
        raise _missing(name)
    if not isinstance(value, str):
        raise ProtocolViolation(f"参数{name}必须是字符串 ({name} must be a string)")
    if len(value) > limit:
        raise ProtocolViolation(f"参数{name}长度不能超过{limit} ({name} is {len(value)} characters; at most {limit})")
    return value


def int_field(obj: dict[str, Any], name: str, *, required: bool = True, where: str = "") -> int | None:
    """An integer member; SNMS's own examples send some as digit strings ("2000"), so those count too."""
    value = obj.get(name)
    if value is None:
        if required:
            raise _missing(f"{where}.{name}" if where else name)
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 11:
        value = int(value)
    if type(value) is not int:
        raise ProtocolViolation(f"参数{name}必须是整数 ({name} must be an integer, not {str(value)[:40]!r})")
    return value


def _value(raw: Any, where: str, now: int) -> HandleValue:
    if not isinstance(raw, dict):
        raise ProtocolViolation(f"{where}必须是对象 ({where} must be an object)")
    index = int_field(raw, "index")
    assert index is not None
    if index == TEMPLATE_INDEX:
        raise InvalidValue(f"非法操作，索引{TEMPLATE_INDEX}是保留索引 ({where}: index 1001 names the template)")
    if not 1 <= index <= MAX_INDEX:
        raise InvalidValue(f"{where}.index必须在1到{MAX_INDEX}之间")
    vtype = text_field(raw, "type", MAX_TYPE_CHARS)
    auth = raw.get("auth")
    if auth is not None and not (isinstance(auth, str | int) and not isinstance(auth, bool) and len(str(auth)) <= 64):
        raise ProtocolViolation(f"{where}.auth必须是字符串 (auth is reserved: a string of at most {MAX_AUTH_CHARS})")
    data = raw.get("data")
    if not isinstance(data, dict):
        raise _missing(f"{where}.data")
    fmt = data.get("format", "string")
    if fmt != "string":
        raise InvalidValue(f"{where}.data.format只支持string (only format string is supported, not {str(fmt)[:40]!r})")
    text = data.get("value")
    if text is None:
        raise _missing(f"{where}.data.value")
    if not isinstance(text, str):
        raise ProtocolViolation(f"参数{where}.data.value必须是字符串 (it must be a string)")
    if len(text) > MAX_DATA_CHARS:
        raise InvalidValue(
            f"{where}.data.value长度不能超过{MAX_DATA_CHARS} ({len(text)} characters; at most {MAX_DATA_CHARS})"
        )
    try:
        data_bytes = text.encode()
    except UnicodeEncodeError:
        raise InvalidValue(f"{where}.data.value不是合法的文本 (not valid Unicode text)") from None
    return HandleValue(index, vtype, data_bytes, timestamp=now)


class _Unusual(Exception):
    """An item the fast path leaves to the checked one (which finds what is wrong)."""


_new_tuple = tuple.__new__


def parse_item(raw: Any, now: int) -> Item:
    """One create or update body; ProtocolViolation or InvalidValue, in SNMS's terms, if malformed.

    batchCreate parses up to 2,000 of these a request: the common shape is taken inline (a
    third of the cost), anything else by ``parse_item_checked``, which says what is wrong; a
    property test holds the two to the same answers.
    """
    try:
        return _parse_usual(raw, now)
    except (_Unusual, AttributeError, UnicodeEncodeError):
        return parse_item_checked(raw, now)


def _parse_usual(raw: Any, now: int) -> Item:
    handle, version, values = raw.get("handle"), raw.get("templateVersion"), raw.get("value")
    if (
        type(handle) is not str
        or not 0 < len(handle) <= MAX_HANDLE_CHARS
        or type(version) is not str
        or not 0 < len(version) <= MAX_VERSION_CHARS
        or type(values) is not list
        or not 0 < len(values) <= MAX_FIELDS
    ):
        raise _Unusual
    # The fields in HandleValue's order: index, type, data, ttl, absolute, timestamp, permissions, references.
    reference = (TEMPLATE_INDEX, SNMS_TEMPLATE_TYPE, version.encode(), DEFAULT_TTL, False, now, DEFAULT_PERMISSIONS, ())
    incoming = [_new_tuple(IncomingValue, (_new_tuple(HandleValue, reference), "string"))]
    seen = set()
    for v in values:
        index, vtype, data, auth = v.get("index"), v.get("type"), v.get("data"), v.get("auth")
        if (
            type(index) is not int
            or not 1 <= index <= MAX_INDEX
            or index == TEMPLATE_INDEX
            or index in seen
            or type(vtype) is not str
            or not 0 < len(vtype) <= MAX_TYPE_CHARS
            or type(data) is not dict
            or not (auth is None or (type(auth) is str and len(auth) <= MAX_AUTH_CHARS))
        ):
            raise _Unusual
        text = data.get("value")
        if type(text) is not str or len(text) > MAX_DATA_CHARS or data.get("format", "string") != "string":
            raise _Unusual
        seen.add(index)
        value = (index, vtype, text.encode(), DEFAULT_TTL, False, now, DEFAULT_PERMISSIONS, ())
        incoming.append(_new_tuple(IncomingValue, (_new_tuple(HandleValue, value), "string")))
    return Item(handle, version, incoming)


def parse_item_checked(raw: Any, now: int) -> Item:
    """``parse_item``, field by field, with a message for the first thing wrong."""
    if not isinstance(raw, dict):
        raise ProtocolViolation(
            "请求体必须是JSON对象 (the body must be a JSON object with handle, templateVersion, value)"
        )
    handle = text_field(raw, "handle", MAX_HANDLE_CHARS)
    version = text_field(raw, "templateVersion", MAX_VERSION_CHARS)
    try:
        reference_data = version.encode()
    except UnicodeEncodeError:
        raise InvalidValue("参数templateVersion不是合法的文本 (not valid Unicode text)") from None
    values = raw.get("value")
    if values is None:
        raise _missing("value")
    if not isinstance(values, list) or not values:
        raise ProtocolViolation("参数value必须是非空数组 (value must be a non-empty array)")
    if len(values) > MAX_FIELDS:
        raise ProtocolViolation(f"参数value最多{MAX_FIELDS}项 (at most {MAX_FIELDS} values)")
    parsed = [_value(v, f"value[{n}]", now) for n, v in enumerate(values)]
    seen: set[int] = set()
    for v in parsed:
        if v.index in seen:
            raise InvalidValue(f"索引{v.index}重复 (index {v.index} appears more than once)")
        seen.add(v.index)
    reference = HandleValue(TEMPLATE_INDEX, SNMS_TEMPLATE_TYPE, reference_data, timestamp=now)
    incoming = [IncomingValue(reference, "string")] + [IncomingValue(v, "string") for v in parsed]
    return Item(handle, version, incoming)


def fields_of(template: Template | None) -> dict[int, Field] | None:
    """A template's fields by index, for ``check_item`` (made once per request, not per item)."""
    return None if template is None else {f.index: f for f in template.fields}


def check_item(fields: dict[int, Field] | None, prefix: str, item: Item) -> None:
    """SNMS's own rules, before the shared template check: every value is an enabled item of the
    template (``fields_of``), of its ``idType``. (Lengths and required items: the shared check,
    for every front-end.)"""
    if fields is None:
        raise InvalidValue(f"数据模板不存在：前缀{prefix}没有版本为{item.version}的数据模板")
    for incoming in item.incoming[1:]:
        value = incoming.value
        field = fields.get(value.index)
        if field is None:
            raise InvalidValue(f"非法操作，索引{value.index}在模板中不存在")
        if value.type != field.type:
            raise InvalidValue(f"非法操作，索引{value.index}的类型必须是模板的idType {field.type}，而不是{value.type}")
        if not field.enabled:
            raise InvalidValue(f"非法操作，索引{value.index}（{field.type}）在模板中已禁用")


def template_version(values: list[HandleValue]) -> str:
    """The version a record's value at 1001 names (SNMS's TEMPLATE, or the node's name@version)."""
    for value in values:
        if value.index == TEMPLATE_INDEX:
            text = value.data.decode("utf-8", "replace")
            kind = value.type.upper()
            if kind == TEMPLATE_TYPE:
                return text.partition("@")[2] or text
            if kind == SNMS_TEMPLATE_TYPE:
                return text
    return ""


def detail(handle: str, prefix: str, values: list[HandleValue]) -> dict[str, Any]:
    """``/identityv2/data/detail``'s data. ``auth`` is reserved in SNMS: "1" for a value anyone may
    read, "0" for one only its admins may."""
    shown = [
        {"auth": "1" if v.public_read else "0", "index": v.index, "type": v.type, "data": _data(v)} for v in values
    ]
    return {"prefix": prefix, "handle": handle, "templateVersion": template_version(values), "value": shown}


def _data(value: HandleValue) -> dict[str, Any]:
    """SNMS documents a value's data as {format, value}: the REST API's ``keyType`` beside a key is left out."""
    data = data_to_json(value)
    data.pop("keyType", None)
    return data


# Templates ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TemplateRef:
    prefix: str
    version: str


def template_ref(obj: Any) -> TemplateRef:
    """``{prefix, version}`` (a query, a DELETE body, or a whole template)."""
    if not isinstance(obj, dict):
        raise ProtocolViolation("请求体必须是JSON对象 (the body must be a JSON object)")
    prefix = text_field(obj, "prefix", MAX_PREFIX_CHARS)
    version = text_field(obj, "version", MAX_VERSION_CHARS)
    try:
        check_version(version)
    except InvalidValue as exc:
        raise InvalidValue(f"参数version不合法 ({exc.message})") from None
    return TemplateRef(prefix, version)


def _item(raw: Any, n: int, *, editing: bool) -> dict[str, Any]:
    """One template item, in the node's field form (``registry.templates``); idIndex may be absent."""
    where = f"items[{n}]"
    if not isinstance(raw, dict):
        raise ProtocolViolation(f"{where}必须是对象 ({where} must be an object)")
    name = text_field(raw, "name", 255)
    id_type = text_field(raw, "idType", MAX_TYPE_CHARS)
    index = int_field(raw, "idIndex", required=False)
    if index is not None and not FIRST_FIELD_INDEX <= index <= MAX_INDEX:
        raise InvalidValue(f"{where}.idIndex必须从{FIRST_FIELD_INDEX}开始 (idIndex starts at {FIRST_FIELD_INDEX})")
    required = raw.get("required", False)
    if required is None:
        required = False
    if not isinstance(required, bool):
        raise ProtocolViolation(f"{where}.required必须是true或false")
    state = int_field(raw, "state", required=editing)
    if state is None:
        state = 1
    if state not in (0, 1):
        raise InvalidValue(f"{where}.state必须是0（禁用）或1（启用）")
    metadata = raw.get("metadata")
    if not isinstance(metadata, dict):
        raise _missing(f"{where}.metadata")
    kind = metadata.get("type", "string")
    if kind != "string":
        raise InvalidValue(f"{where}.metadata.type必须是小写string (only string is supported, not {str(kind)[:40]!r})")
    low = int_field(metadata, "minLength", where=f"{where}.metadata")
    high = int_field(metadata, "maxLength", where=f"{where}.metadata")
    assert low is not None and high is not None
    if not 0 <= low <= high <= 1_000_000:
        raise InvalidValue(f"{where}.metadata: 需要 0 ≤ minLength ≤ maxLength (minLength {low}, maxLength {high})")
    field = {"type": id_type, "name": name, "dataType": "string", "required": required, "state": state}
    field |= {"minLength": low, "maxLength": high}
    if index is not None:
        field["index"] = index
    return field


def template_body(raw: Any, existing: Template | None) -> tuple[TemplateRef, dict[str, Any]]:
    """An SNMS template (POST: ``existing`` None) or an edit of ``existing`` (PUT: items matched on
    idIndex and idType, new ones added, none removed), as the node's template body."""
    ref = template_ref(raw)
    editing = existing is not None
    attrs = {k: text_field(raw, k, 16) for k in INDUSTRY_KEYS}
    object_type = int_field(raw, "type")
    if object_type not in (1, 2):
        raise InvalidValue("参数type必须是1（主动标识载体）或2（其他）")
    description = raw.get("description") or ""
    if not isinstance(description, str) or len(description) > 255:
        raise ProtocolViolation("参数description必须是不超过255个字符的字符串")
    items = raw.get("items")
    if not isinstance(items, list) or (not items and not editing):
        raise ProtocolViolation("参数items必须是非空数组 (items must be a non-empty array)")
    given = [_item(item, n, editing=editing) for n, item in enumerate(items)]
    fields = _merge(existing, given) if existing is not None else _number(given)
    body = {"version": ref.version, **attrs, "type": object_type, "description": description, "fields": fields}
    return ref, body


def _number(fields: list[dict[str, Any]], taken: set[int] | None = None) -> list[dict[str, Any]]:
    """Give the fields without an index the lowest free ones from 2000 (SNMS: "不传，默认为2000");
    refuse a repeated index, idType or name."""
    used = set(taken or ()) | {f["index"] for f in fields if "index" in f}
    free = FIRST_FIELD_INDEX
    for f in fields:
        if "index" not in f:
            while free in used:
                free += 1
            f["index"] = free
            used.add(free)
    for key, what in (("index", "idIndex"), ("type", "idType"), ("name", "name")):
        seen: set[Any] = set()
        for f in fields:
            shown = f.get(key, "")  # a field without a display name has none to repeat
            if shown in seen and shown != "":
                raise InvalidValue(f"模板内{what}不能重复：{shown}")
            seen.add(shown)
    return fields


def _merge(existing: Template, given: list[dict[str, Any]]) -> list[dict[str, Any]]:
    current = {f.index: field_to_json(f) for f in existing.fields}
    added: list[dict[str, Any]] = []
    for f in given:
        index = f.get("index")
        old = current.get(index) if index is not None else None
        if old is not None and old["type"] == f["type"]:
            old.update({k: f[k] for k in ("name", "required", "state", "minLength", "maxLength")})
            continue
        if old is not None:
            raise InvalidValue(f"模板索引{index}已被属性{old['type']}使用，不能用于{f['type']}")
        added.append(f)
    return _number(list(current.values()) + added, set(current))


def template_json(prefix: str, t: Template) -> dict[str, Any]:
    """``GET /snms/api/v5/template``'s data."""
    items = [
        {
            "name": f.label,
            "idType": f.type,
            "idIndex": f.index,
            "required": f.required,
            "state": 1 if f.enabled else 0,
            "metadata": {"type": f.data_type, "minLength": f.min_length, "maxLength": f.max_length},
        }
        for f in t.fields
    ]
    out: dict[str, Any] = {"prefix": prefix, "name": "", "version": t.version}
    out.update(zip(INDUSTRY_KEYS, t.industry, strict=True))
    out |= {"type": t.object_type, "description": t.description, "items": items}
    return out
