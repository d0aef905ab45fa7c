"""The permissions a change of a record's values needs (``registry.authority.change_permissions``)."""

from __future__ import annotations

import pytest

from protocol import valuedata as vd
from protocol.records import HandleRecord, HandleValue
from registry.authority import change_permissions

ADMIN = HandleValue(100, "HS_ADMIN", vd.encode_admin(vd.AdminRef("0.NA/88.118.1", 300, 0xFFF)))
URL = HandleValue(1, "URL", b"https://one.example/")
SECKEY = HandleValue(300, "HS_SECKEY", b"sealed-secret")
PUBKEY = HandleValue(301, "HS_PUBKEY", b"key")
OLD = HandleRecord("88.118.1/x", (URL, ADMIN, SECKEY, PUBKEY))


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
        # The credentials an identity logs in with say who may act, as HS_ADMIN does: an editor
        # with value rights on a prefix must not set its admin's secret (issue #21's probe).
        ([SECKEY._replace(data=b"another")], [], {"modify_admin"}),
        ([PUBKEY._replace(data=b"another")], [], {"modify_admin"}),
        ([SECKEY._replace(index=302)], [], {"add_admin"}),
        ([HandleValue(5, "hs_vlist", b"")], [], {"add_admin"}),
        ([], [300], {"remove_admin"}),
        ([URL._replace(index=300)], [], {"modify_admin"}),
    ],
    ids=[
        "modify",
        "add",
        "add admin",
        "modify admin",
        "remove admin",
        "admin to url",
        "url to admin",
        "same",
        "modify secret",
        "modify public key",
        "add secret",
        "add value list",
        "remove secret",
        "secret to url",
    ],
)
def test_change_permissions(new: list[HandleValue], removed: list[int], needed: set[str]) -> None:
    assert change_permissions(OLD, new, removed=removed) == needed
