"""Metadata templates (SNMS "data templates"): what records of an industry must carry.

A template is named and versioned per prefix. A record that carries a value at index
1001 of type HS_TEMPLATE naming a template (``name`` or ``name@version``) is checked
against it on every write: required fields present, types, formats and lengths right.
Fields live at indexes 2000 and above. Templates defined on a prefix apply under it;
the nearest definition wins, so the node admin can define node-wide ones.

SNMS's templates are these templates under the reserved name ``snms``: an SNMS template
(prefix, version) is template ``snms`` at that version, and a record's value at 1001 of
SNMS's type ``TEMPLATE`` holding the version names it, so that one template governs the
writes of every front-end. SNMS's attributes (industry codes, object type, description;
an item's display name and enabled state) are kept on the template; a disabled field is
no longer required, and values a record already has there still pass.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit

from protocol.errors import InvalidValue
from protocol.records import MAX_INDEX, MAX_TYPE_CHARS, HandleRecord, HandleValue
from registry.store import Store, StoredTemplate

TEMPLATE_INDEX = 1001
TEMPLATE_TYPE = "HS_TEMPLATE"
SNMS_TEMPLATE_TYPE = "TEMPLATE"  # SNMS's reference: the data is the version of template SNMS_NAME
SNMS_NAME = "snms"
FIRST_FIELD_INDEX = 2000
DATA_TYPES = ("string", "integer", "number", "date", "datetime", "url", "enum")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_INTEGER = re.compile(r"^[+-]?\d+$")
MAX_FIELDS = 500
MAX_VERSION_CHARS = 128  # SNMS's limit on templateVersion
MAX_TEXT_CHARS = 255  # an industry code, a description, a field's display name
OBJECT_TYPES = (1, 2)  # SNMS: 1 an active identifier carrier, 2 other
INDUSTRY_KEYS = ("industryCategory", "industrySpecific", "industryTrade", "industrySubclass")


@dataclass(frozen=True, slots=True)
class Field:
    index: int
    type: str
    data_type: str
    required: bool = False
    min_length: int | None = None
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    label: str = ""  # SNMS's display name (``name``), often Chinese
    enabled: bool = True  # SNMS's ``state``: a disabled field is kept, never deleted


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    version: str
    fields: tuple[Field, ...]
    # SNMS's attributes: industry codes (category, specific, trade, subclass), the object
    # type (OBJECT_TYPES) and a description; empty for templates that have none.
    industry: tuple[str, str, str, str] = ("", "", "", "")
    object_type: int | None = None
    description: str = ""


def check_name(name: str, what: str = "template name") -> str:
    if not _NAME.match(name):
        raise InvalidValue(f"{what} {name!r} must be 1-64 letters, digits, '_', '.' or '-'")
    return name


def check_version_query(version: str | None) -> str | None:
    """A version a request asks for (``?version=``): None for any, else a valid version."""
    return None if version is None else check_version(version)


def check_version(version: Any) -> str:
    """A template version: SNMS allows 1 to 128 characters of any text but control characters."""
    if (
        not isinstance(version, str)
        or not 0 < len(version) <= MAX_VERSION_CHARS
        or not version.isprintable()
        or version != version.strip()
    ):
        raise InvalidValue(
            f"template version must be 1 to {MAX_VERSION_CHARS} printable characters without "
            f'surrounding spaces, such as "1.0"; not {str(version)[:MAX_VERSION_CHARS]!r}'
        )
    return version


def _text(obj: Any, where: str, limit: int = MAX_TEXT_CHARS) -> str:
    if obj is None:
        return ""
    if not isinstance(obj, str) or len(obj) > limit or not obj.isprintable():
        raise InvalidValue(f"{where} must be printable text of at most {limit} characters")
    return obj


def _opt_len(obj: Any, where: str) -> int | None:
    if obj is None:
        return None
    if not isinstance(obj, int) or isinstance(obj, bool) or not 0 <= obj <= 1_000_000:
        raise InvalidValue(f"{where} must be a non-negative integer")
    return obj


def _field(obj: Any, n: int) -> Field:
    where = f"fields[{n}]"
    if not isinstance(obj, dict):
        raise InvalidValue(f"{where} must be an object")
    index = obj.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or not FIRST_FIELD_INDEX <= index <= MAX_INDEX:
        raise InvalidValue(f"{where}.index must be an integer from {FIRST_FIELD_INDEX} to {MAX_INDEX}")
    vtype = obj.get("type")
    if not isinstance(vtype, str) or not 0 < len(vtype) <= MAX_TYPE_CHARS or not vtype.isprintable():
        raise InvalidValue(f"{where}.type must be 1 to {MAX_TYPE_CHARS} printable characters")
    data_type = obj.get("dataType", "string")
    if data_type not in DATA_TYPES:
        raise InvalidValue(f"{where}.dataType must be one of {', '.join(DATA_TYPES)}")
    choices = obj.get("choices", [])
    if data_type == "enum" and (
        not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices)
    ):
        raise InvalidValue(f"{where}.choices must be a non-empty array of strings for an enum")
    low, high = (
        _opt_len(obj.get("minLength"), f"{where}.minLength"),
        _opt_len(obj.get("maxLength"), f"{where}.maxLength"),
    )
    if low is not None and high is not None and low > high:
        raise InvalidValue(f"{where}.minLength is greater than maxLength")
    required = obj.get("required", False)
    if not isinstance(required, bool):
        raise InvalidValue(f"{where}.required must be true or false")
    state = obj.get("state", 1)
    if state not in (0, 1) or isinstance(state, bool):
        raise InvalidValue(f"{where}.state must be 1 (enabled) or 0 (disabled)")
    label = _text(obj.get("name"), f"{where}.name")
    enums = tuple(choices) if data_type == "enum" else ()
    return Field(index, vtype, data_type, required, low, high, enums, label, state == 1)


def parse_template(name: str, body: Any) -> Template:
    """Validate a template definition from a request body."""
    check_name(name)
    if not isinstance(body, dict):
        raise InvalidValue("a template must be an object with version and fields")
    version = check_version(body.get("version"))
    category, specific, trade, subclass = (_text(body.get(k), f"template {k}", 16) for k in INDUSTRY_KEYS)
    object_type = body.get("type")
    if object_type is not None and (object_type not in OBJECT_TYPES or isinstance(object_type, bool)):
        raise InvalidValue("template type must be 1 (active identifier carrier) or 2 (other)")
    description = _text(body.get("description"), "template description")
    raw_fields = body.get("fields")
    if not isinstance(raw_fields, list) or not 0 < len(raw_fields) <= MAX_FIELDS:
        raise InvalidValue(f"template fields must be an array of 1 to {MAX_FIELDS} fields")
    fields = tuple(_field(f, n) for n, f in enumerate(raw_fields))
    seen: set[int] = set()
    for f in fields:
        if f.index in seen:
            raise InvalidValue(f"template field index {f.index} appears more than once")
        seen.add(f.index)
    return Template(name, version, fields, (category, specific, trade, subclass), object_type, description)


def field_to_json(f: Field) -> dict[str, Any]:
    """A field as a template body gives it (``parse_template`` reads it back the same)."""
    out: dict[str, Any] = {"index": f.index, "type": f.type, "dataType": f.data_type, "required": f.required}
    if f.min_length is not None:
        out["minLength"] = f.min_length
    if f.max_length is not None:
        out["maxLength"] = f.max_length
    if f.choices:
        out["choices"] = list(f.choices)
    if f.label:
        out["name"] = f.label
    if not f.enabled:
        out["state"] = 0
    return out


def template_to_json(t: Template) -> dict[str, Any]:
    fields = [field_to_json(f) for f in t.fields]
    body: dict[str, Any] = {"name": t.name, "version": t.version}
    body.update((k, v) for k, v in zip(INDUSTRY_KEYS, t.industry, strict=True) if v)
    if t.object_type is not None:
        body["type"] = t.object_type
    if t.description:
        body["description"] = t.description
    body["fields"] = fields
    return body


def encode_template(t: Template) -> bytes:
    return json.dumps(template_to_json(t), separators=(",", ":")).encode()


def decode_template(stored: StoredTemplate) -> Template:
    body = json.loads(stored.body)
    return parse_template(stored.name, body)


def _format_ok(data_type: str, text: str, choices: tuple[str, ...]) -> bool:
    try:
        if data_type == "integer":
            return bool(_INTEGER.match(text))
        if data_type == "number":
            return math.isfinite(float(text))
        if data_type == "date":
            date.fromisoformat(text)
        elif data_type == "datetime":
            datetime.fromisoformat(text.replace("Z", "+00:00"))
        elif data_type == "url":
            parts = urlsplit(text)
            return parts.scheme in ("http", "https") and bool(parts.netloc)
        elif data_type == "enum":
            return text in choices
    except ValueError:
        return False
    return True


def _check_value(f: Field, value: HandleValue) -> str | None:
    if value.type != f.type:
        return f"index {f.index} must have type {f.type!r}, not {value.type!r}"
    try:
        text = value.data.decode("utf-8")
    except UnicodeDecodeError:
        return f"field {f.type} (index {f.index}) must be UTF-8 text"
    if f.min_length is not None and len(text) < f.min_length:
        return f"field {f.type} (index {f.index}) is shorter than {f.min_length} characters"
    if f.max_length is not None and len(text) > f.max_length:
        return f"field {f.type} (index {f.index}) is longer than {f.max_length} characters"
    if not _format_ok(f.data_type, text, f.choices):
        detail = f"one of {', '.join(f.choices)}" if f.data_type == "enum" else f"a valid {f.data_type}"
        return f"field {f.type} (index {f.index}) must be {detail}, not {text!r}"
    return None


def violations(t: Template, record: HandleRecord) -> list[str]:
    """Every way ``record`` breaks template ``t``; empty when it conforms."""
    problems = []
    fields = {f.index: f for f in t.fields}
    for f in t.fields:
        value = record.value_at(f.index)
        if value is None:
            if f.required and f.enabled:
                problems.append(f"required field {f.type} (index {f.index}) is missing")
            continue
        problem = _check_value(f, value)
        if problem:
            problems.append(problem)
    for value in record.values:
        if value.index >= FIRST_FIELD_INDEX and value.index not in fields:
            problems.append(f"index {value.index} is not a field of template {t.name}@{t.version}")
    return problems


def template_reference(record: HandleRecord) -> tuple[str, str | None] | None:
    """The template a record names at index 1001, as (name, version or None)."""
    value = record.value_at(TEMPLATE_INDEX)
    kind = None if value is None else value.type.upper()
    if value is None or kind not in (TEMPLATE_TYPE, SNMS_TEMPLATE_TYPE):
        return None
    try:
        text = value.data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InvalidValue(f"the {value.type} value at index {TEMPLATE_INDEX} is not text") from None
    if not text.isprintable():  # a template's name and version are text columns: no NUL, no control
        raise InvalidValue(
            f"the {value.type} value at index {TEMPLATE_INDEX} holds control characters", handle=record.handle
        )
    if kind == SNMS_TEMPLATE_TYPE:
        return SNMS_NAME, text
    name, _, version = text.partition("@")
    return name, version or None


class TemplateChecker:
    """Checks records against the templates they name, reading each template once per request."""

    def __init__(self, store: Store, zones_of: Any) -> None:
        self._store = store
        self._zones_of = zones_of  # prefix -> the zones whose templates apply, nearest first
        self._cache: dict[tuple[str, str, str | None], Template | None] = {}

    async def find(self, prefix: str, name: str, version: str | None) -> Template | None:
        key = (prefix, name, version)
        if key not in self._cache:
            found = None
            for zone in self._zones_of(prefix):
                stored = await self._store.get_template(zone, name, version)
                if stored is not None:
                    found = decode_template(stored)
                    break
            self._cache[key] = found
        return self._cache[key]

    async def check(self, prefix: str, record: HandleRecord | None) -> None:
        """Raise InvalidValue listing every violation of the template ``record`` names."""
        if record is None:
            return
        ref = template_reference(record)
        if ref is None:
            return
        name, version = ref
        template = await self.find(prefix, name, version)
        shown = name if version is None else f"{name}@{version}"
        if template is None:
            raise InvalidValue(f"template {shown} is not defined for prefix {prefix}", handle=record.handle)
        problems = violations(template, record)
        if problems:
            raise InvalidValue(f"does not conform to template {shown}: " + "; ".join(problems), handle=record.handle)
