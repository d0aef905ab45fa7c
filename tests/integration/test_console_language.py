"""The console's languages: English and Simplified Chinese, chosen by the browser or in the page.

Every text the console shows is in resolver/http/console/messages.js in both; no view leaves
a text of the other language; numbers and dates follow the language; a template's field
names are shown as the template gives them, Chinese ones included. test_console.py runs the
console's flows in both languages.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import resources
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.chromium import NO_BROWSER
from tests.support.console import (
    ENTERPRISE,
    PREFIX,
    SEED,
    Console,
    give_prefix,
    motor,
    signed_in,
    value_at,
)
from tests.support.nodeproc import Node

ZH = "zh-CN"
KEY_LANGUAGE = "idnode.console.language"  # i18n.js: the language picked in the page
ONLY_EN = pytest.mark.parametrize("console", ["en"], indirect=True)
ONLY_ZH = pytest.mark.parametrize("console", [ZH], indirect=True)

# A template as an enterprise in China writes one: value types and display names in Chinese.
CN_PREFIX = "88.118.71"
CN_TEMPLATE = {
    "version": "1.0",
    "fields": [
        {"index": 2100, "type": "产品名称", "dataType": "string", "required": True, "maxLength": 32},
        {"index": 2101, "type": "made", "name": "生产日期", "dataType": "date", "required": True},
        {"index": 2102, "type": "grade", "name": "质量等级", "dataType": "enum", "choices": ["一等品", "二等品"]},
    ],
}


def console_file(name: str) -> str:
    return resources.files("resolver.http").joinpath("console", name).read_text(encoding="utf-8")


def messages(page: Page) -> dict[str, dict[str, Any]]:
    """messages.js's table, as the page reads it."""
    script = 'async () => (await import(new URL("messages.js", location.href).href)).MESSAGES'
    return dict(page.evaluate(script))


def language_of(page: Page) -> str:
    return str(page.locator("html").get_attribute("lang"))


# Choosing the language ---------------------------------------------------------------------


@NO_BROWSER
@pytest.mark.parametrize(
    ("asked", "spoken"),
    [("zh-CN", ZH), ("zh-TW", ZH), ("zh", ZH), ("en-US", "en"), ("en-GB", "en"), ("fr-FR", "en"), ("ja", "en")],
)
def test_the_browsers_language_chooses_the_consoles(
    console_node: Node, chromium: Callable[[str], Browser], asked: str, spoken: str
) -> None:
    context = chromium("en").new_context(locale=asked)  # what the page is asked for, not the browser's own
    tab = Console(console_node, context.new_page(), spoken)
    tab.open()
    expect(tab.page.locator("#signin-submit")).to_have_text(tab.says("Sign in", "登录"))
    assert language_of(tab.page) == spoken and tab.page.title() == tab.says("idnode console", "idnode 控制台")
    expect(tab.page.locator("#language")).to_have_value(spoken)
    assert tab.page.evaluate("localStorage.length") == 0  # nothing remembered until picked
    context.close()
    tab.check_clean()


@NO_BROWSER
def test_the_switch_changes_the_language_at_once_and_is_remembered(console: Console) -> None:
    page = console.page
    other = "en" if console.language == ZH else ZH
    titles = {"en": "Resolve an identifier", ZH: "标识解析"}
    console.open(f"#/resolve?h={SEED}")
    expect(page.locator('#resolve-result tr[data-index="2000"]')).to_contain_text("Seed motor")
    expect(page.locator("h1")).to_have_text(titles[console.language])

    page.select_option("#language", other)
    expect(page.locator("h1")).to_have_text(titles[other])  # the view, drawn again
    expect(page.locator('#resolve-result tr[data-index="2000"]')).to_contain_text("Seed motor")
    expect(page.locator("#signin-link")).to_have_text({"en": "Sign in", ZH: "登录"}[other])  # and the frame
    expect(page.locator("#resolve-result th").first).to_have_text({"en": "Index", ZH: "索引"}[other])
    assert language_of(page) == other
    assert page.evaluate(f"localStorage.getItem('{KEY_LANGUAGE}')") == other

    page.reload()  # remembered in this browser, whatever it asks for
    expect(page.locator("h1")).to_have_text(titles[other])
    second = page.context.new_page()
    second.goto(f"{console.origin}/console/")
    expect(second.locator("#signin-submit")).to_have_text({"en": "Sign in", ZH: "登录"}[other])
    assert language_of(second) == other
    second.close()

    page.select_option("#language", console.language)
    expect(page.locator("h1")).to_have_text(titles[console.language])
    assert page.evaluate(f"localStorage.getItem('{KEY_LANGUAGE}')") == console.language


# The table of texts ------------------------------------------------------------------------

