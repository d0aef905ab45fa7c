"""The permissions a change of a record's values needs (``registry.authority.change_permissions``)."""

from __future__ import annotations

import pytest

from protocol import valuedata as vd
from protocol.records import HandleRecord, HandleValue
from registry.authority import change_permissions

ADMIN = HandleValue(100, "HS_ADMIN", vd.encode_admin(vd.AdminRef("0.NA/88.118.1", 300, 0xFFF)))
URL = HandleValue(1, "URL", b"https://one.example/")
OLD = HandleRecord("88.118.1/x", (URL, ADMIN))


@pytest.mark.parametrize(
    ("new", "removed", "needed"),
    [
        ([URL._replace(data=b"https://two.example/")], [], {"modify_value"}),
        ([URL._replace(index=2)], [], {"add_value"}),
        ([ADMIN._replace(index=101)], [], {"add_admin"}),
        ([ADMIN._replace(data=vd.encode_admin(vd.AdminRef("88.118.1/x", 300, 0xFFF)))], [], {"modify_admin"}),
        ([], [100], {"remove_admin"}),
        # Overwriting an admin with another type removes the admin; the reverse makes one.
        ([URL._replace(index=100)], [], {"modify_admin"}),
        ([ADMIN._replace(index=1)], [], {"modify_admin"}),
        ([URL, ADMIN], [], set()),
    ],
    ids=["modify", "add", "add admin", "modify admin", "remove admin", "admin to url", "url to admin", "same"],
)
def test_change_permissions(new: list[HandleValue], removed: list[int], needed: set[str]) -> None:
    assert change_permissions(OLD, new, removed=removed) == needed
