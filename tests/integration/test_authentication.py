"""Authentication under attack: lock-outs, respelled identities, timing, the brake, client hashes."""

from __future__ import annotations

import base64
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.wire.auth import hashed_secret_key
from tests.conftest import LIMITS_OFF
from tests.support.nodeproc import ADMIN, Auth, Node, record, url_value
from tests.support.poll import wait_until

# Run against both store backends (PostgreSQL: a database of this module's own).
STORE_BACKENDS = ("sqlite", "postgresql")

ENTERPRISE = "88.118.66"
OWNER: tuple[str, str] = (f"300:0.NA/{ENTERPRISE}", "owner-of-66-secret")
OWNER_HANDLE = f"/api/handles/0.NA/{ENTERPRISE}"


def allocate(node: Node) -> None:
    grant = {"handle": f"0.NA/{ENTERPRISE}", "index": 300, "permissions": "111111111111"}
    values = record(
        {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": grant}},
        {"index": 300, "type": "HS_SECKEY", "data": OWNER[1]},
    )
    assert node.put(OWNER_HANDLE, values, auth=ADMIN).status == 201


def raw_basic(user: str, secret: str) -> dict[str, str]:
    """Credentials with the identity exactly as given (the caller does its own percent-encoding)."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def brake_logged(node: Node, words: str) -> bool:
    return any(words in line for line in node.stderr_lines)


@pytest.fixture
def started(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Node]:
    node = Node(tmp_path / "data", env=getattr(request, "param", {})).start()
    allocate(node)
    yield node
    node.stop()


def test_a_third_party_cannot_lock_the_owner_out(started: Node) -> None:
    node = started
    for _ in range(10):
        assert node.get(OWNER_HANDLE, auth=(OWNER[0], "guess"), source="127.0.0.2").status == 403
    # The guesser's address is refused, even with the right secret...
    assert node.get(OWNER_HANDLE, auth=OWNER, source="127.0.0.2").status == 429
    # ...but the owner, coming from elsewhere, is not.
    owner = node.get(OWNER_HANDLE, auth=OWNER, source="127.0.0.1")
    assert owner.status == 200, owner.body
    assert node.put(f"/api/handles/{ENTERPRISE}/x", record(url_value(1, "https://x/")), auth=OWNER).status == 201


@pytest.mark.parametrize("started", [{"IDNODE_AUTH_BRAKE_LIMIT": "5"}], indirect=True)
def test_respelling_an_identity_does_not_escape_its_brake(started: Node) -> None:
    """Failures are counted by the identity as parsed: 0300:, 0.na and %2F name the same one."""
    node = started
    spellings = [
        "300%3A0.NA/88.118.66",
        "0300%3A0.NA/88.118.66",
        "300%3A0.na/88.118.66",
        "300%3A0.NA%2F88.118.66",
        "300%3A0.Na%2f88.118.66",
    ]
    for n, spelling in enumerate(spellings):  # each from an address of its own
        reply = node.get(OWNER_HANDLE, headers=raw_basic(spelling, "guess"), source=f"127.0.2.{n + 1}")
        assert reply.status == 403, reply.body
    began = time.perf_counter()
    reply = node.get(OWNER_HANDLE, headers=raw_basic("00300%3A0.nA%2F88.118.66", "guess"), source="127.0.2.9")
    assert reply.status == 403
    assert time.perf_counter() - began >= 0.9, "the sixth failure on one identity, however spelled, is braked"


def _median_seconds(node: Node, auths: list[Auth], rounds: int) -> list[float]:
    """The median time of a refused request for each of ``auths``, asked in turn round after
    round, so that a load that comes and goes on the machine weighs on each alike."""
    times: list[list[float]] = [[] for _ in auths]
    for _ in range(rounds):
        for taken, auth in zip(times, auths, strict=True):
            started = time.perf_counter()
            assert node.get(OWNER_HANDLE, auth=auth).status == 403
            taken.append(time.perf_counter() - started)
    return [statistics.median(taken) for taken in times]


@pytest.mark.parametrize("started", [LIMITS_OFF], indirect=True)
def test_an_unknown_identity_takes_as_long_as_a_wrong_secret(started: Node) -> None:
    wrong, unknown, no_secret_value = _median_seconds(
        started,
        [
            (OWNER[0], "not-the-secret"),
            (f"300:{ENTERPRISE}/nobody", "whatever"),
            (f"100:0.NA/{ENTERPRISE}", "whatever"),
        ],
        31,
    )  # the last is an HS_ADMIN, not a key
    # Before, an unknown identity answered ~30x faster than a wrong secret (1.5 against 45 ms).
    assert unknown > 0.5 * wrong, (unknown, wrong)
    assert no_secret_value > 0.5 * wrong, (no_secret_value, wrong)


@pytest.mark.parametrize("started", [{"IDNODE_AUTH_BRAKE_LIMIT": "5"}], indirect=True)
def test_guessing_from_many_addresses_is_slowed_not_blocked(started: Node) -> None:
    node = started
    for n in range(5):  # one guess from each address: under every per-address limit
        assert node.get(OWNER_HANDLE, auth=(OWNER[0], "guess"), source=f"127.0.1.{n + 1}").status == 403
    began = time.perf_counter()
    assert node.get(OWNER_HANDLE, auth=(OWNER[0], "guess"), source="127.0.1.9").status == 403
    assert time.perf_counter() - began >= 0.9  # braked: the failure is held back ~1 s
    began = time.perf_counter()
    assert node.get(OWNER_HANDLE, auth=OWNER, source="127.0.1.10").status == 200  # never refused
    assert time.perf_counter() - began < 0.9
    wait_until(lambda: brake_logged(node, "authentication brake on"), what="the brake to be logged")


def _seckey(data: object) -> dict[str, object]:
    return record({"index": 300, "type": "HS_SECKEY", "data": {"format": "hash", "value": data}})


@pytest.mark.parametrize(
    "stored",
    [
        "scrypt$20$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # huge cost
        "scrypt$10$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # cheaper
        "scrypt$14$16$4$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # other r, p
        "scrypt$14$8$1$AAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # a short salt
        "scrypt$14$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA",  # a short hash
        "scrypt$014$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # respelled cost
    ],
)
def test_a_client_hash_must_use_the_node_parameters(started: Node, stored: str) -> None:
    node = started
    handle = f"{ENTERPRISE}/user-{abs(hash(stored)) % 10**6}"
    reply = node.put(f"/api/handles/{handle}", _seckey(stored), auth=OWNER)
    assert (reply.status, reply.code) == (400, 202), reply.body
    assert "as this node makes them" in reply.json["message"]
    assert node.get(f"/api/handles/{handle}", auth=ADMIN).status == 404  # nothing written


def test_a_client_hash_made_as_the_node_makes_them_verifies(started: Node) -> None:
    node = started
    handle = f"{ENTERPRISE}/rotated"
    stored = hashed_secret_key(b"rotated-secret").decode()  # as a CNRI client hashes it
    assert node.put(f"/api/handles/{handle}", _seckey(stored), auth=OWNER).status == 201
    assert node.get(f"/api/handles/{handle}", auth=(f"300:{handle}", "rotated-secret")).status == 200
    assert node.get(f"/api/handles/{handle}", auth=(f"300:{handle}", "other")).status == 403


@pytest.mark.parametrize("started", [{"IDNODE_AUTH_BRAKE_LIMIT": "2"}], indirect=True)
def test_guessing_many_identities_engages_the_node_wide_brake(started: Node) -> None:
    node = started  # per identity: braked after 2 failures; the whole node: after 20
    for n in range(19):  # nineteen identities, once each, each from an address of its own
        reply = node.get(OWNER_HANDLE, auth=(f"300:{ENTERPRISE}/u{n}", "guess"), source=f"127.0.3.{n + 1}")
        assert reply.status == 403
    time.sleep(0.2)  # an absence: the node's stderr reaches the test through a thread, give it time
    assert not brake_logged(node, "authentication brake on"), "no brake yet"
    assert node.get(OWNER_HANDLE, auth=(f"300:{ENTERPRISE}/u19", "guess"), source="127.0.3.20").status == 403
    began = time.perf_counter()
    assert node.get(OWNER_HANDLE, auth=(f"300:{ENTERPRISE}/u99", "guess"), source="127.0.3.99").status == 403
    assert time.perf_counter() - began >= 0.9
    wait_until(lambda: brake_logged(node, "authentication brake on for the whole node"), what="the node-wide brake log")