CONSOLE_SOURCES = ("index.html", "app.js", "api.js", "dom.js", "chart.js", "views.js", "form.js", "upload.js")
PLACEHOLDER = re.compile(r"\{(\w+)\}")
# An id named where the console asks for a text: t("id"…, tx("id"…, a choice of two ids,
# a FileProblem, a CHECKS verdict; data-i18n attributes in the page.
USED_ID = [
    re.compile(r'\btx?\(\s*"([\w.]+)"'),
    re.compile(r'\btx?\([^()"]*\?\s*"([\w.]+)"\s*:\s*"([\w.]+)"'),
    re.compile(r'new FileProblem\("([\w.]+)"'),
    re.compile(r'"(check\.\w+)"'),
    re.compile(r'data-i18n(?:-label)?="([\w.]+)"'),
]
QUOTED = re.compile(r'"([\w.]+)"')
# Ids made from the node's own names: an audit operation, a data type, an upload operation.
ID_FAMILIES = re.compile(r"`(op|dataType|upload\.op)\.\$\{")


def forms(text: str | dict[str, str]) -> list[str]:
    return list(text.values()) if isinstance(text, dict) else [text]


@NO_BROWSER
@ONLY_EN
def test_every_text_is_in_both_languages_and_every_id_used_exists(console: Console) -> None:
    console.open()
    expect(console.page.locator("#signin-form")).to_be_visible()
    table = messages(console.page)
    for id_, entry in table.items():
        assert set(entry) == {"en", ZH}, f"{id_} is not in exactly both languages"
        for text in entry.values():
            assert all(forms(text)) and (isinstance(text, str) or "other" in text), f"{id_}: an empty text"
        names = [{name for form in forms(text) for name in PLACEHOLDER.findall(form)} for text in entry.values()]
        assert names[0] == names[1], f"{id_}: its languages fill in different {{names}}"
        chinese = PLACEHOLDER.sub("", " ".join(forms(entry[ZH])))
        assert not english_words(chinese), f"{id_}: English left in its Chinese"

    source = "\n".join(console_file(name) for name in CONSOLE_SOURCES)
    used = {found for pattern in USED_ID for match in pattern.findall(source) for found in always_tuple(match)}
    assert used and used <= set(table), f"asked for but not in messages.js: {sorted(used - set(table))}"
    named = set(QUOTED.findall(source))  # in a call, a list of columns, a constant
    families = ID_FAMILIES.findall(source)
    unused = {id_ for id_ in set(table) - named if not any(id_.startswith(f + ".") for f in families)}
    assert not unused, f"in messages.js but never asked for: {sorted(unused)}"


def always_tuple(match: str | tuple[str, ...]) -> tuple[str, ...]:
    return match if isinstance(match, tuple) else (match,)


@NO_BROWSER
@ONLY_EN
def test_an_unknown_text_is_reported_not_hidden(console: Console) -> None:
    console.open()
    expect(console.page.locator("#signin-form")).to_be_visible()
    script = 'async () => (await import(new URL("i18n.js", location.href).href)).t("no.such.text")'
    assert console.page.evaluate(script) == "no.such.text"
    assert console.errors == ['idnode i18n: no message "no.such.text"']
    console.errors.clear()  # reported, as it should be


# No text of the other language ---------------------------------------------------------------

# Terms written the same in Chinese texts: protocol, format and product names, value types.
ALLOWED = {"API", "CSV", "HTTP", "Handle", "HS_ADMIN", "ISO", "JSON", "JSONL", "REST", "SNMS", "TTL", "URL", "idnode"}
# An ASCII word of four letters or more that is not part of a handle, a value or a code
# (joined to a digit, "_", "@", ".", "/", ":" or "-").
ENGLISH_WORD = re.compile(r"(?<![A-Za-z0-9_@./:\-])[A-Za-z]{4,}(?![A-Za-z0-9_@./:\-])")
HAN = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")

# Every text of the page that the reader sees or hears, outside what is marked as the node's
# data (translate="no"), code, and elements in another language (lang): text nodes, the
# texts of placeholders, labels and titles, and the page's title.
PAGE_TEXTS = """() => {
  const own = (el) => !el.closest('[translate="no"], code, pre, script, style, noscript')
    && el.closest("[lang]").lang === document.documentElement.lang;
  const texts = [document.title];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement && own(node.parentElement) && node.textContent.trim()) texts.push(node.textContent.trim());
  }
  for (const el of document.querySelectorAll("[placeholder], [aria-label], [title]")) {
    if (!own(el)) continue;
    for (const name of ["placeholder", "aria-label", "title"]) {
      if (el.hasAttribute(name)) texts.push(el.getAttribute(name));
    }
  }
  return texts;
}"""


def english_words(text: str) -> list[str]:
    return [word for word in ENGLISH_WORD.findall(text) if word not in ALLOWED]


def foreign(console: Console) -> list[str]:
    """The page's texts that hold words of the language the page is not in."""
    expect(console.page.locator("body")).to_have_attribute("data-ready", "yes")
    texts: list[str] = console.page.evaluate(PAGE_TEXTS)
    if console.language == ZH:
        return [text for text in texts if english_words(text)]
    return [text for text in texts if HAN.search(text)]


