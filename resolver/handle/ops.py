"""The Handle protocol's administrative operations, mapped onto the registration service.

Each op is what the HTTP API does for the same change (``resolver.http``), with the same
permission checks, templates and audit: CREATE_HANDLE is a PUT with ``overwrite=false``
(``true`` with the OVERWRITE flag; MINT_NEW_SUFFIX mints), ADD_VALUE and MODIFY_VALUE
are a PUT of the named indexes that may not replace, respectively create, a value,
REMOVE_VALUE and DELETE_HANDLE a DELETE. LIST_HANDLES is the listing of a prefix.

Homing: a prefix this node serves is one whose prefix handle it holds under its own
prefix (``RegistrationService.homed_prefixes``). HOME_PREFIX of such a prefix succeeds,
as CNRI's does for a prefix it homes already; of any other it is refused, saying to
create the prefix handle instead, because creating one needs its HS_ADMIN values,
which the request does not carry. UNHOME_PREFIX would mean deleting the prefix handle,
and is refused the same way. All three are the node admin's, as CNRI's server admins'.
"""

from __future__ import annotations

from protocol.errors import (
    HandleError,
    InsufficientPermissions,
    InvalidHandle,
    InvalidValue,
    NotResponsible,
    OperationNotSupported,
)
from protocol.identifiers import NA_PREFIX, Handle, parse_prefix
from protocol.jsonfmt import IncomingValue
from protocol.records import HS_SECKEY, HandleValue
from protocol.wire.message import (
    MAX_MESSAGE,
    AddValueRequest,
    Body,
    CreateHandleRequest,
    CreateHandleResponse,
    GenericRequest,
    GenericResponse,
    ListHandlesResponse,
    ListPrefixesResponse,
    Message,
    ModifyValueRequest,
    OpCode,
    OpFlag,
    RemoveValueRequest,
)
from registry.identity import secrets
from registry.identity.caller import Caller
from registry.service import RegistrationService

HANDLE_OPS = frozenset(
    {OpCode.CREATE_HANDLE, OpCode.DELETE_HANDLE, OpCode.ADD_VALUE, OpCode.REMOVE_VALUE, OpCode.MODIFY_VALUE}
)
PREFIX_OPS = frozenset({OpCode.HOME_PREFIX, OpCode.UNHOME_PREFIX, OpCode.LIST_HOMED_PREFIXES})
ADMIN_OPS = HANDLE_OPS | PREFIX_OPS | {OpCode.LIST_HANDLES}
LIST_BUDGET = MAX_MESSAGE - 4096  # a listing must fit one message, with room for the header and digest
MAX_LISTED = LIST_BUDGET // 7  # handles of the shortest form, "P/S" and its length, that fit


