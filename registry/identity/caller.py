"""Who is asking: an identity, and the caller of a request as the permission model sees it.

The rules themselves (HS_ADMIN grants, groups, value permission bits) live in
``registry.authority``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol.records import HandleRecord

NODE_ADMIN_INDEX = 300


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated (or named) identity: the value at ``index`` of ``handle``."""

    index: int
    handle: str  # normalised key of the identity's handle

    def __str__(self) -> str:
        return f"{self.index}:{self.handle}"


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated identity or nobody, and the client address it came from."""

    identity: Identity | None = None
    address: str = ""
    # How the identity was proved when not by this request's own credentials: "login" for a
    # Handle connection logged in once (resolver.handle.login). The audit prefixes the
    # operation with it, as batch writes are logged as batch_<operation>.
    via: str = ""
    # Records its login read beside its own identity, for the write it came to make
    # (``RegistrationService._write``): one trip to the store for both. Taken once, and only
    # while fresh (``read_at``, time.monotonic()): a request body sent slowly after the login
    # must not let a write plan against grants read long before.
    read_ahead: dict[str, HandleRecord | None] | None = field(default=None, compare=False)
    read_at: float = field(default=0.0, compare=False)