@NO_BROWSER
def test_no_view_leaves_a_text_in_the_other_language(console: Console, name: str) -> None:
    node, page = console.node, console.page
    refused = node.put(f"/api/handles/{SEED}?overwrite=false", {"values": motor("Again")}, auth=ENTERPRISE)
    assert refused.status == 409  # a refusal in the audit log, in the node's words
    console.open()
    expect(page.locator("#signin-form")).to_be_visible()
    views = {"signin": foreign(console)}
    signed_in(console)
    for view in [
        "#/dashboard",
        f"#/handles?prefix={PREFIX}",
        f"#/handles?prefix={PREFIX}&q=seed",
        f"#/handle?h={SEED}",
        f"#/new?prefix={PREFIX}",
        f"#/edit?h={SEED}",
        f"#/upload?prefix={PREFIX}",
        f"#/audit?prefix={PREFIX}",
        f"#/resolve?h={SEED}&as=me",
    ]:
        console.go(view)
        expect(page.locator("body")).to_have_attribute("data-view", view[2:].split("?")[0])
        views[view] = foreign(console)
    console.go(f"#/new?prefix={PREFIX}")  # and each field's problem, said in the page
    expect(page.locator("#field-2000")).to_be_visible()
    page.click("#save")
    expect(page.locator("#error-2000")).to_be_visible()
    views["new, refused in the page"] = foreign(console)
    assert not any(views.values()), {view: texts for view, texts in views.items() if texts}


# Field names as the template gives them ----------------------------------------------------------


@NO_BROWSER
def test_the_form_shows_field_names_as_the_template_gives_them(console: Console, name: str) -> None:
    node, page = console.node, console.page
    owner = give_prefix(node, CN_PREFIX)
    assert node.put(f"/api/templates/{CN_PREFIX}/dianji", CN_TEMPLATE, auth=owner).status in (200, 201)
    console.sign_in(owner[1], owner[0])
    expect(page.locator(f'.prefix-card[data-prefix="{CN_PREFIX}"]')).to_be_visible()
    console.go(f"#/new?prefix={CN_PREFIX}")
    labels = page.locator("#template-fields .field label [translate=no]")
    expect(labels).to_have_text(["产品名称", "生产日期", "质量等级"])  # its type, else its display name
    expect(page.locator('.field[data-index="2100"] .hint')).to_have_text(
        console.says(
            "index 2100 · 产品名称 · string · 0–32 characters · required",
            "索引 2100 · 产品名称 · 字符串 · 0–32 个字符 · 必填",
        )
    )
    expect(page.locator("#field-2102 option")).to_have_text([console.says("(none)", "（无）"), "一等品", "二等品"])

    handle = f"{CN_PREFIX}/CN-{name}"
    page.fill("#suffix", f"CN-{name}")
    page.fill("#field-2101", "2026-11-27")
    page.click("#save")
    expect(page.locator("#error-2100")).to_have_text(console.says("产品名称 is required", "产品名称：必填"))
    page.fill("#field-2100", "电机 M3（4 千瓦）")
    page.select_option("#field-2102", "二等品")
    console.shot("chinese-template")
    page.click("#save")
    expect(page.locator("#record-handle")).to_have_text(handle)
    made = value_at(node, handle, 2100, owner)
    assert made is not None and made["type"] == "产品名称" and made["data"]["value"] == "电机 M3（4 千瓦）"
    expect(page.locator('tr[data-index="2102"]')).to_contain_text("二等品")

    page.click("#edit")  # and again when editing, with the stored values in place
    expect(labels).to_have_text(["产品名称", "生产日期", "质量等级"])
    expect(page.locator("#field-2100")).to_have_value("电机 M3（4 千瓦）")


# Numbers and dates -----------------------------------------------------------------------------


@NO_BROWSER
def test_numbers_and_dates_follow_the_language(console: Console) -> None:
    """Thousands grouped, percentages and days as each language writes them (the flows in
    test_console.py check the counts, the audit log's times and the chart's days)."""
    console.open()
    expect(console.page.locator("#signin-form")).to_be_visible()
    script = """async () => {
      const i18n = await import(new URL("i18n.js", location.href).href);
      return [i18n.num(1234567), i18n.percent(0.5), i18n.day("2026-11-27", "long"), i18n.day("2026-11-27", "short"),
              i18n.dateTime("2026-11-27T08:30:05Z")];
    }"""
    expected = {
        "en": ["1,234,567", "50%", "November 27, 2026", "Nov 27", "11/27/2026, 08:30:05"],
        ZH: ["1,234,567", "50%", "2026年11月27日", "11月27日", "2026/11/27 08:30:05"],
    }
    assert console.page.evaluate(script) == expected[console.language]
