from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.identity import sealing, secrets
from tests.support.nodeproc import Node
from tests.support.pgproc import temp_database

_names = itertools.count()
# Stores opened in the test process seal secrets as a node does (nodes use their data_dir's key).
secrets.use_keyring(sealing.Keyring.generate())
# Many tests send wrong credentials on purpose; the failure limit and the brake have tests of their own.
LIMITS_OFF = {"IDNODE_AUTH_FAILURE_LIMIT": "10000", "IDNODE_AUTH_BRAKE_LIMIT": "10000"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Modules that set STORE_BACKENDS run their node tests once per store backend."""
    backends = getattr(metafunc.module, "STORE_BACKENDS", None)
    if backends and "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", backends, indirect=True, scope="module")


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    """The store the nodes of a module use: "sqlite" (the default) or "postgresql"."""
    return str(getattr(request, "param", "sqlite"))


@contextlib.contextmanager
def store_for(backend: str) -> Iterator[str | None]:
    """A --store URL for ``backend``: None for SQLite (the data directory), else a new database."""
    if backend == "sqlite":
        yield None
    else:
        with temp_database() as url:
            yield url


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[Node]:
    """A node shared by the tests of one module (they use distinct handles)."""
    with store_for(backend) as store:
        proc = Node(tmp_path_factory.mktemp("node") / "data", env=LIMITS_OFF, store=store).start()
        yield proc
        proc.stop()


@pytest.fixture
def fresh_node(tmp_path: Path, backend: str) -> Iterator[Node]:
    """A node of the test's own, for tests that restart or kill it."""
    with store_for(backend) as store:
        proc = Node(tmp_path / "data", store=store)
        yield proc
        if proc.proc is not None and proc.proc.poll() is None:
            proc.stop()


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    """Nodes a test starts itself (appending them), stopped after it if still running."""
    started: list[Node] = []
    yield started
    for node in started:
        if node.proc is not None and node.proc.poll() is None:
            node.stop()


@pytest.fixture
def name() -> str:
    """A suffix no other test uses."""
    return f"T{next(_names):05d}"
