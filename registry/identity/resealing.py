"""Sealing every stored secret under the node's current key: at start, and when the key is rotated.

At each start (before the workers fork) the node reseals what is not yet sealed under its current
key: hashed HS_SECKEY values and login digests kept in clear by nodes before sealing, and any
sealed under an older key still listed in ``secret_key_file`` (a rotation cut short). A value
sealed under a key the file does not hold is left as it is and counted: the node says it cannot
verify those secrets until it is given that key. Each record is rewritten on its own (audited
as ``reseal_secret``) only if it is still the one read; login digests are replaced in one
transaction.

Finding those values means reading every record: 35 s at 1M identifiers, hours at the
hundreds of millions a node may hold. Every write seals what it stores, so once a pass has
left every record under the current key (nothing it could not rewrite) the store keeps a note
of the key that pass sealed under (``SEALED_UNDER``), and a start under the same current key
skips the records; a start under another (rotated, or a different key file) reads them all
again. The note holds the counts of values sealed under keys not held, so the warning about
them is given at every start without a pass, and the records are read again once the file
holds one of those keys. Login digests (a small table) are checked at every start.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from protocol.errors import HandleError, InvalidValue
from protocol.records import HS_SECKEY, HandleRecord, HandleValue
from registry.identity import secrets
from registry.identity.sealing import KeyMissing, key_of
from registry.store import AuditEntry, Store

log = logging.getLogger("registry.secrets")

PAGE = 500


SEALED_UNDER = "secrets_sealed_under"  # the store's note: "<current key id>;<key id not held>=<count>,..."


@dataclass
class Resealed:
    values: int = 0  # HS_SECKEY values rewritten
    digests: int = 0  # login digests rewritten
    missing: dict[str, int] = field(default_factory=dict)  # key id -> values sealed under it, not held
    failed: int = 0  # records that changed while being resealed, left as they were
    records_read: bool = True  # False: the store's note said every record was sealed under this key

    def report(self) -> None:
        if self.values or self.digests:
            log.info(
                "sealed %d secret(s) and %d login digest(s) under the current secret key", self.values, self.digests
            )
        for key_id, count in sorted(self.missing.items()):
            log.warning(
                "%d stored secret(s) are sealed under secret key %s, which secret_key_file does not hold: "
                "they cannot verify a login or a challenge answer until that key is given to the node "
                "(a store copied or restored without its key file?). Records are served as usual.",
                count, key_id,
            )  # fmt: skip


def _note(current: str, missing: dict[str, int]) -> str:
    return f"{current};" + ",".join(f"{key_id}={count}" for key_id, count in sorted(missing.items()))


def _noted_missing(note: str | None, current: str) -> dict[str, int] | None:
    """The missing counts the note kept, when a pass under the ``current`` key made it and
    none of the keys it missed has been given since; else None (read the records)."""
    if note is None or not note.startswith(f"{current};"):
        return None
    counts = note[len(current) + 1 :]
    try:
        missing = {key_id: int(n) for key_id, _, n in (item.partition("=") for item in counts.split(",") if item)}
    except ValueError:
        return None  # not a note this code wrote
    return None if any(secrets.keyring().holds(key_id) for key_id in missing) else missing


async def reseal_store(store: Store, *, every_record: bool = False) -> Resealed:
    """Reseal what is not under the current key; the records only when the store's note does
    not say a pass under this keyring found them all sealed (``every_record``: read them anyway)."""
    current = secrets.keyring().current
    noted = None if every_record else _noted_missing(await store.note(SEALED_UNDER), current)
    if noted is not None:
        done = Resealed(missing=noted, records_read=False)
    else:
        done = Resealed()
        after: str | None = None
        while rows := await store.export_after(None, after, PAGE):
            for key, record in rows:
                await _reseal_record(store, key, record, done)
            after = rows[-1][0]
        if not done.failed:
            await store.set_note(SEALED_UNDER, _note(current, done.missing))
    await _reseal_digests(store, done)
    return done


def _key_missing(value: HandleValue) -> str | None:
    key_id = key_of(value.data[:13].decode("ascii", "replace")) if secrets.is_sealed(value.data) else None
    return key_id if key_id is not None and not secrets.keyring().holds(key_id) else None


async def _reseal_record(store: Store, key: str, record: HandleRecord, done: Resealed) -> None:
    seckeys = [v for v in record.values if v.type.upper() == HS_SECKEY]
    for value in seckeys:
        if (missing := _key_missing(value)) is not None:
            done.missing[missing] = done.missing.get(missing, 0) + 1
    stale = {v.index: v.data for v in seckeys if secrets.needs_reseal(v.data)}
    if not stale:
        return

    def change(old: HandleRecord | None) -> HandleRecord | None:
        if old is None or any((v := old.value_at(i)) is None or v.data != data for i, data in stale.items()):
            raise InvalidValue("the record changed since it was read; left as it is")
        return old.with_values([v._replace(data=secrets.reseal(v.data)) if v.index in stale else v for v in old.values])

    try:
        await store.apply(key, change, AuditEntry(time.time(), "node", "", "reseal_secret", record.handle))
    except HandleError as exc:
        log.warning("could not reseal the secrets of %s: %s", record.handle, exc.message)
        done.failed += 1
        return
    done.values += len(stale)


async def _reseal_digests(store: Store, done: Resealed) -> None:
    rows, drop = [], []
    for name, digest in await store.login_digests():
        if not secrets.digest_needs_reseal(name):
            continue
        try:
            rows.append(secrets.reseal_digest(name, digest))
        except (KeyMissing, ValueError):
            continue  # under a key not held, or damaged: kept, it may open once the key is given
        drop.append(name)
    if drop:
        await store.replace_login_digests(rows, drop)
        done.digests += len(rows)
