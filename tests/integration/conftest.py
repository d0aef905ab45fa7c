"""Fixtures of the web console's tests (test_console.py, test_console_language.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser

from tests.support.chromium import chromium_in
from tests.support.console import ENTERPRISE, LANGUAGES, PREFIX, SEED, TEMPLATE, Console, give_prefix, motor
from tests.support.nodeproc import Node


@pytest.fixture(scope="module")
def console_node(node: Node) -> Node:
    """The node with an enterprise prefix, its admin, a template and one record made by REST."""
    assert give_prefix(node, PREFIX, ENTERPRISE[1]) == ENTERPRISE
    assert node.put(f"/api/templates/{PREFIX}/motor", TEMPLATE, auth=ENTERPRISE).status == 201
    assert node.put("/api/handles/" + SEED, {"values": motor("Seed motor")}, auth=ENTERPRISE).status == 201
    return node


@pytest.fixture(scope="module")
def chromium() -> Iterator[Callable[[str], Browser]]:
    """Chromium with its own user interface in a language (``chromium("zh-CN")``), each started
    when first asked for (tests.support.chromium)."""
    with chromium_in() as in_language:
        yield in_language


@pytest.fixture(params=list(LANGUAGES))
def console(
    request: pytest.FixtureRequest, console_node: Node, chromium: Callable[[str], Browser]
) -> Iterator[Console]:
    """A tab whose browser asks for each of the console's languages in turn (``en``, ``zh-CN``);
    a test gives ``indirect`` parameters to run in some of them only."""
    language = request.param
    context = chromium(language).new_context(viewport={"width": 1100, "height": 700}, locale=LANGUAGES[language])
    tab = Console(console_node, context.new_page(), language)
    yield tab
    context.close()
    tab.check_clean()
