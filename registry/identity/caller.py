"""Who is asking: the caller of a request, as the permission model sees it.

The rules themselves (HS_ADMIN grants, groups, value permission bits) live in
``registry.authority``.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.identity.auth import Identity

NODE_ADMIN_INDEX = 300


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated identity or nobody, and the client address it came from."""

    identity: Identity | None = None
    address: str = ""