class AdminOps:
    """Runs one authenticated administrative request for a caller."""

    def __init__(self, service: RegistrationService) -> None:
        self.service = service

    def precheck(self, request: Message) -> None:
        """Refuse, before any challenge, what no credential could make acceptable."""
        body = request.body
        if request.op_code in HANDLE_OPS:
            assert isinstance(body, CreateHandleRequest | GenericRequest | RemoveValueRequest)
            self.service.check_target(self._target(request, body.handle))
        elif request.op_code == OpCode.LIST_HANDLES:
            assert isinstance(body, GenericRequest)
            self.service.prefix_zones(_named_prefix(body.handle))

    def _target(self, request: Message, text: str) -> Handle:
        minting = request.op_code == OpCode.CREATE_HANDLE and request.flags & OpFlag.MINT_NEW_SUFFIX
        return self.service.parse(text + "x" if minting else text)

    async def run(self, caller: Caller, request: Message) -> Body:
        """The success body of ``request`` done as ``caller``; a HandleError says why not."""
        op, body = request.op_code, request.body
        if op == OpCode.CREATE_HANDLE:
            assert isinstance(body, CreateHandleRequest)
            return await self.create(caller, request, body)
        if op in (OpCode.ADD_VALUE, OpCode.MODIFY_VALUE):
            assert isinstance(body, AddValueRequest | ModifyValueRequest)
            await self.put_values(caller, body, replace=op == OpCode.MODIFY_VALUE)
            return GenericResponse()
        if op == OpCode.REMOVE_VALUE:
            assert isinstance(body, RemoveValueRequest)
            return await self.remove_values(caller, body)
        if op == OpCode.DELETE_HANDLE:
            assert isinstance(body, GenericRequest)
            await self.service.delete(caller, self.service.parse(body.handle))
            return GenericResponse()
        if op == OpCode.LIST_HANDLES:
            assert isinstance(body, GenericRequest)
            return await self.list_handles(caller, body.handle)
        if op in PREFIX_OPS:
            assert isinstance(body, GenericRequest)
            return await self.prefixes(caller, op, body.handle)
        raise OperationNotSupported(f"op code {op.name} is not an administrative operation")

    def incoming(self, values: tuple[HandleValue, ...]) -> list[IncomingValue]:
        """The values as the service takes them, stamped now.

        An HS_SECKEY that already is handle.net's hashed form (40 lowercase hex digits) is
        kept as it is, as a client that hashes its secret sends it; any other is the secret
        itself and is hashed on arrival, as over HTTP."""
        if not values:
            raise InvalidValue("the request carries no values")
        if len({v.index for v in values}) != len(values):
            raise InvalidValue("the request carries two values with the same index")
        now = self.service.now()
        return [IncomingValue(v._replace(timestamp=now), _format(v)) for v in values]

    async def create(self, caller: Caller, request: Message, body: CreateHandleRequest) -> Body:
        incoming = self.incoming(body.values)
        if request.flags & OpFlag.MINT_NEW_SUFFIX:
            minted = await self.service.mint(caller, body.handle, incoming)
            return CreateHandleResponse(minted.text)
        overwrite = bool(request.flags & OpFlag.OVERWRITE)
        await self.service.put(caller, self.service.parse(body.handle), incoming, overwrite=overwrite)
        return CreateHandleResponse()

    async def put_values(self, caller: Caller, body: CreateHandleRequest, *, replace: bool) -> None:
        incoming = self.incoming(body.values)
        indexes = {v.value.index for v in incoming}
        handle = self.service.parse(body.handle)
        await self.service.put(caller, handle, incoming, overwrite=replace, indexes=indexes, must_exist=True)

    async def remove_values(self, caller: Caller, body: RemoveValueRequest) -> Body:
        if not body.indexes:
            raise InvalidValue("the request names no value index to remove")
        await self.service.delete(caller, self.service.parse(body.handle), set(body.indexes))
        return GenericResponse()

    async def list_handles(self, caller: Caller, text: str) -> Body:
        prefix, total, handles = await self.service.list_handles(caller, _named_prefix(text), 0, MAX_LISTED)
        if total > len(handles) or sum(4 + len(h.encode()) for h in handles) > LIST_BUDGET:
            raise HandleError(
                f"the {total} handles under {prefix} do not fit one message; list them over HTTP "
                f"(GET /api/handles?prefix={prefix}&cursor=)"
            )
        return ListHandlesResponse(tuple(handles))

    async def prefixes(self, caller: Caller, op: OpCode, text: str) -> Body:
        if caller.identity != self.service.node_admin:
            raise InsufficientPermissions(f"only the node admin ({self.service.node_admin}) may {op.name.lower()}")
        homed = await self.service.homed_prefixes()
        if op == OpCode.LIST_HOMED_PREFIXES:
            return ListPrefixesResponse(tuple(f"{NA_PREFIX}/{p}" for p in homed))
        prefix = _named_prefix(text)
        if op == OpCode.HOME_PREFIX and prefix not in homed:
            if not self.service.responsible_for(prefix):
                raise NotResponsible(f"this node serves prefix {self.service.node_prefix}; {prefix} is not under it")
            raise OperationNotSupported(
                f"this node serves a prefix by holding its prefix handle: create {NA_PREFIX}/{prefix} "
                "with its HS_ADMIN values (CREATE_HANDLE or HTTP PUT) to serve it"
            )
        if op == OpCode.UNHOME_PREFIX and prefix in homed:
            raise OperationNotSupported(
                f"this node stops serving {prefix} only when its prefix handle {NA_PREFIX}/{prefix} is deleted"
                + (" (the node's own prefix cannot be)" if prefix == self.service.node_prefix else "")
            )
        return GenericResponse()


def _format(value: HandleValue) -> str:
    if value.type.upper() == HS_SECKEY and secrets.is_current(value.data):
        return "hash"
    return "string"


def _named_prefix(text: str) -> str:
    """``0.NA/88.118`` (as CNRI's tools send it) or a bare ``88.118`` → the normalised prefix."""
    head, slash, rest = text.partition("/")
    if slash and parse_prefix(head) != NA_PREFIX:
        raise InvalidHandle(f"{text!r} names no prefix: expected 0.NA/<prefix>")
    return parse_prefix(rest if slash else text)
