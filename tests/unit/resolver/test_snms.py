"""SNMS's request shapes in, the node's models out: items, templates, merges and SNMS's words."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.codes import ResponseCode
from protocol.errors import (
    HandleAlreadyExists,
    HandleError,
    HandleNotFound,
    InsufficientPermissions,
    InvalidValue,
    ProtocolViolation,
    StoreUnavailable,
)
from protocol.records import MAX_INDEX, HandleRecord, HandleValue
from registry.templates import (
    MAX_FIELDS,
    SNMS_NAME,
    Field,
    Template,
    parse_template,
    template_reference,
    template_to_json,
    violations,
)
from resolver.snms import format as snms

NOW = 1_800_000_000
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def value(index: Any = 2000, vtype: Any = "URL", text: Any = "www.001.com", **extra: Any) -> dict[str, Any]:
    return {"data": {"format": "string", "value": text}, "auth": "", "index": index, "type": vtype} | extra


def item(**over: Any) -> dict[str, Any]:
    """The documented create body (handle-operate.md), with ``over`` replacing members."""
    return {"handle": "88.118.8/001", "templateVersion": "1.0.0", "value": [value()]} | over


def spec(name: str, id_type: str, index: Any = None, **over: Any) -> dict[str, Any]:
    """One template item as SNMS sends it (template.md)."""
    out: dict[str, Any] = {"name": name, "idType": id_type, "metadata": {"type": "string", "minLength": 1}}
    out["metadata"]["maxLength"] = 10
    out |= {"required": False, "state": 1}
    if index is not None:
        out["idIndex"] = index
    return out | over


def snms_template(*items: dict[str, Any], **over: Any) -> dict[str, Any]:
    """The documented template body (template.md), with ``items`` and ``over``."""
    body = {
        "prefix": "88.101.5",
        "version": "1.0.0",
        "industryCategory": "A",
        "industrySpecific": "01",
        "industryTrade": "011",
        "industrySubclass": "0111",
        "type": 1,
        "description": "测试模板",
        "items": list(items) or [spec("e1", "ip", "2000")],
    }
    return body | over


def stored(raw: dict[str, Any], existing: Template | None = None) -> Template:
    """What the node keeps for an SNMS template body: ``template_body`` then the model's own parse."""
    _, body = snms.template_body(raw, existing)
    return parse_template(SNMS_NAME, body)


def by_index(t: Template) -> dict[int, Field]:
    return {f.index: f for f in t.fields}


# parse_item: identifier items ----------------------------------------------------------------


def test_the_documented_item_becomes_a_reference_and_string_values() -> None:
    parsed = snms.parse_item(item(value=[value(), value(2001, "name", "轴承座")]), NOW)
    assert (parsed.handle, parsed.version) == ("88.118.8/001", "1.0.0")
    values = [incoming.value for incoming in parsed.incoming]
    assert values == [
        HandleValue(1001, "TEMPLATE", b"1.0.0", timestamp=NOW),
        HandleValue(2000, "URL", b"www.001.com", timestamp=NOW),
        HandleValue(2001, "name", "轴承座".encode(), timestamp=NOW),
    ]
    assert {incoming.format for incoming in parsed.incoming} == {"string"}
    assert template_reference(HandleRecord(parsed.handle, tuple(values))) == (SNMS_NAME, "1.0.0")


@pytest.mark.parametrize("name", ["handle", "templateVersion", "value"])
@pytest.mark.parametrize("absent", [None, "drop"])
def test_a_missing_member_is_named(name: str, absent: Any) -> None:
    body = item(**{name: absent})
    if absent == "drop":
        del body[name]
    with pytest.raises(ProtocolViolation, match=f"^缺少必要的参数: {name}$"):
        snms.parse_item(body, NOW)


@pytest.mark.parametrize("name", ["handle", "templateVersion"])
def test_an_empty_text_member_counts_as_missing(name: str) -> None:
    with pytest.raises(ProtocolViolation, match=f"^缺少必要的参数: {name}$"):
        snms.parse_item(item(**{name: ""}), NOW)


