"""The web console at /console/: served by a real node, driven in a real headless Chromium.

Playwright drives Debian's chromium (tests.support.chromium); without it the browser tests
skip, saying why. Every
test checks that the page asked nothing of any origin but the node's and raised no script
error. ``IDNODE_SCREENSHOTS=DIR`` saves the main pages there (deploy/screenshots/ holds a set).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, Request, expect

from resolver.http.console_routes import CONTENT_TYPES
from tests.support.chromium import NO_BROWSER, chromium
from tests.support.nodeproc import ADMIN, NODE_PREFIX, Node, url_value

PREFIX = "88.118.70"
ENTERPRISE = ("300:0.NA/88.118.70", "console-enterprise-secret")
TEMPLATE = {
    "version": "1.0",
    "fields": [
        {"index": 2000, "type": "productName", "dataType": "string", "required": True, "minLength": 1, "maxLength": 16},
        {"index": 2001, "type": "made", "dataType": "date", "required": True},
        {"index": 2002, "type": "grade", "dataType": "enum", "choices": ["A", "B"]},
    ],
}
SEED = f"{PREFIX}/SEED-1"


def motor(name: str, made: str = "2026-11-27") -> list[dict[str, Any]]:
    return [
        {"index": 1001, "type": "HS_TEMPLATE", "data": "motor@1.0"},
        {"index": 2000, "type": "productName", "data": name},
        {"index": 2001, "type": "made", "data": made},
    ]


def give_prefix(node: Node, prefix: str, secret: str = "") -> tuple[str, str]:
    """``prefix`` on the node, administered by the enterprise identity ``300:0.NA/{prefix}``."""
    secret = secret or f"console-{prefix}-secret"
    admin = {"handle": f"0.NA/{prefix}", "index": 300, "permissions": "111111111111"}
    record = [
        {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": admin}},
        {"index": 300, "type": "HS_SECKEY", "data": secret},
    ]
    assert node.put(f"/api/handles/0.NA/{prefix}", {"values": record}, auth=ADMIN).status in (200, 201)
    return f"300:0.NA/{prefix}", secret


def data_at(node: Node, handle: str, index: int) -> str | None:
    """The text of ``handle``'s value at ``index`` as the REST API gives it to the enterprise."""
    for value in node.get("/api/handles/" + handle, auth=ENTERPRISE).json["values"]:
        if value["index"] == index:
            data = value["data"]
            return str(data["value"] if isinstance(data, dict) else data)
    return None


@pytest.fixture(scope="module")
def enterprise(node: Node) -> Node:
    """The node with an enterprise prefix, its admin, a template and one record made by REST."""
    assert give_prefix(node, PREFIX, ENTERPRISE[1]) == ENTERPRISE
    assert node.put(f"/api/templates/{PREFIX}/motor", TEMPLATE, auth=ENTERPRISE).status == 201
    assert node.put("/api/handles/" + SEED, {"values": motor("Seed motor")}, auth=ENTERPRISE).status == 201
    return node


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


class Console:
    """One browser tab on the node's console, with every request it made and every script error."""

    def __init__(self, node: Node, page: Page) -> None:
        self.node = node
        self.page = page
        self.origin = f"http://127.0.0.1:{node.port}"
        self.requests: list[Request] = []
        self.errors: list[Error | str] = []
        page.on("request", self._requested)
        page.on("pageerror", self._failed)
        page.on("console", self._said)

    def _requested(self, request: Request) -> None:
        self.requests.append(request)

    def _failed(self, error: Error) -> None:
        self.errors.append(error)

    def _said(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:  # the page broke its own policy
            self.errors.append(message.text)

    def open(self, view: str = "") -> None:
        self.page.goto(f"{self.origin}/console/{view}")

    def sign_in(self, secret: str = ENTERPRISE[1], identity: str = ENTERPRISE[0]) -> None:
        self.open()
        self.page.fill("#signin-identity", identity)
        self.page.fill("#signin-secret", secret)
        self.page.click("#signin-submit")

    def go(self, view: str) -> None:
        """Follow an in-page link (the secret lives in this tab's sessionStorage)."""
        self.page.evaluate("hash => { location.hash = hash }", view)

    def writes(self) -> list[str]:
        return [f"{r.method} {r.url}" for r in self.requests if r.method in ("PUT", "POST", "DELETE")]

    def shot(self, name: str) -> None:
        folder = os.environ.get("IDNODE_SCREENSHOTS")
        if folder:
            self.page.screenshot(path=str(Path(folder) / f"{name}.png"))


@pytest.fixture
def console(enterprise: Node, browser: Browser) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1100, "height": 700})
    tab = Console(enterprise, context.new_page())
    yield tab
    context.close()
    foreign = [r.url for r in tab.requests if not r.url.startswith(tab.origin + "/")]
    assert not foreign, f"the console asked other origins: {foreign}"
    assert not tab.errors, f"script errors or policy violations: {tab.errors}"


def signed_in(console: Console) -> Console:
    console.sign_in()
    expect(console.page.locator(".prefix-card")).to_be_visible()
    return console


# Served by the node ----------------------------------------------------------------------


def test_console_is_served_with_a_strict_policy(enterprise: Node) -> None:
    moved = enterprise.get("/console")
    assert (moved.status, moved.headers["location"]) == (301, "/console/")
    page = enterprise.get("/console/")
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
        served = enterprise.get("/console/" + asset)
        assert served.status == 200 and served.headers["content-type"] == CONTENT_TYPES[name]
        assert hashlib.sha256(served.body).hexdigest().startswith(version)  # a new file gets a new URL
        assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert enterprise.get("/console/" + name).headers["cache-control"] == "no-cache"
        again = enterprise.get("/console/" + asset, headers={"If-None-Match": served.headers["etag"]})
        assert (again.status, again.body) == (304, b"")
    assert enterprise.get("/console/missing.js").status == 404


