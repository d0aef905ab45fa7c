"""Who may do what.

For now one rule: the node admin (``300:0.NA/<node prefix>``) may write and list
anything the node is responsible for, and read values that are not public; anonymous
callers read public values only. The full HS_ADMIN model plugs in behind these methods.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.errors import AuthenticationNeeded, InsufficientPermissions
from protocol.identifiers import prefix_handle
from protocol.records import HandleValue
from registry.auth import Identity

NODE_ADMIN_INDEX = 300


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: an authenticated identity or nobody, and from where."""

    identity: Identity | None = None
    address: str = ""


ANONYMOUS = Caller()


class Policy:
    def __init__(self, node_prefix: str) -> None:
        self.node_admin = Identity(NODE_ADMIN_INDEX, prefix_handle(node_prefix).key)

    def _is_admin(self, caller: Caller) -> bool:
        return caller.identity == self.node_admin

    def check_write(self, caller: Caller, what: str) -> None:
        if caller.identity is None:
            raise AuthenticationNeeded(f"{what} requires authentication")
        if not self._is_admin(caller):
            raise InsufficientPermissions(f"identity {caller.identity} may not {what}")

    def check_list(self, caller: Caller, prefix: str) -> None:
        self.check_write(caller, f"list handles under {prefix}")

    def can_read(self, caller: Caller, value: HandleValue) -> bool:
        if value.public_read:
            return True
        return value.admin_read and self._is_admin(caller)