@pytest.mark.parametrize(
    ("name", "wrong"),
    [("handle", 123), ("handle", ["88.118.8/001"]), ("templateVersion", 1.0), ("templateVersion", True)],
)
def test_text_members_must_be_strings(name: str, wrong: Any) -> None:
    with pytest.raises(ProtocolViolation, match=f"{name}必须是字符串"):
        snms.parse_item(item(**{name: wrong}), NOW)


@pytest.mark.parametrize("wrong", [{"index": 2000}, "2000", 5, []])
def test_value_must_be_a_non_empty_array(wrong: Any) -> None:
    with pytest.raises(ProtocolViolation, match="value"):
        snms.parse_item(item(value=wrong), NOW)


@pytest.mark.parametrize(("name", "limit"), [("handle", 255), ("templateVersion", 128)])
def test_text_members_have_snms_limits(name: str, limit: int) -> None:
    at_limit = "88.118.8/" + "x" * (limit - 9) if name == "handle" else "v" * limit
    assert len(at_limit) == limit
    parsed = snms.parse_item(item(**{name: at_limit}), NOW)
    assert (parsed.handle if name == "handle" else parsed.version) == at_limit
    with pytest.raises(ProtocolViolation, match=f"{name}长度不能超过{limit}"):
        snms.parse_item(item(**{name: at_limit + "x"}), NOW)


def test_the_body_must_be_an_object() -> None:
    for body in ([item()], "x", None, 1):
        with pytest.raises(ProtocolViolation, match="JSON对象"):
            snms.parse_item(body, NOW)


def test_at_most_max_fields_values() -> None:
    many = [value(2000 + n, f"t{n}", "x") for n in range(MAX_FIELDS)]
    assert len(snms.parse_item(item(value=many), NOW).incoming) == MAX_FIELDS + 1
    with pytest.raises(ProtocolViolation, match=str(MAX_FIELDS)):
        snms.parse_item(item(value=[*many, value(2000 + MAX_FIELDS, "one-more", "x")]), NOW)


@pytest.mark.parametrize("index", [1001, "1001"])
def test_index_1001_is_reserved_for_the_template(index: Any) -> None:
    with pytest.raises(InvalidValue, match="1001是保留索引"):
        snms.parse_item(item(value=[value(index)]), NOW)


@pytest.mark.parametrize(("index", "expected"), [("2000", 2000), ("1", 1), (MAX_INDEX, MAX_INDEX), ("0002001", 2001)])
def test_an_index_may_be_a_digit_string(index: Any, expected: int) -> None:
    assert snms.parse_item(item(value=[value(index)]), NOW).incoming[1].value.index == expected


@pytest.mark.parametrize("index", [2000.0, True, "2000.5", "-1", " 2000", "２０００", "0x7d0", [2000], {"n": 1}])
def test_an_index_that_is_no_integer_is_refused(index: Any) -> None:
    with pytest.raises(ProtocolViolation, match="index必须是整数"):
        snms.parse_item(item(value=[value(index)]), NOW)


@pytest.mark.parametrize("index", [0, -1, MAX_INDEX + 1, "99999999999"])
def test_an_index_out_of_range_is_refused(index: Any) -> None:
    with pytest.raises(InvalidValue, match="index必须在1到"):
        snms.parse_item(item(value=[value(index)]), NOW)


def test_a_repeated_index_is_refused_even_spelled_differently() -> None:
    with pytest.raises(InvalidValue, match="索引2000重复"):
        snms.parse_item(item(value=[value(2000, "URL"), value("2000", "name")]), NOW)


