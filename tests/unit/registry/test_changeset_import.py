"""changeset.imported: the side-table changes of a bulk import chunk, as the general rules give them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from registry import changeset
from registry.store import AuditEntry

ENTRY = AuditEntry(1_800_000_000.5, "import", "cli", "import", "")

handles = st.builds(
    "{}/{}".format,
    st.sampled_from(["88.118", "88.118.1", "88.118.2", "0.NA", "0.na"]),
    st.text(alphabet="aAbB.9", min_size=1, max_size=4),
)


def general(rows: list[tuple[str, str, bytes]], created: set[str]) -> changeset.ChangeSet:
    """What the per-row rules give: one audit entry per row grouped by ``audit_rows``."""
    changes = changeset.ChangeSet([None] * len(rows), day=changeset.day_of(ENTRY.time))
    for key, handle, blob in rows:
        if key.startswith(changeset.OUTBOX_KEY_START):
            changes.outbox.append(key[len(changeset.OUTBOX_KEY_START) :])
        if key in created:
            prefix = changeset.key_prefix(key)
            changes.inserts.append((key, handle, blob))
            changes.counts[prefix] = changes.counts.get(prefix, 0) + 1
            changes.created[prefix] = changes.created.get(prefix, 0) + 1
        else:
            changes.updates.append((key, handle, blob))
    changes.audit = changeset.audit_rows([(ENTRY._replace(handle=h), None) for _, h, _ in rows])
    return changes


@given(st.lists(handles, unique_by=str.upper, max_size=30), st.data())
def test_a_chunk_changes_what_the_per_row_rules_change(texts: list[str], data: st.DataObject) -> None:
    rows = [(t.upper(), t, t.encode()) for t in texts]
    created = {k for k, _, _ in rows if data.draw(st.booleans())}
    fast, slow = changeset.imported(rows, created, ENTRY), general(rows, created)
    assert (fast.inserts, fast.updates, fast.outbox, fast.audit, fast.day) == (
        slow.inserts,
        slow.updates,
        slow.outbox,
        slow.audit,
        slow.day,
    )
    assert (fast.counts, fast.created) == (slow.counts, slow.created)


@given(st.lists(handles, unique_by=str.upper, max_size=30))
def test_none_created_stands_for_all_rows_created(texts: list[str]) -> None:
    rows = [(t.upper(), t, t.encode()) for t in texts]
    fast, slow = changeset.imported(rows, None, ENTRY), general(rows, {k for k, _, _ in rows})
    assert (fast.inserts, fast.updates, fast.counts, fast.created, fast.outbox, fast.audit) == (
        slow.inserts,
        slow.updates,
        slow.counts,
        slow.created,
        slow.outbox,
        slow.audit,
    )
