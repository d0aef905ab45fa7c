"""Quotas: what an enterprise prefix's plan allows, checked where the writes are decided.

A secondary node sells enterprises plans with limits. Four kinds, and the response codes of
Teleinfo's id-pointer-sdk their refusals carry (``protocol.codes``):

- ``identifiers``: identifiers registered under the prefix at one time. A create beyond it
  is refused with 604 (RC_REGISTER_COUNT_LIMIT, "registration count limit").
- ``registrations``: identifiers created under the prefix in one day; 603
  (RC_REQUEST_LIMIT_DAILY, "daily request limit"): a daily allowance of requests, used up
  until midnight, which deleting identifiers does not give back (604 would tell a client to
  make room, which does not help here).
- ``resolutions``: authenticated resolutions by one identity of the prefix in one day; 603.
  Anonymous resolutions have no identity to count against and are never counted, so the
  anonymous hot path pays nothing.
- ``prefixes``: prefixes derived from the prefix (at any depth: 88.118.8.1 and 88.118.8.1.2
  both count against 88.118.8); 605 (RC_PREFIX_LIMIT, "prefix limit").

Each is a count, 0 meaning no limit. The node-wide defaults are settings (``Config``); the
node admin sets a prefix's own (``QuotaSetting``, kept in the store). Quotas govern prefixes
derived from the node's prefix, each its own (a sub-prefix has the defaults unless it is given
others), never the node's own prefix. Days are China's (``registry.days``).

The counts the checks read are the store's, read in the transaction that writes (a
``Ledger``, built by the backend after locking what it reads), so that the node's worker
processes and other nodes on one database cannot together pass a limit, and a write that is
refused writes and counts nothing. Bulk import (``idnode import``) is the operator's and is
not checked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from protocol.errors import DailyQuotaExceeded, IdentifierQuotaExceeded, PrefixQuotaExceeded, QuotaExceeded
from protocol.identifiers import NA_PREFIX, is_at_or_under
from protocol.records import HandleRecord
from registry.days import china_day, seconds_to_midnight

IDENTIFIERS, REGISTRATIONS, RESOLUTIONS, PREFIXES = "identifiers", "registrations", "resolutions", "prefixes"
KINDS = (IDENTIFIERS, REGISTRATIONS, RESOLUTIONS, PREFIXES)  # the metric's label values
NA_KEY_START = NA_PREFIX + "/"
# The JSON name of each quota (REST, the admin command's --json), in Limits' field order.
JSON_NAMES = {
    "identifiers": "identifiers",
    "registrations_per_day": "registrationsPerDay",
    "resolutions_per_day": "resolutionsPerDay",
    "prefixes": "prefixes",
}
MAX_LIMIT = 2**62  # fits PostgreSQL's bigint with room to count past it


@dataclass(frozen=True, slots=True)
class Limits:
    """The quotas in force for a prefix, each a count; 0: no limit."""

    identifiers: int = 0
    registrations_per_day: int = 0
    resolutions_per_day: int = 0
    prefixes: int = 0

    def as_json(self) -> dict[str, int]:
        return {JSON_NAMES[f.name]: getattr(self, f.name) for f in fields(self)}


UNLIMITED = Limits()


@dataclass(frozen=True, slots=True)
class QuotaSetting:
    """A prefix's own quotas as the node admin set them; None: the node's default applies."""

    identifiers: int | None = None
    registrations_per_day: int | None = None
    resolutions_per_day: int | None = None
    prefixes: int | None = None

    @property
    def empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def as_row(self) -> tuple[int | None, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def as_json(self) -> dict[str, int | None]:
        return {JSON_NAMES[f.name]: getattr(self, f.name) for f in fields(self)}

    def changed(self, changes: Mapping[str, int | None]) -> QuotaSetting:
        """This setting with ``changes`` (field names) applied."""
        return replace(self, **changes)


def parse_setting_changes(body: Any) -> dict[str, int | None]:
    """A JSON object of quotas to change (``{"identifiers": 1000, "registrationsPerDay": null}``):
    field names and values; null puts the node's default back. ValueError says what is wrong."""
    if not isinstance(body, dict) or not body:
        raise ValueError(f"expected an object with one or more of {', '.join(JSON_NAMES.values())}")
    by_json = {j: f for f, j in JSON_NAMES.items()}
    changes: dict[str, int | None] = {}
    for name, value in body.items():
        if name not in by_json:
            raise ValueError(f"unknown quota {name!r}; expected {', '.join(JSON_NAMES.values())}")
        if value is not None and (type(value) is not int or not 0 <= value <= MAX_LIMIT):
            raise ValueError(f"quota {name} must be a whole number from 0 (no limit) or null (the node's default)")
        changes[by_json[name]] = value
    return changes


