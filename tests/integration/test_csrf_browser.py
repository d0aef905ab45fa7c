"""A page of another site cannot write with an admin's Basic credentials cached in Chromium (issue #21, finding 5).

test_csrf.py sends what a browser could with a plain HTTP client; here a real Chromium does the
sending, so what it attaches is its own choice. The admin signs in to the node's API (the
credentials in the URL of a first visit, which Chromium caches as it does what a user types
into its prompt: later same-origin requests carry them unasked). A page served from another
site (127.0.0.2) then tries what a page can: forms that submit themselves, fetches and beacons
with credentials, reads, script includes. Every write is refused and the store is unchanged,
which the test checks with its own requests; a refusal of 415 rather than 401 shows the cached
credentials did reach the node.
"""

from __future__ import annotations

import html
import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, BrowserContext, Error, Page, Response

from protocol.basic_auth import basic_user
from tests.integration.test_templates import TEMPLATE
from tests.support.chromium import NO_BROWSER, chromium
from tests.support.nodeproc import ADMIN_SECRET, Node, Reply, metric_value, record, url_value
from tests.support.poll import wait_until
from tests.support.snmsclient import NODE_ADMIN, NODE_ARGS, enterprise, identifier, secret_of, template, value

pytestmark = NO_BROWSER

PREFIX = "88.118.76"  # REST
ENTERPRISE = "88.101.76"  # SNMS
PUBLIC = f"{PREFIX}/public"  # a record anyone may read
ATTACKER_HOST = "127.0.0.2"  # another site: an IP address is a site of its own
ANSWERS = "idnode_http_responses_total"
REFUSED = ("401", "415")  # no credentials; credentials but a body of a type a page can send


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = Node(tmp_path_factory.mktemp("csrf-browser") / "data", args=NODE_ARGS).start()
    enterprise(node, ENTERPRISE)
    assert node.put(f"/api/handles/{PUBLIC}", record(url_value(1, "https://a.example")), auth=NODE_ADMIN).status == 201
    yield node
    node.stop()


class Attacker:
    """The other site: serves the pages the test gives it (``serve``), from a thread of its own."""

    def __init__(self) -> None:
        pages: dict[str, bytes] = {}
        self.pages = pages

        class Pages(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                page = pages.get(self.path)
                self.send_response(200 if page is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page or b"")))
                self.end_headers()
                self.wfile.write(page or b"")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((ATTACKER_HOST, 0), Pages)
        self.origin = f"http://{ATTACKER_HOST}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve(self, name: str, body: str) -> str:
        self.pages[f"/{name}"] = f"<!doctype html><meta charset=utf-8><title>{name}</title>{body}".encode()
        return f"{self.origin}/{name}"


@pytest.fixture(scope="module")
def attacker() -> Iterator[Attacker]:
    site = Attacker()
    yield site
    site.server.shutdown()
    site.server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@dataclass
class Tab:
    """A tab of a browser context, with every answer the node gave it."""

    node: Node
    page: Page

    def __post_init__(self) -> None:
        self.origin = f"http://{self.node.url_host}:{self.node.port}"
        self.answers: list[Response] = []
        self.page.on("response", self._answered)

    def _answered(self, response: Response) -> None:
        if response.url.startswith(self.origin + "/"):
            self.answers.append(response)


def new_tab(node: Node, context: BrowserContext) -> Tab:
    return Tab(node, context.new_page())


@pytest.fixture(scope="module")
def admin(node: Node, browser: Browser) -> Iterator[Tab]:
    """A tab whose browser holds the node admin's Basic credentials, as after a sign-in."""
    context = browser.new_context()
    context.set_default_timeout(15_000)
    tab = new_tab(node, context)
    assert NODE_ADMIN is not None
    user = quote(basic_user(NODE_ADMIN[0]), safe="")  # the URL's userinfo is percent-decoded once
    signed_in = tab.page.goto(f"http://{user}:{ADMIN_SECRET}@{node.url_host}:{node.port}/api/stats")
    assert signed_in is not None and signed_in.status == 200
    yield tab
    context.close()