@pytest.mark.parametrize(
    ("raw", "error", "words"),
    [
        ("not an object", ProtocolViolation, "value\\[0\\]必须是对象"),
        ({"type": "URL", "data": {"value": "x"}}, ProtocolViolation, "缺少必要的参数: index"),
        ({"index": 2000, "data": {"value": "x"}}, ProtocolViolation, "缺少必要的参数: type"),
        (value(vtype=7), ProtocolViolation, "type必须是字符串"),
        (value(vtype="t" * 129), ProtocolViolation, "type长度不能超过128"),
        ({"index": 2000, "type": "URL"}, ProtocolViolation, "缺少必要的参数: value\\[0\\].data"),
        ({"index": 2000, "type": "URL", "data": "x"}, ProtocolViolation, "value\\[0\\].data"),
        ({"index": 2000, "type": "URL", "data": {"format": "string"}}, ProtocolViolation, "data.value"),
        (value(text=5), ProtocolViolation, "data.value"),
        (value(text="x" * 256), InvalidValue, "长度不能超过255"),
        (value() | {"data": {"format": "base64", "value": "eA=="}}, InvalidValue, "只支持string"),
        (value() | {"data": {"format": "String", "value": "x"}}, InvalidValue, "只支持string"),
        (value() | {"data": {"format": 1, "value": "x"}}, InvalidValue, "只支持string"),
        (value(auth=["1"]), ProtocolViolation, "auth"),
        (value(auth=True), ProtocolViolation, "auth"),
        (value(auth="a" * 65), ProtocolViolation, "auth"),
    ],
)
def test_a_malformed_value_is_refused_in_snms_words(raw: Any, error: type[HandleError], words: str) -> None:
    with pytest.raises(error, match=words):
        snms.parse_item(item(value=[raw]), NOW)


def test_value_limits_count_characters_and_format_may_be_left_out() -> None:
    chinese = "轴" * 255
    parsed = snms.parse_item(
        item(value=[value(text=chinese), {"index": 2001, "type": "a", "data": {"value": ""}}]), NOW
    )
    assert parsed.incoming[1].value.data == chinese.encode()
    assert parsed.incoming[2].value.data == b""


@pytest.mark.parametrize("auth", ["", "1", "0", 1, None, "a" * 64])
def test_auth_is_reserved_and_any_short_spelling_passes(auth: Any) -> None:
    assert snms.parse_item(item(value=[value(auth=auth)]), NOW).incoming[1].value.index == 2000


def test_text_that_is_no_unicode_is_refused_not_crashed() -> None:
    with pytest.raises(InvalidValue):
        snms.parse_item(item(value=[value(text="\ud800")]), NOW)
    with pytest.raises(InvalidValue, match="templateVersion"):
        snms.parse_item(item(templateVersion="1.\udc00"), NOW)


# check_item: SNMS's own rules before the shared template check -------------------------------

TEMPLATE = Template(
    SNMS_NAME,
    "1.0.0",
    (
        Field(2000, "URL", "string", True, 1, 100, label="网址"),
        Field(2001, "name", "string", False, 0, 10, label="名称"),
        Field(2002, "old", "string", True, label="旧", enabled=False),
    ),
)


def checked(*values: dict[str, Any], template: Template | None = TEMPLATE) -> None:
    snms.check_item(snms.fields_of(template), "88.118.8", snms.parse_item(item(value=list(values)), NOW))


def test_an_item_of_enabled_template_items_passes() -> None:
    checked(value(2000, "URL"), value(2001, "name", "x"))


def test_an_index_not_in_the_template_is_refused_as_snms_words_it() -> None:
    with pytest.raises(InvalidValue, match=r"^非法操作，索引1000在模板中不存在$"):
        checked(value(1000, "URL"))


def test_a_value_must_have_its_items_idtype_exactly() -> None:
    with pytest.raises(InvalidValue, match="索引2000的类型必须是模板的idType URL，而不是url"):
        checked(value(2000, "url"))
    with pytest.raises(InvalidValue, match="idType name"):
        checked(value(2000, "URL"), value(2001, "URL"))


def test_a_disabled_item_takes_no_values() -> None:
    with pytest.raises(InvalidValue, match="索引2002（old）在模板中已禁用"):
        checked(value(2000, "URL"), value(2002, "old"))


def test_no_template_at_that_version() -> None:
    with pytest.raises(InvalidValue, match=re.escape("数据模板不存在：前缀88.118.8没有版本为1.0.0的数据模板")):
        checked(value(), template=None)


# template_body, POST: a new template -----------------------------------------------------------


def test_the_documented_template_becomes_the_nodes_template() -> None:
    ref, body = snms.template_body(snms_template(), None)
    assert (ref.prefix, ref.version) == ("88.101.5", "1.0.0")
    t = parse_template(SNMS_NAME, body)
    assert t.industry == ("A", "01", "011", "0111")
    assert (t.object_type, t.description, t.version) == (1, "测试模板", "1.0.0")
    assert t.fields == (Field(2000, "ip", "string", False, 1, 10, label="e1", enabled=True),)


