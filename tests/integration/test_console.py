"""The web console at /console/: served by a real node, driven in a real headless Chromium.

Every browser test runs once in each of the console's languages (the browser asking for
English, then for Chinese) and checks that the page asked nothing of any origin but the
node's, raised no script error and asked for no text it does not have; without a Chromium
they skip, saying why (tests/support/chromium.py). test_console_language.py tests the
languages themselves. Every view is also shown records, handles, identities, templates and
audit messages that carry script payloads, and must show them as text (issue #21's probe;
``test_script_payloads_stay_text``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from playwright.sync_api import Locator, Page, expect

from protocol.wire import keys, sm2
from resolver.http.console_routes import CONTENT_TYPES
from tests.support.chromium import NO_BROWSER
from tests.support.console import (
    ENTERPRISE,
    PREFIX,
    SEED,
    TEMPLATE,
    Console,
    data_at,
    give_prefix,
    motor,
    signed_in,
)
from tests.support.nodeproc import ADMIN, NODE_PREFIX, Node, url_value

# Served by the node ----------------------------------------------------------------------


def test_console_is_served_with_a_strict_policy(console_node: Node) -> None:
    moved = console_node.get("/console")
    assert (moved.status, moved.headers["location"]) == (301, "/console/")
    page = console_node.get("/console/")
    assert page.status == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "unsafe" not in policy
    assert page.headers["cache-control"] == "no-cache" and page.headers["x-content-type-options"] == "nosniff"
    html = page.body.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
    assert not re.search(r"<style|\sstyle=|\son\w+=", html), "inline style or handler"
    assert not re.search(r"""(src|href)=["'](https?:)?//""", html), "a file from elsewhere"
    for asset in re.findall(r'(?:src|href)="([^"#]+)"', html):
        name, _, version = asset.partition("?v=")
        served = console_node.get("/console/" + asset)
        assert served.status == 200 and served.headers["content-type"] == CONTENT_TYPES[name]
        assert hashlib.sha256(served.body).hexdigest().startswith(version)  # a new file gets a new URL
        assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert console_node.get("/console/" + name).headers["cache-control"] == "no-cache"
        again = console_node.get("/console/" + asset, headers={"If-None-Match": served.headers["etag"]})
        assert (again.status, again.body) == (304, b"")
    assert console_node.get("/console/missing.js").status == 404


def test_the_console_files_ship_in_the_package() -> None:
    """Read where the installed package keeps them, and named by pyproject's package data,
    so a non-editable ``pip install .`` carries every file the node serves."""
    folder = resources.files("resolver.http").joinpath("console")
    shipped = {entry.name for entry in folder.iterdir() if entry.is_file()}
    assert set(CONTENT_TYPES) <= shipped
    config = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["resolver.http"]
    assert all(any(fnmatch.fnmatch(f"console/{name}", p) for p in patterns) for name in shipped)
    # and the node serves every module that another imports (app.js imports by plain name)
    imported = {m for name in shipped if name.endswith(".js") for m in MODULE_IMPORT.findall(read(folder, name))}
    assert imported and imported <= set(CONTENT_TYPES)


MODULE_IMPORT = re.compile(r'^import [^;]+ from "\./([\w.]+)";', re.M)


def read(folder: Any, name: str) -> str:
    return str(folder.joinpath(name).read_text(encoding="utf-8"))


# In the browser --------------------------------------------------------------------------


