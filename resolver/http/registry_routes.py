"""HTTP routes of the registry: batch registration, metadata templates, audit log, statistics, quotas."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import msgpack
from aiohttp import web

from protocol.codes import ResponseCode, http_status
from protocol.errors import InvalidValue, ProtocolViolation
from protocol.jsonfmt import format_timestamp
from registry.batch import BatchRunner, parse_batch
from registry.identity.auth import Authenticator
from registry.quota import parse_setting_changes
from registry.service import RegistrationService
from registry.templates import template_to_json
from resolver.http.common import (
    MSGPACK_TYPES,
    Routes,
    caller_of,
    check_body_type,
    int_param,
    read_body,
    render,
    require_identity,
)

MAX_AUDIT_ENTRIES = 10_000
DEFAULT_AUDIT_ENTRIES = 100


def _since(request: web.Request) -> float:
    raw = request.query.get("since")
    if not raw:
        return 0.0
    try:
        moment = float(raw)
    except ValueError:
        pass
    else:
        if not math.isfinite(moment):
            raise ProtocolViolation(f"query parameter since must be a finite time, not {raw!r}")
        return moment
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ProtocolViolation(f"query parameter since must be epoch seconds or ISO-8601, not {raw!r}") from None


class RegistryRoutes:
    def __init__(self, service: RegistrationService, authenticator: Authenticator) -> None:
        self.service = service
        self.authenticator = authenticator

    def add_to(self, r: Routes) -> None:
        r.post("/api/batch", self.batch, "batch")
        r.get("/api/templates/{prefix}", self.list_templates, "templates")
        r.get("/api/templates/{prefix}/{name}", self.get_template, "template")
        r.put("/api/templates/{prefix}/{name}", self.put_template, "put_template")
        r.delete("/api/templates/{prefix}/{name}", self.delete_template, "delete_template")
        r.get("/api/audit", self.audit, "audit")
        r.get("/api/stats", self.stats, "stats")
        r.get("/api/quotas", self.quotas, "quotas")
        r.get("/api/quotas/{prefix}", self.quota, "quota")
        r.put("/api/quotas/{prefix}", self.set_quota, "set_quota")

    async def batch(self, request: web.Request) -> web.Response:
        caller = await caller_of(request, self.authenticator)
        require_identity(caller, "a batch")
        atomic, operations = parse_batch(await read_body(request))
        results = await BatchRunner(self.service, caller).run(atomic, operations)
        failed = [r for r in results if r.code != ResponseCode.SUCCESS and not r.aborted]
        body: dict[str, Any] = {"responseCode": 1}
        status = 200
        if atomic and failed:
            message = f"atomic batch refused: {len(failed)} items failed; nothing was written"
            body = {"responseCode": failed[0].code, "message": message}
            status = http_status(ResponseCode(failed[0].code))
        body["results"] = [r.as_dict() for r in results]
        if any(t in request.headers.get("Accept", "") for t in MSGPACK_TYPES):
            response = web.Response(body=msgpack.packb(body), status=status, content_type="application/msgpack")
            response["code"] = body["responseCode"]
            return response
        return render(request, body, status)

    async def put_template(self, request: web.Request) -> web.Response:
        prefix, name = request.match_info["prefix"], request.match_info["name"]
        caller = await caller_of(request, self.authenticator)
        require_identity(caller, f"template {prefix}/{name}")
        created = await self.service.put_template(caller, prefix, name, await read_body(request))
        return render(request, {"responseCode": 1, "prefix": prefix, "name": name}, 201 if created else 200)

    async def get_template(self, request: web.Request) -> web.Response:
        prefix, name = request.match_info["prefix"], request.match_info["name"]
        template = await self.service.get_template(prefix, name, request.query.get("version"))
        return render(request, {"responseCode": 1, "prefix": prefix, **template_to_json(template)}, 200)

    async def list_templates(self, request: web.Request) -> web.Response:
        prefix, templates = await self.service.list_templates(request.match_info["prefix"])
        shown = [{"name": t.name, "version": t.version} for t in templates]
        return render(request, {"responseCode": 1, "prefix": prefix, "templates": shown}, 200)

    async def delete_template(self, request: web.Request) -> web.Response:
        check_body_type(request)  # reads no body, but refuses one a browser form could send
        prefix, name = request.match_info["prefix"], request.match_info["name"]
        caller = await caller_of(request, self.authenticator)
        require_identity(caller, f"template {prefix}/{name}")
        deleted = await self.service.delete_template(caller, prefix, name, request.query.get("version"))
        return render(request, {"responseCode": 1, "prefix": prefix, "name": name, "deleted": deleted}, 200)

    async def audit(self, request: web.Request) -> web.Response:
        caller = await caller_of(request, self.authenticator)
        limit = min(int_param(request, "limit") or DEFAULT_AUDIT_ENTRIES, MAX_AUDIT_ENTRIES)
        prefix = request.query.get("prefix") or None
        entries = await self.service.audit_log(caller, prefix, _since(request), limit)
        shown = [
            {
                "time": format_timestamp(int(e.time)),
                "identity": e.identity,
                "address": e.address,
                "operation": e.operation,
                "handle": e.handle,
                "responseCode": e.result,
                **({"message": e.message} if e.message else {}),
            }
            for e in entries
        ]
        return render(request, {"responseCode": 1, "entries": shown}, 200)

    async def stats(self, request: web.Request) -> web.Response:
        caller = await caller_of(request, self.authenticator)
        found = await self.service.stats(caller, request.query.get("prefix") or None)
        shown = [
            {
                "prefix": s.prefix,
                "handles": s.handles,
                "registrationsPerDay": s.registrations_per_day,
                "quotaRefusalsPerDay": s.refusals_per_day,
            }
            for s in found
        ]
        return render(request, {"responseCode": 1, "prefixes": shown}, 200)

    async def quotas(self, request: web.Request) -> web.Response:
        """GET /api/quotas: the node's defaults and every prefix's own quotas (the node admin's)."""
        caller = await caller_of(request, self.authenticator)
        defaults, found = await self.service.quota_settings(caller)
        shown = [{"prefix": prefix, "set": setting.as_json()} for prefix, setting in found.items()]
        body = {"responseCode": 1, "defaults": defaults.as_json(), "prefixes": shown}
        return render(request, body, 200)

    async def quota(self, request: web.Request) -> web.Response:
        """GET /api/quotas/{prefix}: its quotas in force, its own, and today's use (China's day)."""
        caller = await caller_of(request, self.authenticator)
        report = await self.service.quota_report(caller, request.match_info["prefix"])
        return render(request, {"responseCode": 1, **report.as_json()}, 200)

    async def set_quota(self, request: web.Request) -> web.Response:
        """PUT /api/quotas/{prefix}: change some of its quotas (null: the node's default); the node admin's."""
        prefix = request.match_info["prefix"]
        caller = await caller_of(request, self.authenticator)
        require_identity(caller, f"the quotas of {prefix}")
        try:
            changes = parse_setting_changes(await read_body(request))
        except ValueError as exc:
            raise InvalidValue(str(exc)) from None
        await self.service.set_quota(caller, prefix, changes)
        report = await self.service.quota_report(caller, prefix)
        return render(request, {"responseCode": 1, **report.as_json()}, 200)