def test_indexes_left_out_are_the_lowest_free_from_2000() -> None:
    t = stored(
        snms_template(spec("a", "A"), spec("b", "B", 2000), spec("c", "C"), spec("d", "D", "2002"), spec("e", "E"))
    )
    assert [(f.type, f.index) for f in t.fields] == [("A", 2001), ("B", 2000), ("C", 2003), ("D", 2002), ("E", 2004)]


@pytest.mark.parametrize(
    ("items", "words"),
    [
        ([spec("a", "ip"), spec("b", "ip")], "idType不能重复：ip"),
        ([spec("名", "ip"), spec("名", "mac")], "name不能重复：名"),
        ([spec("a", "ip", 2000), spec("b", "mac", "2000")], "idIndex不能重复：2000"),
    ],
)
def test_a_repeated_idtype_name_or_idindex_is_refused(items: list[dict[str, Any]], words: str) -> None:
    with pytest.raises(InvalidValue, match=words):
        snms.template_body(snms_template(*items), None)


@pytest.mark.parametrize(("given", "kept"), [(1, 1), (2, 2), ("2", 2)])
def test_object_type_is_1_or_2(given: Any, kept: int) -> None:
    assert stored(snms_template(type=given)).object_type == kept


@pytest.mark.parametrize(("given", "error"), [(0, InvalidValue), (3, InvalidValue), (True, ProtocolViolation)])
def test_another_object_type_is_refused(given: Any, error: type[HandleError]) -> None:
    with pytest.raises(error, match="type"):
        snms.template_body(snms_template(type=given), None)


def test_object_type_and_industry_codes_are_required() -> None:
    for name in ("type", "industryCategory", "industrySpecific", "industryTrade", "industrySubclass", "items"):
        raw = snms_template()
        del raw[name]
        with pytest.raises(ProtocolViolation, match=name):
            snms.template_body(raw, None)
    with pytest.raises(ProtocolViolation, match="industryTrade长度不能超过16"):
        snms.template_body(snms_template(industryTrade="1" * 17), None)


def test_the_description_is_optional_text_of_at_most_255() -> None:
    raw = snms_template()
    del raw["description"]
    assert stored(raw).description == ""
    assert stored(snms_template(description="描" * 255)).description == "描" * 255
    for wrong in ("描" * 256, 5, ["x"]):
        with pytest.raises(ProtocolViolation, match="description"):
            snms.template_body(snms_template(description=wrong), None)


def test_a_new_template_needs_items() -> None:
    with pytest.raises(ProtocolViolation, match="items必须是非空数组"):
        snms.template_body(snms_template(items=[]), None)


def test_state_is_optional_on_post_and_may_disable() -> None:
    plain = spec("a", "A")
    del plain["state"]
    t = stored(snms_template(plain, spec("b", "B", state=0)))
    assert [f.enabled for f in t.fields] == [True, False]


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        ({"idIndex": 1999}, InvalidValue, "idIndex必须从2000开始"),
        ({"idIndex": MAX_INDEX + 1}, InvalidValue, "idIndex必须从2000开始"),
        ({"idIndex": "x"}, ProtocolViolation, "idIndex必须是整数"),
        ({"required": "true"}, ProtocolViolation, "required必须是true或false"),
        ({"state": 2}, InvalidValue, "state必须是0"),
        ({"name": ""}, ProtocolViolation, "缺少必要的参数: name"),
        ({"name": "n" * 256}, ProtocolViolation, "name长度不能超过255"),
        ({"idType": None}, ProtocolViolation, "缺少必要的参数: idType"),
        ({"metadata": None}, ProtocolViolation, "metadata"),
        ({"metadata": [1, 10]}, ProtocolViolation, "metadata"),
        ({"metadata": {"type": "String", "minLength": 1, "maxLength": 10}}, InvalidValue, "小写string"),
        ({"metadata": {"type": "int", "minLength": 1, "maxLength": 10}}, InvalidValue, "小写string"),
        ({"metadata": {"maxLength": 10}}, ProtocolViolation, "minLength"),
        ({"metadata": {"minLength": 1}}, ProtocolViolation, "maxLength"),
        ({"metadata": {"minLength": 11, "maxLength": 10}}, InvalidValue, "minLength ≤ maxLength"),
        ({"metadata": {"minLength": -1, "maxLength": 10}}, InvalidValue, "0 ≤ minLength"),
        ({"metadata": {"minLength": 0, "maxLength": 1_000_001}}, InvalidValue, "maxLength"),
    ],
)
def test_a_malformed_template_item_is_refused(change: dict[str, Any], error: type[HandleError], words: str) -> None:
    with pytest.raises(error, match=words):
        snms.template_body(snms_template(spec("e1", "ip") | change), None)