@NO_BROWSER
def test_sign_in_shows_your_prefix_its_count_and_chart(console: Console) -> None:
    page = console.page
    console.sign_in("not-the-secret")
    expect(page.locator("#signin-error")).to_contain_text(console.says("Wrong identity or secret", "身份或密钥错误"))
    assert page.evaluate("sessionStorage.length") == 0
    console.shot("signin")
    page.fill("#signin-secret", ENTERPRISE[1])
    page.click("#signin-submit")
    card = page.locator(f'.prefix-card[data-prefix="{PREFIX}"]')
    expect(card).to_be_visible()
    stats = console.node.get(f"/api/stats?prefix={PREFIX}", auth=ENTERPRISE).json["prefixes"]
    (mine,) = [s for s in stats if s["prefix"] == PREFIX]
    expect(card.locator(".count")).to_have_text(f"{mine['handles']:,}")
    assert page.locator(".prefix-card").count() == 1  # the node's own prefix is not this enterprise's
    bars = card.locator("svg.chart rect.bar")
    assert bars.count() == 30
    day, registered = max(mine["registrationsPerDay"].items())
    assert card.locator(f'rect.bar[data-day="{day}"]').get_attribute("data-count") == str(registered)
    last = datetime.fromisoformat(bars.last.get_attribute("data-day") or "")
    shown = console.says(f"{last:%b} {last.day}", f"{last.month}月{last.day}日")  # the chart's last day
    expect(card.locator("svg.chart text.label").nth(1)).to_have_text(shown)
    count = f"{mine['handles']:,}"
    plural = "" if mine["handles"] == 1 else "s"
    expect(card.locator(".count-line")).to_have_text(console.says(f"{count} identifier{plural}", f"{count} 个标识"))
    assert page.evaluate("localStorage.length") == 0 and page.evaluate("sessionStorage.length") == 2
    console.shot("dashboard")
    page.click("#signout")
    expect(page.locator("#signin-form")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


@NO_BROWSER
def test_the_node_admin_sees_every_prefix(console: Console) -> None:
    assert ADMIN is not None
    console.sign_in(ADMIN[1], ADMIN[0])
    expect(console.page.locator(f'.prefix-card[data-prefix="{PREFIX}"]')).to_be_visible()
    served = console.node.get("/api/prefixes").json["prefixes"]
    shown = console.page.locator(".prefix-card").evaluate_all("cards => cards.map(c => c.dataset.prefix)")
    assert shown == served and NODE_PREFIX in shown


@NO_BROWSER
def test_create_edit_and_delete_with_the_template_form(console: Console, name: str) -> None:
    page, node = signed_in(console).page, console.node
    handle = f"{PREFIX}/C-{name}"
    console.go(f"#/new?prefix={PREFIX}")
    page.fill("#suffix", f"C-{name}")
    page.fill("#field-2000", "M" * 17)
    page.fill("#field-2001", "2026-11-27")
    page.click("#save")
    expect(page.locator("#error-2000")).to_have_text(
        console.says(
            "productName is 17 characters long; at most 16 are allowed", "productName：长度为 17 个字符，最多 16 个"
        )
    )
    expect(page.locator("#form-error")).to_contain_text(console.says("nothing was sent", "尚未发送任何内容"))
    console.shot("new-identifier")
    assert console.writes() == [] and node.get("/api/handles/" + handle).status == 404

    page.fill("#field-2000", "Motor M3")
    page.select_option("#field-2002", "B")
    page.fill("#field-1", "https://example.com/m3")
    page.click("#save")
    expect(page.locator("#record-handle")).to_have_text(handle)
    assert data_at(node, handle, 2000) == "Motor M3" and data_at(node, handle, 2002) == "B"
    assert data_at(node, handle, 1001) == "motor@1.0" and data_at(node, handle, 1) == "https://example.com/m3"
    console.shot("identifier")

    console.go(f"#/new?prefix={PREFIX}")  # the same handle again: the node refuses, the page says why
    page.fill("#suffix", f"C-{name}")
    page.fill("#field-2000", "Another")
    page.fill("#field-2001", "2026-11-28")
    page.click("#save")
    # the node's message as it sent it, in the page's words around it
    refused = f"handle {handle} already exists" + console.says(" (HTTP 409, code 101)", "（HTTP 409，响应码 101）")
    expect(page.locator("#form-error")).to_have_text(console.says("The node refused: ", "节点拒绝了请求：") + refused)
    assert data_at(node, handle, 2000) == "Motor M3"

    extra = {"index": 3, "type": "EMAIL", "data": "qa@example.com"}
    assert node.put(f"/api/handles/{handle}?index=3", extra, auth=ENTERPRISE).status == 200
    console.go(f"#/handle?h={handle}")
    page.click("#edit")
    expect(page.locator("#field-2000")).to_have_value("Motor M3")
    expect(page.locator("#kept-values")).to_contain_text("3 EMAIL")
    page.fill("#field-2000", "Motor M4")
    page.click("#save")
    expect(page.locator("#flash")).to_have_text(console.says(f"Saved {handle}.", f"已保存 {handle}。"))
    assert data_at(node, handle, 2000) == "Motor M4" and data_at(node, handle, 2002) == "B"
    assert data_at(node, handle, 3) == "qa@example.com"

    page.click("#delete")
    expect(page.locator("#delete")).to_have_text(console.says(f"Really delete {handle}?", f"确定删除 {handle}？"))
    page.click("#delete")  # armed by the first click
    expect(page.locator("#flash")).to_have_text(console.says(f"Deleted {handle}.", f"已删除 {handle}。"))
    assert node.get("/api/handles/" + handle).status == 404


@NO_BROWSER
def test_browse_pages_and_search(console: Console, name: str) -> None:
    node = console.node
    handles = [f"{PREFIX}/B-{name}-{n:03d}" for n in range(60)]
    operations = [{"op": "create", "handle": h, "values": motor(f"Motor {n}")} for n, h in enumerate(handles)]
    assert node.request("POST", "/api/batch", {"operations": operations}, auth=ENTERPRISE).status == 200
    total = node.get(f"/api/handles?prefix={PREFIX}&pageSize=0", auth=ENTERPRISE).json["totalCount"]
    page = signed_in(console).page
    console.go(f"#/handles?prefix={PREFIX}")
    shown = f"{int(total):,}"  # grouped by commas in both languages
    expect(page.locator("#handle-summary")).to_have_text(
        console.says(f"1–50 of {shown} identifiers", f"第 1–50 个，共 {shown} 个标识")
    )
    assert page.locator("#handle-list li").count() == 50
    console.shot("identifiers")
    page.click("#next-page")
    expect(page.locator("#handle-summary")).to_contain_text(
        console.says(f"51–{min(int(total), 100)} of {shown}", f"第 51–{min(int(total), 100)} 个，共 {shown} 个")
    )
    page.fill("#search", f"b-{name}-04")  # case-insensitive
    page.click("#search-form button[type=submit]")
    expect(page.locator("#handle-summary")).to_have_text(
        console.says(f"10 found for “b-{name}-04”.", f"找到 10 个包含“b-{name}-04”的标识。")
    )
    assert page.locator("#handle-list li").all_inner_texts() == handles[40:50]


@NO_BROWSER
def test_upload_csv_and_json_lines_in_batches(console: Console, name: str, tmp_path: Path) -> None:
    node = console.node
    rows = [f'U-{name}-{n},https://example.com/{n},motor@1.0,"Motor, ""big"" {n}",2026-11-2{n}' for n in range(5)]
    rows.append(f"U-{name}-bad,https://example.com/bad,motor@1.0,Bad motor,not-a-date")
    csv = tmp_path / "motors.csv"
    csv.write_text("handle,1:URL,1001:HS_TEMPLATE,2000:productName,2001:made\r\n" + "\r\n".join(rows) + "\r\n")
    page = signed_in(console).page
    console.go(f"#/upload?prefix={PREFIX}")
    page.set_input_files("#upload-file", str(csv))
    page.fill("#upload-batch", "2")
    page.click("#upload-submit")
    expect(page.locator("#upload-status")).to_have_text(
        console.says(
            "Done: 3 of 3 batches, 5 records written, 1 failed.", "完成：已发送 3/3 批，写入 5 条记录，失败 1 条。"
        )
    )
    expect(page.locator("#upload-percent")).to_have_text("100%")
    assert page.eval_on_selector("#upload-progress", "p => [p.value, p.max]") == [6, 6]
    expect(page.locator("#upload-failures")).to_contain_text(f"{PREFIX}/U-{name}-bad")
    console.shot("upload")
    assert len([w for w in console.writes() if w.startswith("POST")]) == 3
    for n in range(5):
        assert data_at(node, f"{PREFIX}/U-{name}-{n}", 2000) == f'Motor, "big" {n}'
    assert node.get(f"/api/handles/{PREFIX}/U-{name}-bad").status == 404

    lines: list[dict[str, Any]] = [{"handle": f"J-{name}-{n}", "values": motor(f"JSON motor {n}")} for n in range(3)]
    lines[0]["handle"] = f"{PREFIX}/J-{name}-0"  # a full handle is taken as it is
    lines[2] = {**node.get("/api/handles/" + SEED).json, "handle": f"J-{name}-2"}  # what GET (and export) give
    jsonl = tmp_path / "motors.jsonl"
    jsonl.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    page.set_input_files("#upload-file", str(jsonl))
    page.fill("#upload-batch", "1000")
    page.click("#upload-submit")
    expect(page.locator("#upload-status")).to_have_text(
        console.says(
            "Done: 1 of 1 batches, 3 records written, 0 failed.", "完成：已发送 1/1 批，写入 3 条记录，失败 0 条。"
        )
    )
    expect(page.locator("#upload-percent")).to_have_text("100%")
    for n in range(2):
        assert data_at(node, f"{PREFIX}/J-{name}-{n}", 2000) == f"JSON motor {n}"
    assert data_at(node, f"{PREFIX}/J-{name}-2", 2000) == "Seed motor"


@NO_BROWSER
def test_audit_log_shows_writes_and_refusals(console: Console, name: str) -> None:
    node = console.node
    handle = f"{PREFIX}/A-{name}"
    assert node.put("/api/handles/" + handle, {"values": motor("Audited")}, auth=ENTERPRISE).status == 201
    again = node.put(f"/api/handles/{handle}?overwrite=false", {"values": motor("Again")}, auth=ENTERPRISE)
    assert again.status == 409
    page = signed_in(console).page
    console.go(f"#/audit?prefix={PREFIX}")
    rows = page.locator("#audit-table tbody tr", has_text=handle)
    expect(rows).to_have_count(2)
    newest, oldest = rows.nth(0), rows.nth(1)
    expect(newest).to_have_class("refused")
    expect(newest.locator("[data-code]")).to_have_text(f"101 handle {handle} already exists")  # as the node says
    expect(oldest.locator("[data-op]")).to_have_attribute("data-op", "create")
    expect(oldest.locator("[data-op]")).to_have_text(console.says("create", "创建"))
    expect(oldest.locator("[data-code]")).to_have_text(console.says("ok", "成功"))
    expect(oldest).to_contain_text(ENTERPRISE[0])
    # times to the second in UTC, as the language writes them
    at = datetime.fromisoformat(oldest.locator("time").get_attribute("datetime") or "")
    expect(oldest.locator("time")).to_have_text(console.says(f"{at:%m/%d/%Y, %H:%M:%S}", f"{at:%Y/%m/%d %H:%M:%S}"))
    since = datetime.now(UTC).date() - timedelta(days=7)
    shown = console.says(f"{since:%B} {since.day}, {since.year}", f"{since.year}年{since.month}月{since.day}日")
    expect(page.locator("#audit-summary")).to_contain_text(shown)
    console.shot("audit")


@NO_BROWSER
def test_resolve_any_identifier_signed_in_or_not(console: Console) -> None:
    page = console.page
    console.open("#/resolve")
    page.fill("#resolve-handle", SEED)
    page.click("#resolve-submit")
    expect(page.locator('#resolve-result tr[data-index="2000"]')).to_contain_text("Seed motor")
    console.shot("resolve")
    page.fill("#resolve-handle", f"{PREFIX}/NO-SUCH-HANDLE")
    page.click("#resolve-submit")
    expect(page.locator("#resolve-error")).to_contain_text(
        console.says("not found (HTTP 404, code 100)", "not found（HTTP 404，响应码 100）")
    )
    page.fill("#resolve-handle", f"0.NA/{PREFIX}")
    page.click("#resolve-submit")
    expect(page.locator('#resolve-result tr[data-index="100"]')).to_contain_text("HS_ADMIN")


@NO_BROWSER
def test_an_sm2_key_shows_its_type_and_its_pem_text(console: Console, name: str) -> None:
    pem = keys.sm2_pem(sm2.generate_private_key().public_key()).decode()
    handle = f"{PREFIX}/SM2-{name}"
    values = {"values": [{"index": 300, "type": "HS_PUBKEY", "data": pem}]}
    assert console.node.put(f"/api/handles/{handle}", values, auth=ENTERPRISE).status == 201
    console.open("#/resolve")
    console.page.fill("#resolve-handle", handle)
    console.page.click("#resolve-submit")
    cell = console.page.locator('#resolve-result tr[data-index="300"] td.data')
    expect(cell).to_contain_text("SM2: -----BEGIN PUBLIC KEY-----")
    expect(cell).to_contain_text(pem.splitlines()[1])
    expect(cell).to_have_attribute("translate", "no")  # "SM2:" is the key's data, not a text of the console's


# Dot segments: a handle's "." and ".." are part of its name, never a path step ---------------

DOTTED = "88.118.8/../88.118.9/Q1"  # handle.net allows any suffix; the browser would read "88.118.9/Q1"
VICTIM = "88.118.9/Q1"


def url_of(node: Node, path: str) -> str | None:
    """The URL at index 1 of the record at ``path`` (sent as it is), or None when there is none."""
    reply = node.get(path)
    if reply.status == 404:
        return None
    return str(next(v["data"]["value"] for v in reply.json["values"] if v["index"] == 1))


def test_the_rest_api_takes_encoded_dot_segments_literally(console_node: Node) -> None:
    """``%2E%2E`` (what curl or a client library may send) and ``%2F..%2F`` (what the console
    sends) both name the record whose suffix holds ``..``; neither reaches ``88.118.9/Q2``."""
    node, owner, other = console_node, give_prefix(console_node, "88.118.8"), give_prefix(console_node, "88.118.9")
    victim, dotted = "88.118.9/Q2", "88.118.8/../88.118.9/Q2"
    assert node.put("/api/handles/" + victim, {"values": [url_value(1, "https://victim")]}, auth=other).status == 201
    made = node.put("/api/handles/" + dotted, {"values": [url_value(1, "https://dotted")]}, auth=owner)
    assert made.status == 201
    assert url_of(node, "/api/handles/88.118.8%2F..%2F88.118.9/Q2") == "https://dotted"
    assert node.get("/api/handles/88.118.8/%2e%2E/88.118.9/Q2").json["handle"] == dotted
    assert node.delete("/api/handles/88.118.8/%2E%2E/88.118.9/Q2", auth=ADMIN).status == 200
    assert url_of(node, "/api/handles/" + dotted) is None
    assert url_of(node, "/api/handles/" + victim) == "https://victim"
    odd = "88.118.8/./a%b?c#d"
    escaped = "/api/handles/88.118.8/%2E/a%25b%3Fc%23d"
    assert node.put(escaped, {"values": [url_value(1, "https://odd")]}, auth=owner).status == 201
    assert node.get("/api/handles/88.118.8%2F.%2Fa%25b%3Fc%23d").json["handle"] == odd


@NO_BROWSER
def test_the_console_views_edits_and_deletes_a_dotted_handle_not_the_one_it_spells(console: Console) -> None:
    node, owner, other = console.node, give_prefix(console.node, "88.118.8"), give_prefix(console.node, "88.118.9")
    assert node.put("/api/templates/88.118.8/motor", TEMPLATE, auth=owner).status in (200, 201)
    victim = node.put("/api/handles/" + VICTIM, {"values": [url_value(1, "https://victim")]}, auth=other)
    assert victim.status in (200, 201)  # made by the test in the other language, or not
    assert node.put("/api/handles/" + DOTTED, {"values": motor("Dotted motor")}, auth=owner).status == 201
    assert ADMIN is not None
    console.sign_in(ADMIN[1], ADMIN[0])
    page = console.page
    expect(page.locator(".prefix-card").first).to_be_visible()
    console.go("#/handles?prefix=88.118.8")
    page.click(f"#handle-list a:text-is('{DOTTED}')")
    expect(page.locator("#record-handle")).to_have_text(DOTTED)
    expect(page.locator('tr[data-index="2000"]')).to_contain_text("Dotted motor")

    page.click("#edit")
    expect(page.locator("#field-2000")).to_have_value("Dotted motor")
    page.fill("#field-2000", "Dotted motor 2")
    page.click("#save")
    expect(page.locator("#flash")).to_have_text(console.says(f"Saved {DOTTED}.", f"已保存 {DOTTED}。"))
    assert data_at(node, "88.118.8%2F..%2F88.118.9/Q1", 2000) == "Dotted motor 2"

    page.click("#delete")
    page.click("#delete")
    expect(page.locator("#flash")).to_have_text(console.says(f"Deleted {DOTTED}.", f"已删除 {DOTTED}。"))
    assert url_of(node, "/api/handles/" + VICTIM) == "https://victim"
    assert node.get("/api/handles/88.118.8/%2E%2E/88.118.9/Q1").status == 404
    sent = [w.split("?")[0] for w in console.writes()]
    assert sent == [f"{m} {console.origin}/api/handles/88.118.8%2F..%2F88.118.9/Q1" for m in ("PUT", "DELETE")]


# Script payloads: data shown as text, never markup (issue #21's probe) ----------------------------

# Markup in every form an attacker could store: a quote to close an attribute, an image whose
# load fails (it asks for xss-probe first), an SVG load handler and a script. No spaces: the
# new-identifier form's suffix field takes none.
SCRIPTED = (
    """"'><img/src="xss-probe"/onerror="window.__xss=1"><svg/onload="window.__xss=2"><script>window.__xss=3</script>"""
)
SCRIPTED_TEXT = re.compile(re.escape(SCRIPTED), re.IGNORECASE)  # an identity is shown as parsed: upper case
XP = "88.118.71"  # the payloads' prefix, administered by an identity whose handle is one
WHO = (f"300:{XP}/{SCRIPTED}", "scripted-identity-secret")
RECORD = f"{XP}/X-{SCRIPTED}"
# Watches for what the page's policy blocked, from before the page's own scripts run.
WATCH = (
    "window.__violations = [];"
    "document.addEventListener('securitypolicyviolation', e => window.__violations.push(e.violatedDirective));"
)


def rest_path(handle: str) -> str:
    prefix, _, suffix = handle.partition("/")
    return f"/api/handles/{prefix}/{quote(suffix, safe='')}"


@pytest.fixture(scope="module")
def scripted(console_node: Node) -> Node:
    """Prefix XP administered by an identity named by a payload, holding a template, a record and
    audit entries (one a refusal) made of payloads."""
    node = console_node
    give_prefix(node, XP)
    grant = {"handle": f"{XP}/{SCRIPTED}", "index": 300, "permissions": "111111111111"}
    admin = {"index": 101, "type": "HS_ADMIN", "data": {"format": "admin", "value": grant}}
    assert node.put(f"/api/handles/0.NA/{XP}?index=101", {"values": [admin]}, auth=ADMIN).status == 200
    secret = {"index": 300, "type": "HS_SECKEY", "data": WHO[1]}
    assert node.put(rest_path(f"{XP}/{SCRIPTED}"), {"values": [secret]}, auth=ADMIN).status == 201
    shape = {"index": 2000, "type": SCRIPTED, "name": SCRIPTED, "dataType": "enum", "choices": [SCRIPTED, "B"]}
    made = node.put(
        f"/api/templates/{XP}/xss", {"version": SCRIPTED, "description": SCRIPTED, "fields": [shape]}, auth=WHO
    )
    assert made.status == 201, made.body
    values = [
        url_value(1, "javascript:window.__xss=4//"),
        {"index": 2, "type": SCRIPTED, "data": SCRIPTED},
        {"index": 3, "type": "NOTE", "data": SCRIPTED, "permissions": "1100"},
        {"index": 1001, "type": "HS_TEMPLATE", "data": f"xss@{SCRIPTED}"},
        {"index": 2000, "type": SCRIPTED, "data": SCRIPTED},
    ]
    assert node.put(rest_path(RECORD), {"values": values}, auth=WHO).status == 201
    assert node.put(rest_path(RECORD) + "?overwrite=false", {"values": values}, auth=WHO).status == 409
    return node


def as_who(console: Console) -> Page:
    console.sign_in(WHO[1], WHO[0])
    expect(console.page.locator(f'.prefix-card[data-prefix="{XP}"]')).to_be_visible()
    return console.page


def hash_of(view: str, **params: str) -> str:
    return f"#/{view}?{urlencode(params)}"


def signin_error(c: Console, tmp: Path) -> Locator:
    c.sign_in("not-the-secret", WHO[0])
    return c.page.locator("#signin-error")


def dashboard(c: Console, tmp: Path) -> Locator:
    return as_who(c).locator("header")


def browse(c: Console, tmp: Path) -> Locator:
    as_who(c)
    c.go(hash_of("handles", prefix=XP))
    return c.page.locator("#handle-list")


def search(c: Console, tmp: Path) -> Locator:
    as_who(c)
    c.go(hash_of("handles", prefix=XP, q=SCRIPTED))
    return c.page.locator("#handle-results")


def identifier(c: Console, tmp: Path) -> Locator:
    as_who(c)
    c.go(hash_of("handle", h=RECORD))
    return c.page.locator("#view table.values")


def identifier_refused(c: Console, tmp: Path) -> Locator:
    as_who(c)
    c.go(hash_of("handle", h=f"{XP}/none-{SCRIPTED}"))
    return c.page.locator("#view-error")


def edit(c: Console, tmp: Path) -> Locator:
    as_who(c)
    c.go(hash_of("edit", h=RECORD))
    expect(c.page.locator("#kept-values")).to_contain_text(SCRIPTED)
    return c.page.locator("#template-fields")


def new(c: Console, tmp: Path) -> Locator:
    as_who(c)
    c.go(hash_of("new", prefix=XP))
    expect(c.page.locator("#template")).to_contain_text(SCRIPTED)
    return c.page.locator("#template-fields")


def new_refused(c: Console, tmp: Path) -> Locator:
    page = as_who(c)
    c.go(hash_of("new", prefix=XP))
    page.fill("#suffix", f"X-{SCRIPTED}")
    page.select_option("#field-2000", SCRIPTED)
    page.click("#save")
    return page.locator("#form-error")


def deleted(c: Console, tmp: Path) -> Locator:
    doomed = f"{XP}/D-{SCRIPTED}"
    assert c.node.put(rest_path(doomed), {"values": [url_value(1, "https://d.example/")]}, auth=WHO).status == 201
    page = as_who(c)
    c.go(hash_of("handle", h=doomed))
    page.click("#delete")
    page.click("#delete")
    return page.locator("#flash")


def csv_line(*cells: str) -> str:
    return ",".join('"' + cell.replace('"', '""') + '"' for cell in cells)


def upload(c: Console, tmp: Path) -> Locator:
    csv = tmp / "scripted.csv"
    csv.write_text(
        "\r\n".join([
            csv_line("handle", "1:URL", "1001:HS_TEMPLATE", f"2000:{SCRIPTED}"),
            csv_line(f"{XP}/U-{c.language}-{SCRIPTED}", "https://u.example/", f"xss@{SCRIPTED}", SCRIPTED),
            csv_line(f"{XP}/V-{c.language}-{SCRIPTED}", "https://v.example/", f"xss@{SCRIPTED}", "not-a-choice"),
        ]) + "\r\n"
    )  # fmt: skip
    page = as_who(c)
    c.go(hash_of("upload", prefix=XP))
    page.set_input_files("#upload-file", str(csv))
    page.click("#upload-submit")
    expect(page.locator("#upload-status")).to_contain_text(
        c.says("1 records written, 1 failed", "写入 1 条记录，失败 1 条")
    )
    return page.locator("#upload-failures")


def audit(c: Console, tmp: Path) -> Locator:
    as_who(c)
    c.go(hash_of("audit", prefix=XP))
    expect(c.page.locator("#audit-table tr.refused").first).to_contain_text(SCRIPTED)
    return c.page.locator("#audit-table")


def resolve(c: Console, tmp: Path) -> Locator:
    c.open(hash_of("resolve", h=RECORD))
    return c.page.locator("#resolve-result")


def resolve_signed_in(c: Console, tmp: Path) -> Locator:
    as_who(c)
    c.go(hash_of("resolve", h=RECORD, **{"as": "me"}))
    expect(c.page.locator('#resolve-result tr[data-index="3"]')).to_contain_text(SCRIPTED)  # admin-read only
    return c.page.locator("#resolve-result")


def resolve_error(c: Console, tmp: Path) -> Locator:
    c.open(hash_of("resolve", h=f"{XP}/none-{SCRIPTED}"))
    return c.page.locator("#resolve-error")


VIEWS: dict[str, Callable[[Console, Path], Locator]] = {
    "sign-in error": signin_error,
    "dashboard": dashboard,
    "browse": browse,
    "search": search,
    "identifier": identifier,
    "identifier refused": identifier_refused,
    "edit": edit,
    "new": new,
    "new refused": new_refused,
    "deleted (flash)": deleted,
    "upload failures": upload,
    "audit log": audit,
    "resolve": resolve,
    "resolve signed in": resolve_signed_in,
    "resolve error": resolve_error,
}


@NO_BROWSER
@pytest.mark.parametrize("view", VIEWS)
def test_script_payloads_stay_text(scripted: Node, console: Console, view: str, tmp_path: Path) -> None:
    """The payloads are on the page as text; no script of theirs ran, the page's policy blocked
    nothing (it would have had to, had any become markup), and no image of theirs was asked for.
    The ``console`` fixture checks for script errors and policy reports in the console too."""
    console.page.add_init_script(WATCH)
    shown = VIEWS[view](console, tmp_path)
    expect(shown).to_contain_text(SCRIPTED_TEXT)
    page = console.page
    assert page.evaluate("window.__xss") is None, "a payload's script ran"
    assert page.evaluate("window.__violations") == [], "the page's policy blocked a payload's markup"
    asked = [r.url for r in console.requests if r.resource_type == "image" and "xss-probe" in r.url.lower()]
    assert asked == [], "a payload's image was asked for"
