"""What an import may write: the node's prefix, its case rule, the largest record, the import's time,
the prefixes it is limited to.

Its own module so that both checkers, the general one (``items``) and the fast one (``fast``),
import it and neither imports the other for it: items -> fast -> rules, items -> rules.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rules:
    """What the node accepts: its prefix, its case rule, the largest record, the import's time."""

    node_prefix: str
    case_sensitive: bool = False
    max_bytes: int = 1024 * 1024
    now: int = 0
    scope: tuple[str, ...] = ()  # the prefixes an import is limited to (--prefix); empty: all it serves