def test_metadata_type_may_be_left_out_and_lengths_may_be_digit_strings() -> None:
    t = stored(snms_template(spec("e1", "ip", metadata={"minLength": "0", "maxLength": "255"})))
    assert (t.fields[0].data_type, t.fields[0].min_length, t.fields[0].max_length) == ("string", 0, 255)


@pytest.mark.parametrize("version", ["", " 1.0", "1.0 ", "1.\n0", "v" * 129, 1.0])
def test_a_bad_version_is_refused(version: Any) -> None:
    with pytest.raises(HandleError, match="version"):
        snms.template_body(snms_template(version=version), None)


# template_body, PUT: an incremental edit ---------------------------------------------------------

EXISTING_ITEMS = (
    spec("地址", "ip", 2000),
    spec("物理地址", "mac", 2001, required=True, metadata={"minLength": 12, "maxLength": 17}),
    spec("序列号", "sn", 2003, state=0),
)


@pytest.fixture
def existing() -> Template:
    return stored(snms_template(*EXISTING_ITEMS))


def test_an_item_matched_on_idindex_and_idtype_is_updated(existing: Template) -> None:
    change = spec("MAC", "mac", "2001", required=False, state=0, metadata={"minLength": 1, "maxLength": 64})
    t = stored(snms_template(change), existing)
    edited = by_index(t)[2001]
    assert (edited.label, edited.required, edited.enabled, edited.min_length, edited.max_length) == (
        "MAC",
        False,
        False,
        1,
        64,
    )
    assert by_index(t)[2000] == by_index(existing)[2000]
    assert by_index(t)[2003] == by_index(existing)[2003]


def test_an_idindex_held_by_another_idtype_is_refused(existing: Template) -> None:
    with pytest.raises(InvalidValue, match="模板索引2000已被属性ip使用，不能用于mac"):
        snms.template_body(snms_template(spec("x", "mac", 2000)), existing)


def test_new_items_take_the_lowest_free_indexes(existing: Template) -> None:
    t = stored(snms_template(spec("新一", "new1"), spec("新二", "new2"), spec("新三", "new3", 2010)), existing)
    assert {f.type: f.index for f in t.fields} == {
        "ip": 2000,
        "mac": 2001,
        "sn": 2003,
        "new1": 2002,
        "new2": 2004,
        "new3": 2010,
    }


def test_an_idindex_not_in_the_template_adds_an_item_there(existing: Template) -> None:
    t = stored(snms_template(spec("新", "new", 2002)), existing)
    assert by_index(t)[2002].type == "new"
    assert len(t.fields) == 4


def test_items_left_out_are_kept_as_they_were(existing: Template) -> None:
    t = stored(snms_template(items=[]), existing)
    assert t.fields == existing.fields
    t = stored(snms_template(spec("新", "new")), existing)
    assert {f.index: f for f in t.fields if f.type != "new"} == by_index(existing)


def test_a_disabled_item_stays_disabled_and_can_be_enabled_again(existing: Template) -> None:
    assert not by_index(stored(snms_template(spec("x", "ip", 2000)), existing))[2003].enabled
    assert by_index(stored(snms_template(spec("序列号", "sn", 2003, state=1)), existing))[2003].enabled