def test_the_signed_in_browser_sends_the_admins_credentials_unasked(node: Node, browser: Browser, admin: Tab) -> None:
    """Without this the other tests could pass because no credentials were ever sent."""
    context = browser.new_context()
    try:
        # Headless, a Basic challenge nobody answers fails the navigation.
        with pytest.raises(Error, match="ERR_INVALID_AUTH_CREDENTIALS"):
            new_tab(node, context).page.goto(f"{admin.origin}/api/audit")
    finally:
        context.close()
    answer = admin.page.goto(f"{admin.origin}/api/audit")  # the node admin's only
    assert answer is not None and answer.status == 200


# Forms: the page's own navigation, a POST of a type no script could set ------------------


def form(action: str, enctype: str, fields: dict[str, str]) -> str:
    """A form posting ``fields`` to ``action`` as ``enctype``, submitted as soon as the page loads."""
    inputs = "".join(f'<input name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in fields.items())
    submit = "<script>document.forms[0].submit()</script>"
    return f'<form method="post" action="{html.escape(action)}" enctype="{enctype}">{inputs}</form>{submit}'


def as_json_fields(body: dict[str, Any] | list[Any]) -> dict[str, str]:
    """One field whose text/plain encoding ``name=value`` is ``body`` as JSON, with an item "x" added."""
    padded = {**body, "x": ""} if isinstance(body, dict) else [*body, {"x": ""}]
    head, _, tail = json.dumps(padded).rpartition('""')  # the "" of x, the last one
    return {head + '"': '"' + tail}  # sent as '..."x": "="}'


def create(handle: str) -> dict[str, Any]:
    return {"operations": [{"op": "create", "handle": handle, "values": [url_value(1, "https://evil.example")]}]}


def delete(handle: str) -> dict[str, Any]:
    return {"operations": [{"op": "delete", "handle": handle}]}


FORM_TYPES = {
    "text": "text/plain",
    "urlencoded": "application/x-www-form-urlencoded",
    "multipart": "multipart/form-data",
    "json": "application/json",  # not a form encoding: the browser sends it urlencoded
}
SNMS_WRITES = {
    "snms-create": "/identityv2/data",
    "snms-batch-create": "/identityv2/data/batchCreate",
    "snms-template": "/snms/api/v5/template",
    "snms-template-v3": "/snms/api/v3/template",
}


def submitted(tab: Tab, attacker: Attacker, name: str, path: str, enctype: str, body: Any) -> Reply:
    """The node's answer to the form the attacker's page ``name`` submits to ``path``."""
    url = attacker.serve(name, form(tab.origin + path, enctype, as_json_fields(body)))
    target = tab.origin + path
    with tab.page.expect_response(lambda r: r.url == target and r.request.method == "POST") as answer:
        tab.page.goto(url)
    got = answer.value
    return Reply(got.status, got.headers, got.body())  # read before the tab moves on


@pytest.mark.parametrize("kind", FORM_TYPES)
def test_a_cross_site_form_cannot_batch_create_or_delete(node: Node, admin: Tab, attacker: Attacker, kind: str) -> None:
    made, kept = f"{PREFIX}/form-{kind}", f"{PREFIX}/kept-{kind}"
    assert node.put(f"/api/handles/{kept}", record(url_value(1, "https://b.example")), auth=NODE_ADMIN).status == 201
    created = submitted(admin, attacker, f"batch-create-{kind}", "/api/batch", FORM_TYPES[kind], create(made))
    deleted = submitted(admin, attacker, f"batch-delete-{kind}", "/api/batch", FORM_TYPES[kind], delete(kept))
    assert (node.get(f"/api/handles/{made}").status, node.get(f"/api/handles/{kept}").status) == (404, 200)
    # 415, not 401: the cached credentials went with the form, and its body was refused.
    assert (created.status, deleted.status) == (415, 415), (created.body, deleted.body)


def test_a_cross_site_form_cannot_write_where_rest_takes_put(node: Node, admin: Tab, attacker: Attacker) -> None:
    """A form only posts; REST's other writes are PUT and DELETE."""
    handle = f"{PREFIX}/form-put"
    answer = submitted(admin, attacker, "handle", f"/api/handles/{handle}", "text/plain", record(url_value(1, "x")))
    assert answer.status == 405
    answer = submitted(admin, attacker, "template", f"/api/templates/{PREFIX}/evil", "text/plain", TEMPLATE)
    assert answer.status == 405
    assert node.get(f"/api/handles/{handle}").status == 404
    assert node.get(f"/api/templates/{PREFIX}/evil").status == 404


@pytest.mark.parametrize("name", SNMS_WRITES)
def test_a_cross_site_form_cannot_write_through_snms(node: Node, admin: Tab, attacker: Attacker, name: str) -> None:
    """SNMS takes only a bearer token, which no browser sends by itself, and a JSON body."""
    handle = f"{ENTERPRISE}/form-{name}"
    data = identifier(handle, "1.0", value(2000, "URL", "https://evil.example"))
    body: Any = template(ENTERPRISE, "6.6.6") if "template" in name else data
    if name == "snms-batch-create":
        body = [data]
    answer = submitted(admin, attacker, name, SNMS_WRITES[name], "text/plain", body)
    assert answer.status == 200 and answer.json["status"] != 1, answer.body
    assert node.get(f"/api/handles/{handle}").status == 404
    got = node.get(f"/snms/api/v5/template?prefix={ENTERPRISE}&version=6.6.6").json
    assert got["status"] != 1, got


def test_a_cross_site_form_cannot_log_in_to_snms(admin: Tab, attacker: Attacker) -> None:
    """A login forced on the browser would hand it a token of the attacker's choosing."""
    login = {"username": ENTERPRISE, "password": secret_of(ENTERPRISE)}
    for path in ("/identity/token", "/identity/token/v1"):
        answer = submitted(admin, attacker, "login" + path.replace("/", "-"), path, "text/plain", login)
        assert answer.status == 200 and answer.json["status"] == -2, answer.body
        assert answer.json["data"] is None


# Scripts: fetch and sendBeacon, with credentials ----------------------------------------

SCRIPTED = {
    # name: what the page runs, with NODE (the node's origin) and BODY (a batch as JSON) bound
    "fetch-text": 'fetch(NODE + "/api/batch", {mode: "no-cors", method: "POST", credentials: "include", body: BODY})',
    "fetch-json-header": (
        'fetch(NODE + "/api/batch", {mode: "no-cors", method: "POST", credentials: "include",'
        ' headers: {"Content-Type": "application/json"}, body: BODY})'
    ),
    "fetch-json-blob": (
        'fetch(NODE + "/api/batch", {mode: "no-cors", method: "POST", credentials: "include",'
        ' body: new Blob([BODY], {type: "application/json"})})'
    ),
    "fetch-keepalive": (
        'fetch(NODE + "/api/batch", {mode: "no-cors", method: "POST", credentials: "include", keepalive: true,'
        " body: BODY})"
    ),
    "beacon-text": 'navigator.sendBeacon(NODE + "/api/batch", BODY)',
    "beacon-json-blob": 'navigator.sendBeacon(NODE + "/api/batch", new Blob([BODY], {type: "application/json"}))',
    "beacon-form": "navigator.sendBeacon(NODE + '/api/batch', new URLSearchParams({json: BODY}))",
    "cors-json": (
        'fetch(NODE + "/api/batch", {method: "POST", credentials: "include",'
        ' headers: {"Content-Type": "application/json"}, body: BODY})'
    ),
}


def scripted(origin: str, attempts: dict[str, tuple[str, str]]) -> str:
    """A page running each attempt (code, body) at once; ``window.outcomes`` says how each ended."""
    runs = "".join(
        f"attempt({json.dumps(name)}, () => {{ const BODY = {json.dumps(body)}; return {code}; }});\n"
        for name, (code, body) in attempts.items()
    )
    return f"""<script>
const NODE = {json.dumps(origin)};
window.outcomes = {{}};
async function attempt(name, run) {{
  try {{
    const got = await run();
    window.outcomes[name] = got instanceof Response ? "answered " + got.type + " " + got.status : String(got);
  }} catch (error) {{
    window.outcomes[name] = "threw " + error.name;
  }}
}}
{runs}</script>"""


def test_cross_site_scripts_cannot_write(node: Node, admin: Tab, attacker: Attacker) -> None:
    """A script's requests: without credentials when Chromium keeps them apart by top-level site
    (it does), refused for their type when a browser sends them anyway; a body declared as JSON
    needs the node's leave first, and the answer to that preflight allows no credentials."""
    attempts = {name: (code, json.dumps(create(f"{PREFIX}/{name}"))) for name, code in SCRIPTED.items()}
    first, counted = len(admin.answers), node.settled_metrics()
    admin.page.goto(attacker.serve("scripts", scripted(admin.origin, attempts)))
    outcomes = wait_until(
        lambda: admin.page.evaluate("window.outcomes"), lambda got: len(got) == len(attempts), what="every attempt"
    )
    assert outcomes["cors-json"] == "threw TypeError", outcomes
    answered = [name for name, outcome in outcomes.items() if outcome.startswith("answered")]
    posts = wait_until(
        lambda: [r.status for r in admin.answers[first:] if r.request.method == "POST"],
        lambda got: len(got) >= len(answered),
        what=f"the node's answers to {answered}",
    )
    assert set(posts) <= {401, 415}, outcomes
    for name in attempts:
        assert node.get(f"/api/handles/{PREFIX}/{name}").status == 404, (name, outcomes[name])
    # As the node counted them: every batch refused, and cors-json's preflight answered.
    now = node.settled_metrics()

    def more(**labels: str) -> float:
        return metric_value(now, ANSWERS, labels) - metric_value(counted, ANSWERS, labels)

    assert more(op="batch") == sum(more(op="batch", status=s) for s in REFUSED) >= len(posts)
    assert more(op="unknown", status="204") >= 1


# Reads -----------------------------------------------------------------------------------


def test_a_cross_site_page_reads_nothing_with_the_cached_credentials(
    node: Node, admin: Tab, attacker: Attacker
) -> None:
    """CORS allows any origin, never with credentials: what a page of another site can read is
    what anyone can read without signing in."""
    answer = node.get("/api/audit", auth=NODE_ADMIN, headers={"Origin": attacker.origin})
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in answer.headers
    reads = {
        "with-credentials": ('fetch(NODE + "/api/audit", {credentials: "include"}).then(r => r.text())', ""),
        "without": ('fetch(NODE + "/api/audit", {credentials: "omit"}).then(r => r.status)', ""),
        "public": (f'fetch(NODE + "/api/handles/{PUBLIC}").then(r => r.status)', ""),
    }
    stolen = "<script>window.stolen = []; function steal(data) { window.stolen.push(data) }</script>" + "".join(
        f'<script src="{admin.origin}{path}?callback=steal"></script>'
        for path in ("/api/audit", f"/api/handles/{PUBLIC}")
    )
    admin.page.goto(attacker.serve("reads", stolen + scripted(admin.origin, reads)))
    outcomes = wait_until(
        lambda: admin.page.evaluate("window.outcomes"), lambda o: len(o) == len(reads), what="every read"
    )
    assert outcomes == {"with-credentials": "threw TypeError", "without": "401", "public": "200"}
    assert admin.page.evaluate("window.stolen") == []  # no JSONP: JSON run as a script calls nothing