def test_the_console_files_ship_in_the_package() -> None:
    """Read where the installed package keeps them, and named by pyproject's package data,
    so a non-editable ``pip install .`` carries every file the node serves."""
    folder = resources.files("resolver.http").joinpath("console")
    shipped = {entry.name for entry in folder.iterdir() if entry.is_file()}
    assert set(CONTENT_TYPES) <= shipped
    config = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["resolver.http"]
    assert all(any(fnmatch.fnmatch(f"console/{name}", p) for p in patterns) for name in shipped)


# In the browser --------------------------------------------------------------------------


@NO_BROWSER
def test_sign_in_shows_your_prefix_its_count_and_chart(console: Console) -> None:
    page = console.page
    console.sign_in("not-the-secret")
    expect(page.locator("#signin-error")).to_contain_text("Wrong identity or secret")
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
    expect(page.locator("#error-2000")).to_contain_text("at most 16")
    expect(page.locator("#form-error")).to_contain_text("nothing was sent")
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
    expect(page.locator("#form-error")).to_contain_text(f"handle {handle} already exists (HTTP 409, code 101)")
    assert data_at(node, handle, 2000) == "Motor M3"

    extra = {"index": 3, "type": "EMAIL", "data": "qa@example.com"}
    assert node.put(f"/api/handles/{handle}?index=3", extra, auth=ENTERPRISE).status == 200
    console.go(f"#/handle?h={handle}")
    page.click("#edit")
    expect(page.locator("#field-2000")).to_have_value("Motor M3")
    expect(page.locator("#kept-values")).to_contain_text("3 EMAIL")
    page.fill("#field-2000", "Motor M4")
    page.click("#save")
    expect(page.locator("#flash")).to_have_text(f"Saved {handle}.")
    assert data_at(node, handle, 2000) == "Motor M4" and data_at(node, handle, 2002) == "B"
    assert data_at(node, handle, 3) == "qa@example.com"

    page.click("#delete")
    page.click("#delete")  # armed by the first click
    expect(page.locator("#flash")).to_have_text(f"Deleted {handle}.")
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
    expect(page.locator("#handle-summary")).to_have_text(f"1–50 of {total} identifiers")
    assert page.locator("#handle-list li").count() == 50
    console.shot("identifiers")
    page.click("#next-page")
    expect(page.locator("#handle-summary")).to_contain_text(f"51–{min(int(total), 100)} of {total}")
    page.fill("#search", f"b-{name}-04")  # case-insensitive
    page.click("#search-form button[type=submit]")
    expect(page.locator("#handle-summary")).to_contain_text(f"10 found for “b-{name}-04”")
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
    expect(page.locator("#upload-status")).to_have_text("Done: 3 of 3 batches, 5 records written, 1 failed.")
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
    expect(page.locator("#upload-status")).to_have_text("Done: 1 of 1 batches, 3 records written, 0 failed.")
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
    expect(newest).to_contain_text("101")
    expect(oldest).to_contain_text("create")
    expect(oldest).to_contain_text(ENTERPRISE[0])
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
    expect(page.locator("#resolve-error")).to_contain_text("not found (HTTP 404, code 100)")
    page.fill("#resolve-handle", f"0.NA/{PREFIX}")
    page.click("#resolve-submit")
    expect(page.locator('#resolve-result tr[data-index="100"]')).to_contain_text("HS_ADMIN")


# Dot segments: a handle's "." and ".." are part of its name, never a path step ---------------

DOTTED = "88.118.8/../88.118.9/Q1"  # handle.net allows any suffix; the browser would read "88.118.9/Q1"
VICTIM = "88.118.9/Q1"


def url_of(node: Node, path: str) -> str | None:
    """The URL at index 1 of the record at ``path`` (sent as it is), or None when there is none."""
    reply = node.get(path)
    if reply.status == 404:
        return None
    return str(next(v["data"]["value"] for v in reply.json["values"] if v["index"] == 1))


def test_the_rest_api_takes_encoded_dot_segments_literally(enterprise: Node) -> None:
    """``%2E%2E`` (what curl or a client library may send) and ``%2F..%2F`` (what the console
    sends) both name the record whose suffix holds ``..``; neither reaches ``88.118.9/Q2``."""
    node, owner, other = enterprise, give_prefix(enterprise, "88.118.8"), give_prefix(enterprise, "88.118.9")
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
    assert node.put("/api/handles/" + VICTIM, {"values": [url_value(1, "https://victim")]}, auth=other).status == 201
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
    expect(page.locator("#flash")).to_have_text(f"Saved {DOTTED}.")
    assert data_at(node, "88.118.8%2F..%2F88.118.9/Q1", 2000) == "Dotted motor 2"

    page.click("#delete")
    page.click("#delete")
    expect(page.locator("#flash")).to_have_text(f"Deleted {DOTTED}.")
    assert url_of(node, "/api/handles/" + VICTIM) == "https://victim"
    assert node.get("/api/handles/88.118.8/%2E%2E/88.118.9/Q1").status == 404
    sent = [w.split("?")[0] for w in console.writes()]
    assert sent == [f"{m} {console.origin}/api/handles/88.118.8%2F..%2F88.118.9/Q1" for m in ("PUT", "DELETE")]