def test_an_existing_item_sent_without_its_idindex_is_a_new_one_and_collides(existing: Template) -> None:
    with pytest.raises(InvalidValue, match="idType不能重复：ip"):
        snms.template_body(snms_template(spec("新地址", "ip")), existing)
    with pytest.raises(InvalidValue, match="name不能重复：地址"):
        snms.template_body(snms_template(spec("地址", "ip2")), existing)


def test_state_is_required_on_put(existing: Template) -> None:
    change = spec("地址", "ip", 2000)
    del change["state"]
    with pytest.raises(ProtocolViolation, match="缺少必要的参数: state"):
        snms.template_body(snms_template(change), existing)


def test_the_templates_own_attributes_are_replaced(existing: Template) -> None:
    t = stored(snms_template(items=[], type=2, description="新的", industryCategory="C"), existing)
    assert (t.object_type, t.description, t.industry[0]) == (2, "新的", "C")


def test_a_template_made_through_the_rest_api_can_be_edited() -> None:
    """Its fields have no display names or lengths: names do not collide and lengths are kept unset."""
    rest = parse_template(
        SNMS_NAME,
        {"version": "1.0.0", "fields": [{"index": 2000, "type": "a"}, {"index": 2001, "type": "b", "dataType": "url"}]},
    )
    t = stored(snms_template(spec("新", "c")), rest)
    assert [(f.index, f.type, f.data_type, f.max_length) for f in t.fields] == [
        (2000, "a", "string", None),
        (2001, "b", "url", None),
        (2002, "c", "string", 10),
    ]


# template_json: GET's answer, and round trips ----------------------------------------------------


def test_template_json_gives_back_what_was_posted() -> None:
    posted = snms_template(
        spec("地址", "ip", 2000),
        spec("物理地址", "mac", 2001, required=True, metadata={"type": "string", "minLength": 12, "maxLength": 17}),
        spec("序列号", "sn", 2003, state=0),
    )
    shown = snms.template_json("88.101.5", stored(posted))
    assert shown == posted | {"name": ""}


def test_template_json_round_trips_through_the_model() -> None:
    t = stored(snms_template(*EXISTING_ITEMS, description="描述"))
    assert parse_template(SNMS_NAME, template_to_json(t)) == t
    shown = snms.template_json("88.101.5", t)
    assert stored(shown) == t
    assert stored(shown, t) == t  # a PUT of what GET showed changes nothing


# violations(): a disabled field is no longer required ---------------------------------------------


def record(*values: tuple[int, str, str]) -> HandleRecord:
    reference = HandleValue(1001, "TEMPLATE", b"1.0.0")
    return HandleRecord("88.118.8/1", (reference, *(HandleValue(i, t, d.encode()) for i, t, d in values)))


def test_a_disabled_required_field_is_not_required() -> None:
    assert violations(TEMPLATE, record((2000, "URL", "www.x.cn"))) == []


def test_an_enabled_required_field_is_still_required() -> None:
    assert violations(TEMPLATE, record((2001, "name", "n"))) == ["required field URL (index 2000) is missing"]


def test_values_a_record_has_at_a_disabled_field_still_pass() -> None:
    assert violations(TEMPLATE, record((2000, "URL", "u"), (2002, "old", "kept"))) == []


def test_the_shared_check_still_applies_lengths_and_unknown_fields() -> None:
    problems = violations(TEMPLATE, record((2000, "URL", ""), (2001, "name", "x" * 11), (2005, "x", "y")))
    assert problems == [
        "field URL (index 2000) is shorter than 1 characters",
        "field name (index 2001) is longer than 10 characters",
        "index 2005 is not a field of template snms@1.0.0",
    ]


# status_of / message_of: SNMS's status and words ----------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (ResponseCode.SUCCESS, 1),
        (ResponseCode.AUTHENTICATION_NEEDED, -1),
        (ResponseCode.INSUFFICIENT_PERMISSIONS, -3),
        (ResponseCode.INVALID_ADMIN, -3),
        (ResponseCode.ERROR, -4),
        (ResponseCode.SERVER_TOO_BUSY, -4),
        (ResponseCode.HANDLE_ALREADY_EXISTS, -2),
        (ResponseCode.HANDLE_NOT_FOUND, -2),
        (ResponseCode.INVALID_VALUE, -2),
        (ResponseCode.PROTOCOL_ERROR, -2),
        (ResponseCode.AUTHENTICATION_FAILED, -2),
        (ResponseCode.SERVER_NOT_RESPONSIBLE, -2),
    ],
)
def test_status_of(code: ResponseCode, status: int) -> None:
    assert snms.status_of(code) == status