def identity_prefix(key: str) -> str:
    """The prefix an identity's handle (a normalised key) belongs to: ``0.NA/P`` and ``P/...`` to P."""
    head, _, rest = key.partition("/")
    return rest if head == NA_PREFIX else head


def key_prefix(key: str) -> str:
    return key.partition("/")[0]


def derived_prefix(key: str) -> str | None:
    """The prefix a prefix handle's key names (``0.NA/88.118.8`` → 88.118.8), else None."""
    if not key.startswith(NA_KEY_START) or "/" in key[len(NA_KEY_START) :]:
        return None
    return key[len(NA_KEY_START) :]


class QuotaPolicy:
    """The node's defaults and which prefixes quotas govern; ``clock`` says when "today" is."""

    def __init__(self, node_prefix: str, defaults: Limits = UNLIMITED, clock: Callable[[], float] = time.time) -> None:
        self.node_prefix = node_prefix
        self.defaults = defaults
        self.clock = clock

    def governs(self, prefix: str) -> bool:
        """True for a prefix derived from the node's own (whose quotas apply to it)."""
        return prefix != self.node_prefix and is_at_or_under(prefix, self.node_prefix)

    def limits(self, prefix: str, setting: QuotaSetting | None) -> Limits:
        if not self.governs(prefix):
            return UNLIMITED
        if setting is None:
            return self.defaults
        own = {f.name: getattr(setting, f.name) for f in fields(setting)}
        return replace(self.defaults, **{name: value for name, value in own.items() if value is not None})

    def ancestors(self, prefix: str) -> list[str]:
        """The governed prefixes ``prefix`` is derived from, nearest first."""
        segments = prefix.split(".")
        above = (".".join(segments[:n]) for n in range(len(segments) - 1, 0, -1))
        return [a for a in above if self.governs(a)]

    def watch(self, keys: Sequence[str], stored: Mapping[str, HandleRecord]) -> Watch:
        """The prefixes writes to ``keys`` may count against: those of keys that may be created
        (absent now, or written more than once: deleted and created again), and the prefixes
        above any prefix handle among them."""
        watch = Watch()
        seen: set[str] = set()
        for key in keys:
            again = key in seen
            seen.add(key)
            if key in stored and not again:
                continue
            derived = derived_prefix(key)
            if derived is not None:
                watch.ancestors.update(self.ancestors(derived))
            elif self.governs(prefix := key_prefix(key)):
                watch.prefixes.add(prefix)
        return watch


@dataclass(slots=True)
class Watch:
    prefixes: set[str] = field(default_factory=set)  # identifiers may be created under these
    ancestors: set[str] = field(default_factory=set)  # prefixes may be derived from these

    def __bool__(self) -> bool:
        return bool(self.prefixes or self.ancestors)

    @property
    def every(self) -> list[str]:
        return sorted(self.prefixes | self.ancestors)


@dataclass(frozen=True, slots=True)
class Needs:
    """Which counts a transaction must read (after locking these prefixes) to check its writes."""

    held: list[str]  # identifiers per prefix
    today: list[str]  # registrations today per prefix
    derived: list[str]  # prefixes derived per prefix

    @property
    def every(self) -> list[str]:
        return sorted(set(self.held) | set(self.today) | set(self.derived))


def needs(watch: Watch, limits: Mapping[str, Limits]) -> Needs:
    return Needs(
        sorted(p for p in watch.prefixes if limits[p].identifiers),
        sorted(p for p in watch.prefixes if limits[p].registrations_per_day),
        sorted(a for a in watch.ancestors if limits[a].prefixes),
    )


