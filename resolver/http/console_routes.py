"""The enterprise web console: its files, served from the package at ``/console/``.

The console is a page that talks to the REST API like any other client (deploy/CONSOLE.md);
this module only hands out its files, under a Content-Security-Policy that allows nothing
but this origin, so the page runs no script and loads no style the package did not ship.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from protocol.codes import ResponseCode
from resolver.http.common import Routes

PAGE = "index.html"
JAVASCRIPT = "text/javascript; charset=utf-8"
MODULES = ("app.js", "api.js", "dom.js", "chart.js", "views.js", "form.js", "upload.js", "i18n.js", "messages.js")
CONTENT_TYPES = {
    PAGE: "text/html; charset=utf-8",
    **dict.fromkeys(MODULES, JAVASCRIPT),
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
REVALIDATE = "no-cache"
FOREVER = "public, max-age=31536000, immutable"


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    version: str  # a digest of the body: the page asks for ``name?v=version``

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


def load_assets() -> dict[str, Asset]:
    """The console's files, read once from the installed package.

    The page names the files it loads with their digests (``app.js?v=…``), so those can be
    cached for a year while a new release is still fetched at once; the page and the
    modules that app.js imports by plain name are revalidated (ETag) on every load.
    """
    folder = resources.files("resolver.http").joinpath("console")
    raw = {name: folder.joinpath(name).read_bytes() for name in CONTENT_TYPES}
    versions = {name: hashlib.sha256(body).hexdigest()[:16] for name, body in raw.items()}
    page = raw[PAGE]
    for name in CONTENT_TYPES:
        if name != PAGE:
            page = page.replace(f'"{name}"'.encode(), f'"{name}?v={versions[name]}"'.encode())
    raw[PAGE] = page
    versions[PAGE] = hashlib.sha256(page).hexdigest()[:16]
    return {name: Asset(body, CONTENT_TYPES[name], versions[name]) for name, body in raw.items()}


class ConsoleRoutes:
    """GET /console/ and its files; /console (no slash) redirects there so relative links resolve."""

    def __init__(self) -> None:
        self.assets = load_assets()

    def add_to(self, r: Routes) -> None:
        r.get("/console", self.redirect, "console_redirect")
        r.get("/console/", self.page, "console")
        r.get("/console/{name:[A-Za-z0-9_.-]+}", self.asset, "console_asset")

    async def redirect(self, request: web.Request) -> web.Response:
        response = web.Response(status=301, headers={"Location": "/console/"})
        response["code"] = ResponseCode.SUCCESS
        return response

    async def page(self, request: web.Request) -> web.Response:
        return self._serve(request, PAGE)

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.assets:
            raise web.HTTPNotFound()
        return self._serve(request, name)

    def _serve(self, request: web.Request, name: str) -> web.Response:
        asset = self.assets[name]
        pinned = name != PAGE and request.query.get("v") == asset.version
        headers = {
            **SECURITY_HEADERS,
            "Content-Type": asset.content_type,
            "ETag": asset.etag,
            "Cache-Control": FOREVER if pinned else REVALIDATE,
        }
        if asset.etag in request.headers.get("If-None-Match", ""):
            response = web.Response(status=304, headers=headers)
        else:
            response = web.Response(body=asset.body, headers=headers)
        response["code"] = ResponseCode.SUCCESS
        return response