def test_already_exists_and_not_found_are_in_snms_documented_words() -> None:
    exists = HandleAlreadyExists("handle 88.118.8/1 already exists")
    assert snms.refusal(exists) == (-2, "标识已存在")
    missing = HandleNotFound("handle 88.118.8/1 not found")
    assert snms.refusal(missing) == (-2, "没有找到标识")  # handle-operate.md, single delete
    assert snms.refusal(missing, single=False) == (-2, "标识不存在")  # the batch forms' msg


def test_other_not_found_keeps_its_own_message() -> None:
    assert snms.message_of(ResponseCode.HANDLE_NOT_FOUND, "template 88.1/snms@2 is not defined") == (
        "template 88.1/snms@2 is not defined"
    )


def test_messages_say_the_kind_in_chinese_and_keep_the_reason() -> None:
    assert snms.message_of(ResponseCode.INVALID_VALUE, "field x is too long") == "数据不合法：field x is too long"
    assert snms.message_of(ResponseCode.INVALID_HANDLE, "bad") == "标识不合法：bad"
    assert snms.message_of(ResponseCode.SERVER_NOT_RESPONSIBLE, "88.9") == "本节点不负责该标识：88.9"
    assert snms.refusal(InsufficientPermissions("lacks add handle")) == (-3, "没有权限：lacks add handle")
    assert snms.refusal(StoreUnavailable("store down")) == (-4, "系统繁忙：store down")
    assert snms.message_of(ResponseCode.ERROR, "boom") == "boom"


def test_a_message_already_in_chinese_is_passed_as_it_is() -> None:
    said = "非法操作，索引1000在模板中不存在"
    assert snms.refusal(InvalidValue(said)) == (-2, said)


# Properties: nothing but HandleError comes out, whatever comes in -------------------------------------

