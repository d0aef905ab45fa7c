"""The web console in a real headless Chromium: one tab, what it asked, and what it said.

Playwright drives Debian's chromium (tests.support.chromium), never a browser of
Playwright's own. ``IDNODE_SCREENSHOTS=DIR`` saves the main pages there, as
``console-en-*.png`` and ``console-zh-*.png`` (deploy/screenshots/ holds a set).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from playwright.sync_api import ConsoleMessage, Error, Page, Request, expect

from tests.support.nodeproc import ADMIN, Node

# The console's languages, and the browser locale that asks for each.
LANGUAGES = {"en": "en-US", "zh-CN": "zh-CN"}
I18N_COMPLAINT = "idnode i18n:"  # what i18n.js logs for an unknown message id or a missing parameter

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


def value_at(node: Node, handle: str, index: int, auth: tuple[str, str] = ENTERPRISE) -> dict[str, Any] | None:
    """``handle``'s value at ``index`` as the REST API gives it to ``auth``."""
    for value in node.get("/api/handles/" + handle, auth=auth).json["values"]:
        if value["index"] == index:
            return dict(value)
    return None


def data_at(node: Node, handle: str, index: int, auth: tuple[str, str] = ENTERPRISE) -> str | None:
    """The text of ``handle``'s value at ``index`` as the REST API gives it to the enterprise."""
    value = value_at(node, handle, index, auth)
    if value is None:
        return None
    data = value["data"]
    return str(data["value"] if isinstance(data, dict) else data)


class Console:
    """One browser tab on the node's console, in one language, with every request it made
    and every script error, policy violation or untranslated text it reported."""

    def __init__(self, node: Node, page: Page, language: str) -> None:
        self.node = node
        self.page = page
        self.language = language
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
        # The page broke its own policy, or asked for a text messages.js does not have.
        if "Content Security Policy" in message.text or message.text.startswith(I18N_COMPLAINT):
            self.errors.append(message.text)

    def says(self, en: str, zh: str) -> str:
        """What the page shows in this tab's language."""
        return zh if self.language == "zh-CN" else en

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
            self.page.screenshot(path=str(Path(folder) / f"console-{self.language[:2]}-{name}.png"))

    def check_clean(self) -> None:
        foreign = [r.url for r in self.requests if not r.url.startswith(self.origin + "/")]
        assert not foreign, f"the console asked other origins: {foreign}"
        assert not self.errors, f"script errors, policy violations or unknown texts: {self.errors}"


def signed_in(console: Console) -> Console:
    console.sign_in()
    expect(console.page.locator(".prefix-card")).to_be_visible()
    return console
