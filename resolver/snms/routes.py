"""SNMS's management API on the HTTP listener: what Chinese enterprise systems call today.

Token login (``/identity/token``, ``/identity/token/v1``), identifiers (``/identityv2/data``
and its batch forms) and data templates (``/snms/api/v5/template``, and v3's three). Every
answer is SNMS's envelope ``{"message", "status", "data"}`` with HTTP 200, as SNMS answers,
except an internal failure (-4: 500, or 503 while the store is unavailable), a login
refused for too many failures (429 with Retry-After) and a write sent to a mirror site
(-2: 503). The writes go through the same registration service, permissions, templates and
audit as the REST API and the Handle protocol; the request shapes and their checks are in ``resolver.snms.format``.

Logins are ``resolver.snms.logins``; each request's bearer token is checked here, reading the
identity's record through the engine's cache.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from protocol.codes import ResponseCode
from protocol.errors import (
    AuthenticationFailed,
    HandleError,
    HandleNotFound,
    InvalidValue,
    MirrorReadOnly,
    ProtocolViolation,
    TooManyFailures,
)
from protocol.identifiers import Handle, parse_prefix
from protocol.records import HS_SECKEY
from registry.batch import MAX_OPERATIONS, BatchItem, BatchRunner
from registry.identity.auth import Authenticator
from registry.identity.caller import Caller
from registry.identity.tokens import TokenRefused, TokenSigner, UsedPasswords
from registry.service import RegistrationService
from registry.templates import SNMS_NAME, Field, Template, TemplateChecker
from resolver.engine import ResolutionEngine
from resolver.http.common import CONFIG, body_limit, edged, read_body
from resolver.snms import format as snms
from resolver.snms.logins import TokenLogins

NOT_LOGGED_IN = "未登录：请求缺少 Authorization: Bearer <token>，请先调用 /identity/token 登录 (not logged in)"
NOT_BEARER = "未登录：Authorization 必须是 Bearer <token> (the Authorization header must be Bearer <token>)"
REVOKED = "token已失效：身份的密钥已更改或身份已删除，请重新登录 (the identity's secret changed since login)"

MIRROR_READ_ONLY = "本节点是镜像站点，只读，请向主站点写入"

SnmsHandler = Callable[[web.Request], Awaitable[web.Response]]


def envelope(status: int, message: str, data: Any, http_status: int = 200, code: int = 1) -> web.Response:
    body = {"message": message, "status": status, "data": data}
    response = web.json_response(body, status=http_status, dumps=_dumps)
    response["code"] = code
    return response


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def ok(data: Any) -> web.Response:
    return envelope(snms.OK, "success", data)


class SnmsRefusals:
    """SNMS's form of every refusal, for the shared edge: its envelope, with HTTP 200 unless the
    node itself failed (500, 503) or a login is held back for too many failures (429)."""

    def refused(self, request: web.Request, exc: HandleError) -> web.Response:
        if isinstance(exc, TokenRefused):
            return envelope(snms.NOT_LOGGED_IN, exc.message, None, code=ResponseCode.AUTHENTICATION_NEEDED)
        if isinstance(exc, TooManyFailures):
            message = f"登录失败次数过多，请{exc.retry_after}秒后重试 ({exc.message})"
            return envelope(snms.FAILED, message, None, 429, exc.code)
        if isinstance(exc, MirrorReadOnly):  # 503 as over REST: the write succeeds at the primary site
            return envelope(snms.FAILED, f"{MIRROR_READ_ONLY}：{exc.message}", None, 503, exc.code)
        status, message = snms.refusal(exc)
        http_status = 200 if status != snms.INTERNAL else (503 if exc.code == ResponseCode.SERVER_TOO_BUSY else 500)
        return envelope(status, message, None, http_status, exc.code)

    def http_error(self, request: web.Request, exc: web.HTTPException) -> web.Response:
        if isinstance(exc, web.HTTPRequestEntityTooLarge):
            limit = body_limit(request)
            message = f"请求体过大：最多{limit}字节 (the body is over {limit} bytes)"
            return envelope(snms.FAILED, message, None, code=ResponseCode.PROTOCOL_ERROR)
        return envelope(snms.FAILED, f"请求不合法 ({exc.reason})", None, code=ResponseCode.PROTOCOL_ERROR)

    def unexpected(self, request: web.Request) -> web.Response:
        return envelope(snms.INTERNAL, snms.INTERNAL_ERROR, None, 500, ResponseCode.ERROR)


REFUSALS = SnmsRefusals()


class SnmsRoutes:
    def __init__(
        self,
        service: RegistrationService,
        authenticator: Authenticator,
        engine: ResolutionEngine,
        signer: TokenSigner,
        used: UsedPasswords | None = None,
    ) -> None:
        self.service = service
        self.logins = TokenLogins(service, authenticator, signer, used)
        self.engine = engine
        self.signer = signer

    def add_to(self, router: web.UrlDispatcher) -> None:
        def add(method: str, path: str, handler: SnmsHandler, name: str) -> None:
            router.add_route(method, path, edged(name, handler, REFUSALS), name=name)

        add("POST", "/identity/token", self.login, "snms_login")
        add("POST", "/identity/token/v1", self.login_dated, "snms_login_v1")
        add("GET", "/identityv2/data/detail", self.detail, "snms_detail")
        add("POST", "/identityv2/data", self.create, "snms_create")
        add("PUT", "/identityv2/data", self.update, "snms_update")
        add("DELETE", "/identityv2/data", self.delete, "snms_delete")
        add("POST", "/identityv2/data/batchCreate", self.batch_create, "snms_batch_create")
        add("PUT", "/identityv2/data/batchUpdate", self.batch_update, "snms_batch_update")
        add("DELETE", "/identityv2/data/batchDelete", self.batch_delete, "snms_batch_delete")
        for version in ("v5", "v3"):
            path = f"/snms/api/{version}/template"
            add("GET", path, self.get_template, f"snms_template_{version}")
            add("POST", path, self.create_template, f"snms_create_template_{version}")
            add("DELETE", path, self.delete_template, f"snms_delete_template_{version}")
        add("PUT", "/snms/api/v5/template", self.edit_template, "snms_edit_template_v5")

    # Login ------------------------------------------------------------------------------

    def _require_secure(self, request: web.Request) -> None:
        config = request.app[CONFIG]
        if not (request.secure or config.loopback_only or config.allow_insecure_auth):
            raise AuthenticationFailed("认证失败：明文HTTP上不接受登录和token，请使用HTTPS (use HTTPS)")

    async def _credentials(self, request: web.Request) -> tuple[str, str]:
        self._require_secure(request)
        body = await read_body(request)
        if not isinstance(body, dict):
            raise ProtocolViolation('请求体必须是JSON对象 (the body must be {"username", "password"})')
        return (
            snms.text_field(body, "username", snms.MAX_USERNAME_CHARS),
            snms.text_field(body, "password", snms.MAX_PASSWORD_CHARS),
        )

    async def login(self, request: web.Request) -> web.Response:
        """``POST /identity/token``: the secret in clear."""
        username, password = await self._credentials(request)
        return ok({"token": await self.logins.login(username, password, request.remote or "")})

    async def login_dated(self, request: web.Request) -> web.Response:
        """``POST /identity/token/v1``: SNMS's dated digest of the secret."""
        username, password = await self._credentials(request)
        return ok({"token": await self.logins.login_dated(username, password, request.remote or "")})

    # Tokens -----------------------------------------------------------------------------

    async def _caller(self, request: web.Request) -> Caller:
        """The identity a request's bearer token names, if the token is good and its secret unchanged."""
        header = request.headers.get("Authorization")
        if not header:
            raise TokenRefused(NOT_LOGGED_IN)
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenRefused(NOT_BEARER)
        self._require_secure(request)
        claims = self.signer.verify(token.strip(), case_sensitive=self.service.case_sensitive)
        identity = claims.identity
        handle = self.service.parse(identity.handle)
        if not self.service.responsible_for(handle.zone):  # signed by a node sharing the key, held elsewhere
            raise TokenRefused(REVOKED)
        # Read through the cache: every write to the identity invalidates it on every worker.
        entry = self.engine.fresh(identity.handle) or await self.engine.lookup(handle)
        value = None if entry.record is None else entry.record.value_at(identity.index)
        if value is None or value.type.upper() != HS_SECKEY:
            raise TokenRefused(REVOKED)
        if not hmac.compare_digest(self.signer.fingerprint(value.data, value.timestamp), claims.fingerprint):
            raise TokenRefused(REVOKED)
        return Caller(identity, request.remote or "")

    # Identifiers ------------------------------------------------------------------------

    async def detail(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        text = request.query.get("handle")
        if not text:
            raise ProtocolViolation("缺少必要的请求参数: handle")
        if len(text) > snms.MAX_HANDLE_CHARS:
            raise ProtocolViolation(f"参数handle长度不能超过{snms.MAX_HANDLE_CHARS}")
        handle = self.service.parse(text)
        entry = await self.engine.lookup(handle)
        if entry.record is None:
            raise HandleNotFound(f"handle {handle.text} not found", handle=handle.text)
        await self.service.charge_resolution(caller)  # a resolution by an identity: its quota counts it
        values = await self.service.visible_values(caller, handle, entry.record)
        return ok(snms.detail(entry.record.handle, handle.prefix, values))

    async def _checked_item(
        self, caller: Caller, raw: Any, now: int, templates: _Templates
    ) -> tuple[Handle, snms.Item]:
        item = snms.parse_item(raw, now)
        handle = self.service.parse(item.handle)
        self.service.check_target(handle)
        if handle.is_prefix_handle:
            raise InvalidValue("非法操作：前缀标识(0.NA/...)不能通过此接口注册")
        fields = await templates.fields(handle.prefix, item.version)
        if fields is None:
            # Under another enterprise's prefix the answer is "no permission", whatever its templates.
            await self.service.planner(caller).require_create(handle)
        snms.check_item(fields, handle.prefix, item)
        return handle, item

    async def create(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        handle, item = await self._checked_item(caller, await read_body(request), self.service.now(), self._templates())
        # A create retried after a lost answer (SNMS's HTTP 504) finds its own record: success.
        await self.service.create(caller, handle, item.incoming)
        return ok(True)

    async def update(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        handle, item = await self._checked_item(caller, await read_body(request), self.service.now(), self._templates())
        await self.service.update_fields(caller, handle, item.incoming)
        return ok(True)

    async def delete(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        body = await read_body(request)
        if not isinstance(body, dict):
            raise ProtocolViolation('请求体必须是JSON对象 (the body must be {"handle": ...})')
        handle = self.service.parse(snms.text_field(body, "handle", snms.MAX_HANDLE_CHARS))
        await self.service.delete(caller, handle)
        return ok(True)

    def _templates(self) -> _Templates:
        return _Templates(self.service.template_checker())

    async def _batch_body(self, request: web.Request) -> list[Any]:
        body = await read_body(request)
        if not isinstance(body, list):
            raise ProtocolViolation("请求体必须是JSON数组 (the body must be a JSON array)")
        if not body:
            raise ProtocolViolation("请求体不能为空数组 (the array is empty)")
        if len(body) > MAX_OPERATIONS:
            raise ProtocolViolation(
                f"批量操作最多支持{MAX_OPERATIONS}条，本次{len(body)}条 "
                f"(at most {MAX_OPERATIONS} items; this request has {len(body)})"
            )
        return body

    async def _batch_write(self, request: web.Request, op: str) -> web.Response:
        caller = await self._caller(request)
        body = await self._batch_body(request)
        runner = BatchRunner(self.service, caller)
        templates = _Templates(runner.planner.templates)  # the runner's own: each template is read once
        items = []
        for raw in body:
            try:
                handle, item = await self._checked_item(caller, raw, runner.now, templates)
                items.append(BatchItem(op, handle.text, handle, incoming=item.incoming))
            except HandleError as exc:
                shown = raw.get("handle") if isinstance(raw, dict) else None
                items.append(BatchItem(op, shown if isinstance(shown, str) else "", error=exc))
        results = await runner.run_items(False, items)
        return ok([{"handle": r.handle, "msg": _item_message(r.code, r.message)} for r in results])

    async def batch_create(self, request: web.Request) -> web.Response:
        return await self._batch_write(request, "create")

    async def batch_update(self, request: web.Request) -> web.Response:
        return await self._batch_write(request, "update_fields")

    async def batch_delete(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        body = await self._batch_body(request)
        runner = BatchRunner(self.service, caller)
        items = []
        for n, raw in enumerate(body):
            if not isinstance(raw, str) or not raw or len(raw) > snms.MAX_HANDLE_CHARS:
                error = ProtocolViolation(f"第{n}项必须是不超过{snms.MAX_HANDLE_CHARS}个字符的标识字符串")
                items.append(BatchItem("delete", raw if isinstance(raw, str) else "", error=error))
                continue
            try:
                handle = self.service.parse(raw)
                self.service.check_target(handle)
                items.append(BatchItem("delete", handle.text, handle))
            except HandleError as exc:
                items.append(BatchItem("delete", raw, error=exc))
        results = await runner.run_items(False, items)
        shown = [
            {"handle": r.handle, "code": snms.status_of(r.code), "msg": _item_message(r.code, r.message)}
            for r in results
        ]
        return ok(shown)

    # Templates --------------------------------------------------------------------------

    async def _template(self, ref: snms.TemplateRef) -> Template | None:
        try:
            return await self.service.get_template(ref.prefix, SNMS_NAME, ref.version)
        except HandleNotFound:
            return None

    async def get_template(self, request: web.Request) -> web.Response:
        await self._caller(request)
        ref = snms.template_ref(dict(request.query))
        template = await self._template(ref)
        if template is None:
            raise InvalidValue(f"数据模板不存在：前缀{ref.prefix}没有版本为{ref.version}的数据模板")
        return ok(snms.template_json(parse_prefix(ref.prefix), template))

    async def create_template(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        raw = await read_body(request)
        ref, body = snms.template_body(raw, None)
        if await self._template(ref) is not None:
            raise InvalidValue(f"数据模板已存在：前缀{ref.prefix}已有版本为{ref.version}的数据模板")
        await self.service.put_template(caller, ref.prefix, SNMS_NAME, body)
        return ok(True)

    async def edit_template(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        raw = await read_body(request)
        existing = await self._template(snms.template_ref(raw))
        if existing is None:
            ref = snms.template_ref(raw)
            raise InvalidValue(f"数据模板不存在：前缀{ref.prefix}没有版本为{ref.version}的数据模板（版本不能修改）")
        ref, body = snms.template_body(raw, existing)
        await self.service.put_template(caller, ref.prefix, SNMS_NAME, body)
        return ok(True)

    async def delete_template(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        ref = snms.template_ref(await read_body(request))
        try:
            await self.service.delete_template(caller, ref.prefix, SNMS_NAME, ref.version)
        except HandleNotFound:
            raise InvalidValue(f"数据模板不存在：前缀{ref.prefix}没有版本为{ref.version}的数据模板") from None
        return ok(True)


class _Templates:
    """The SNMS templates one request's items name, by prefix and version, each looked up once."""

    def __init__(self, checker: TemplateChecker) -> None:
        self._checker = checker
        self._found: dict[tuple[str, str], dict[int, Field] | None] = {}

    async def fields(self, prefix: str, version: str) -> dict[int, Field] | None:
        key = (prefix, version)
        if key not in self._found:
            self._found[key] = snms.fields_of(await self._checker.find(prefix, SNMS_NAME, version))
        return self._found[key]


def _item_message(code: int, message: str) -> str:
    return "success" if code == ResponseCode.SUCCESS else snms.message_of(code, message)
