from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nodeproc import Node

_names = itertools.count()
# Many tests send wrong credentials on purpose; the failure limit and the brake have tests of their own.
LIMITS_OFF = {"IDNODE_AUTH_FAILURE_LIMIT": "10000", "IDNODE_AUTH_BRAKE_LIMIT": "10000"}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A node shared by the tests of one module (they use distinct handles)."""
    proc = Node(tmp_path_factory.mktemp("node") / "data", env=LIMITS_OFF).start()
    yield proc
    proc.stop()


@pytest.fixture
def fresh_node(tmp_path: Path) -> Iterator[Node]:
    """A node of the test's own, for tests that restart or kill it."""
    proc = Node(tmp_path / "data")
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.stop()


@pytest.fixture
def name() -> str:
    """A suffix no other test uses."""
    return f"T{next(_names):05d}"
