"""A plain, non-editable ``pip install .`` carries and serves everything: REST, the Handle
protocol, SNMS and the console, with no file of the checkout on the path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.codes import ResponseCode
from tests.support.handleclient import resolution, udp
from tests.support.nodeproc import ADMIN, ADMIN_SECRET, ADMIN_USER, Node, url_value

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package installed from a copy of the checkout into a folder of its own (no build
    isolation: the dev extra has setuptools, so this needs no network)."""
    source = tmp_path_factory.mktemp("source")  # what the Dockerfile copies, so no build/ is left here
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("protocol", "registry", "resolver"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target)]
    subprocess.run([*pip, "."], cwd=source, check=True, timeout=600, env={**os.environ, "PIP_NO_INPUT": "1"})
    return target


@pytest.fixture(scope="module")
def installed_node(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    elsewhere = tmp_path_factory.mktemp("elsewhere")  # the working directory: not the checkout
    node = Node(elsewhere / "data", env={"PYTHONPATH": str(site)}, cwd=elsewhere).start()
    try:
        yield node
    finally:
        node.stop()


def test_every_package_and_the_console_files_are_installed(site: Path) -> None:
    for package in PYPROJECT["tool"]["setuptools"]["packages"]:
        assert (site / package.replace(".", "/") / "__init__.py").is_file(), package
    shipped = {p.name for p in (site / "resolver" / "http" / "console").iterdir()}
    assert {"index.html", "app.js", "app.css", "favicon.svg"} <= shipped
    in_checkout = {p.name for p in (REPO / "resolver" / "http" / "console").iterdir() if p.is_file()}
    assert in_checkout <= shipped


def test_the_installed_code_is_what_runs(site: Path, tmp_path: Path) -> None:
    shown = subprocess.run(
        [sys.executable, "-c", "import resolver.http.frontend as m, registry, protocol.wire; print(m.__file__)"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(shown.stdout.strip()).is_relative_to(site)


def test_an_installed_node_serves_rest_handle_snms_and_the_console(installed_node: Node) -> None:
    node = installed_node
    put = node.put("/api/handles/88.118/installed", {"values": [url_value(1, "https://example.com/i")]}, auth=ADMIN)
    assert put.status == 201, put.body
    got = node.get("/api/handles/88.118/installed")
    assert got.status == 200 and got.json["values"][0]["data"]["value"] == "https://example.com/i"

    answer = udp(node.handle_port, resolution("88.118/installed"))
    assert answer.response_code == ResponseCode.SUCCESS

    login = node.request("POST", "/identity/token", {"username": ADMIN_USER, "password": ADMIN_SECRET})
    assert login.status == 200 and login.json["status"] == 1 and login.json["data"]["token"]

    page = node.get("/console/")
    assert page.status == 200 and b"<html" in page.body.lower()
    script = node.get("/console/app.js")
    assert script.status == 200 and script.headers["content-type"].startswith(
        ("text/javascript", "application/javascript")
    )