@dataclass(slots=True)
class Ledger:
    """The counts one write transaction checks its creations against, as they move.

    Built by the backend inside the transaction with the counts it read; ``changeset.plan``
    calls ``admit`` for every change that applies, in order.
    """

    day: str
    now: float
    limits: dict[str, Limits] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)
    today: dict[str, int] = field(default_factory=dict)
    derived: dict[str, int] = field(default_factory=dict)
    ancestors: Callable[[str], list[str]] = lambda prefix: []

    @classmethod
    def of(cls, policy: QuotaPolicy, limits: dict[str, Limits] | None = None, **counts: dict[str, int]) -> Ledger:
        now = policy.clock()
        return cls(china_day(now), now, limits or {}, ancestors=policy.ancestors, **counts)

    def admit(self, key: str, old: HandleRecord | None, new: HandleRecord | None) -> None:
        """Account a change of ``key`` from ``old`` to ``new``; QuotaExceeded (nothing accounted) if a
        creation goes past a quota."""
        if (old is None) == (new is None):
            return
        derived = derived_prefix(key)
        if derived is not None:
            watched = [a for a in self.ancestors(derived) if a in self.derived]
            if new is not None:
                for ancestor in watched:
                    self._check_derived(ancestor, derived)
            for ancestor in watched:
                self.derived[ancestor] += 1 if new is not None else -1
            return
        prefix = key_prefix(key)
        if new is None:
            if prefix in self.held:
                self.held[prefix] -= 1
            return
        self._check_identifier(prefix, new.handle)
        if prefix in self.held:
            self.held[prefix] += 1
        if prefix in self.today:
            self.today[prefix] += 1

    def _check_identifier(self, prefix: str, handle: str) -> None:
        limits = self.limits[prefix] if prefix in self.held or prefix in self.today else UNLIMITED
        held = self.held.get(prefix, 0)
        if limits.identifiers and held >= limits.identifiers:
            raise IdentifierQuotaExceeded(
                f"prefix {prefix} holds {held} identifiers, the most its quota allows ({limits.identifiers}); "
                "delete some, or ask the node admin to raise the quota",
                kind=IDENTIFIERS,
                prefix=prefix,
                handle=handle,
            )
        today = self.today.get(prefix, 0)
        if limits.registrations_per_day and today >= limits.registrations_per_day:
            raise DailyQuotaExceeded(
                f"prefix {prefix} registered {today} identifiers on {self.day}, the most its daily quota allows "
                f"({limits.registrations_per_day}); registration opens again at midnight (UTC+8)",
                kind=REGISTRATIONS,
                prefix=prefix,
                handle=handle,
                retry_after=seconds_to_midnight(self.now),
            )

    def _check_derived(self, ancestor: str, derived: str) -> None:
        limit = self.limits[ancestor].prefixes
        count = self.derived[ancestor]
        if count >= limit:
            raise PrefixQuotaExceeded(
                f"{count} prefixes are derived from {ancestor}, the most its quota allows ({limit}); "
                f"{derived} is not created",
                kind=PREFIXES,
                prefix=ancestor,
                handle=f"{NA_PREFIX}/{derived}",
            )


def refusals(outcomes: Iterable[object]) -> dict[tuple[str, str], int]:
    """How many quota refusals among ``outcomes``, by (prefix, kind)."""
    found: dict[tuple[str, str], int] = {}
    for outcome in outcomes:
        if isinstance(outcome, QuotaExceeded):
            key = (outcome.prefix, outcome.kind)
            found[key] = found.get(key, 0) + 1
    return found


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    """How much of its quotas a prefix used, on ``day``."""

    identifiers: int = 0
    registrations: int = 0  # on the day
    prefixes: int = 0  # derived from it, at any depth
    resolutions: dict[str, int] = field(default_factory=dict)  # on the day, by identity of the prefix
    refusals: dict[str, int] = field(default_factory=dict)  # on the day, by kind


def resolution_refused(identity: str, prefix: str, limit: int, day: str, now: float) -> DailyQuotaExceeded:
    return DailyQuotaExceeded(
        f"identity {identity} made {limit} authenticated resolutions on {day}, the most the daily quota of "
        f"prefix {prefix} allows; it may resolve again after midnight (UTC+8), or anonymously",
        kind=RESOLUTIONS,
        prefix=prefix,
        retry_after=seconds_to_midnight(now),
    )


@dataclass(frozen=True, slots=True)
class QuotaReport:
    """A prefix's quotas and their use on ``day``: what the REST API and the admin command show."""

    prefix: str
    day: str
    limits: Limits  # in force: the prefix's own where set, else the node's defaults
    setting: QuotaSetting  # the prefix's own
    usage: QuotaUsage

    def as_json(self) -> dict[str, Any]:
        u = self.usage
        used = {"identifiers": u.identifiers, "registrationsPerDay": u.registrations, "prefixes": u.prefixes}
        return {
            "prefix": self.prefix,
            "day": self.day,
            "limits": self.limits.as_json(),
            "set": self.setting.as_json(),
            "used": used | {"resolutionsPerDay": dict(u.resolutions)},
            "refusals": dict(u.refusals),
        }
