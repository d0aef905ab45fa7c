"""The replica routing of the PostgreSQL store, without servers."""

from __future__ import annotations

from registry.postgres.replicas import ReadRouting


def test_reads_take_the_replicas_in_turn() -> None:
    routing = ReadRouting(3)
    assert [routing.pick() for _ in range(6)] == [0, 1, 2, 0, 1, 2]


def test_no_replicas_means_the_primary() -> None:
    routing = ReadRouting(0)
    routing.wrote(["K"])
    assert routing.pick() is None and routing.pick(["K"]) is None


def test_a_failed_replica_is_skipped_and_all_failed_means_the_primary() -> None:
    routing = ReadRouting(2)
    routing.failed(0)
    assert {routing.pick() for _ in range(4)} == {1}
    routing.failed(1)
    assert routing.pick() is None


def test_keys_written_here_are_read_from_the_primary() -> None:
    routing = ReadRouting(1)
    routing.wrote(["A", "B"])
    assert routing.pick(["B"]) is None
    assert routing.pick(["C", "A"]) is None
    assert routing.pick(["C"]) == 0