chars = st.one_of(
    st.characters(codec="utf-8"),
    st.characters(max_codepoint=0xA0),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    st.sampled_from("标/.: 0123456789"),
)
texts = st.one_of(st.text(chars, max_size=12), st.sampled_from(["", "1001", "2000", "string", "x" * 300]))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([0, 1, 1001, 1999, 2000, MAX_INDEX, MAX_INDEX + 1]),
    st.floats(),
    texts,
)
KEYS = ["handle", "templateVersion", "value", "index", "type", "data", "format", "auth", "idIndex", "idType", "name"]
json_like = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.one_of(st.sampled_from(KEYS), texts), children, max_size=5)
    ),
    max_leaves=20,
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly well-formed, sometimes anything: so the parser gets deep before it meets the junk."""
    return st.one_of(strategy, strategy, json_like)


index_like = st.one_of(st.integers(min_value=-5, max_value=3000), st.integers().map(str), scalars)
data_like = st.fixed_dictionaries({"value": maybe(texts)}, optional={"format": maybe(st.just("string"))})
value_like = st.fixed_dictionaries(
    {"index": maybe(index_like), "type": maybe(texts), "data": maybe(data_like)},
    optional={"auth": maybe(st.one_of(texts, st.integers()))},
)
item_like = st.fixed_dictionaries(
    {"handle": maybe(texts), "templateVersion": maybe(texts), "value": maybe(st.lists(maybe(value_like), max_size=4))}
)


@FAST
@given(maybe(item_like))
def test_parse_item_refuses_any_junk_with_a_handle_error(raw: Any) -> None:
    before = copy.deepcopy(raw)
    try:
        parsed = snms.parse_item(raw, NOW)
    except HandleError as exc:
        assert exc.message
        return
    finally:
        assert raw == before or raw != raw  # untouched (NaN is never equal to itself)
    assert parsed.incoming[0].value.index == 1001
    assert len({v.value.index for v in parsed.incoming}) == len(parsed.incoming)
    assert all(1 <= v.value.index <= MAX_INDEX and len(v.value.data) <= 255 * 4 for v in parsed.incoming)


@FAST
@given(
    st.lists(
        st.tuples(st.text("abc标", min_size=1, max_size=3), st.none() | st.integers(2000, 2010)),
        min_size=1,
        max_size=8,
    ),
)
def test_post_numbering_is_unique_and_keeps_the_given_indexes(given_items: list[tuple[str, int | None]]) -> None:
    items = [spec(f"n{n}", f"{name}{n}", index) for n, (name, index) in enumerate(given_items)]
    try:
        t = stored(snms_template(*items))
    except InvalidValue as exc:
        given_indexes = [i for _, i in given_items if i is not None]
        assert "idIndex不能重复" in exc.message and len(set(given_indexes)) < len(given_indexes)
        return
    indexes = [f.index for f in t.fields]
    assert len(set(indexes)) == len(indexes) and min(indexes) >= 2000
    assert all(i is None or f.index == i for (_, i), f in zip(given_items, t.fields, strict=True))
    free = sorted(set(range(2000, 2000 + 2 * len(items) + 11)) - {i for _, i in given_items if i is not None})
    assert (
        sorted(f.index for (_, i), f in zip(given_items, t.fields, strict=True) if i is None)
        == free[: sum(i is None for _, i in given_items)]
    )


metadata_like = st.fixed_dictionaries(
    {"minLength": maybe(index_like), "maxLength": maybe(index_like)}, optional={"type": maybe(texts)}
)
template_item_like = st.fixed_dictionaries(
    {"name": maybe(texts), "idType": maybe(texts), "metadata": maybe(metadata_like)},
    optional={"idIndex": maybe(index_like), "required": maybe(st.booleans()), "state": maybe(index_like)},
)
template_like = st.fixed_dictionaries(
    {
        "prefix": maybe(texts),
        "version": maybe(texts),
        "type": maybe(index_like),
        "items": maybe(st.lists(maybe(template_item_like), max_size=4)),
    }
    | {k: maybe(texts) for k in ("industryCategory", "industrySpecific", "industryTrade", "industrySubclass")},
    optional={"description": maybe(texts)},
)


@FAST
@given(maybe(template_like), st.booleans())
def test_template_body_refuses_any_junk_with_a_handle_error(raw: Any, editing: bool) -> None:
    existing = stored(snms_template(*EXISTING_ITEMS)) if editing else None
    try:
        ref, body = snms.template_body(raw, existing)
        t = parse_template(SNMS_NAME, body)
    except HandleError as exc:
        assert exc.message
        return
    assert t.version == ref.version
    if existing is not None:
        assert {f.index for f in existing.fields} <= {f.index for f in t.fields}


def _outcome(parse: Any, raw: Any) -> Any:
    try:
        return parse(raw, NOW)
    except HandleError as exc:
        return type(exc), exc.message


edge_texts = st.one_of(st.sampled_from(["", "URL", "\ud800", "x" * 128, "x" * 129, "x" * 255, "x" * 256]), texts)
edge_value: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "index": st.sampled_from([0, 1, 1000, 1001, 2000, 2001, MAX_INDEX, MAX_INDEX + 1, "2000", True, None, 2000.0]),
        "type": edge_texts,
        "data": st.one_of(
            st.fixed_dictionaries(
                {"value": st.one_of(edge_texts, st.none(), st.integers())},
                optional={"format": st.sampled_from(["string", "String", "hex", None])},
            ),
            st.none(),
        ),
    },
    optional={"auth": st.sampled_from(["", "1", "x" * 64, "x" * 65, 1, True, None, []])},
)
usual_item = st.fixed_dictionaries(
    {"handle": edge_texts, "templateVersion": edge_texts, "value": st.lists(edge_value, min_size=0, max_size=3)}
)


@FAST
@given(st.one_of(usual_item, maybe(item_like)))
def test_the_fast_path_answers_as_the_checked_one(raw: Any) -> None:
    """parse_item takes the usual shape inline: on any input it must agree with parse_item_checked."""
    assert _outcome(snms.parse_item, raw) == _outcome(snms.parse_item_checked, raw)
