from __future__ import annotations

import compileall
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT, Issuer, JWKSServer, Key, RunnerProcess


def pytest_configure(config: pytest.Config) -> None:
    """Compile the runner's bytecode once, as installing it would (its editable install does not).

    Each of the suite's ~100 server processes otherwise compiles ~150 modules again when
    PYTHONDONTWRITEBYTECODE is set (CI machines often set it): ~0.2 s of CPU each. Only the
    controlling process does it (xdist workers carry `workerinput`).
    """
    if not hasattr(config, "workerinput"):
        for folder in ("runner", "servers"):
            compileall.compile_dir(ROOT / folder, quiet=2)


WORKERS = 4  # the suite's default parallelism; `-n N` overrides it, `-p no:xdist` runs it in one process


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """`-n 4` unless told otherwise, and only when pytest-xdist is loaded.

    In `addopts` it made `pytest -p no:xdist` (one process, for a debugger or a profile) fail
    with "unrecognized arguments: -n". This runs before xdist's own hook of the same name
    (conftest hooks are registered after plugins, and tryfirst hooks run last-registered first),
    which turns `numprocesses` into workers. Workers (they carry `workerinput`) start no workers.
    """
    if not config.pluginmanager.hasplugin("xdist") or hasattr(config, "workerinput"):
        return
    if config.getoption("numprocesses", None) is None and not config.getoption("usepdb", False):
        config.option.numprocesses = WORKERS


# Modules whose tests wait long (restarts, timeouts of a hanging issuer, the conformance suite): started first,
# so that no worker begins one of them while the others have run out of work (the suite's tail).
LONG_FIRST = ("test_request_state.py", "test_hardening_auth.py", "test_conformance.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in LONG_FIRST)  # stable: the order within each group is kept


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def signing_key() -> Key:
    return Key.new("key-1")


@pytest.fixture(scope="module")
def jwks(signing_key: Key) -> Iterator[JWKSServer]:
    server = JWKSServer(keys=[signing_key]).start()
    yield server
    server.stop()


def copy_example(dest: Path) -> Path:
    """The example manifest and its callables in a folder of the test's own."""
    shutil.copytree(ROOT / "servers", dest / "servers", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "example.yaml", dest / "example.yaml")
    return dest / "example.yaml"


@pytest.fixture(scope="module")
def signin_runner(tmp_path_factory: pytest.TempPathFactory, jwks: JWKSServer) -> Iterator[tuple[RunnerProcess, Issuer]]:
    """example.yaml served with MCP SignIn settings pointing at the loopback JWKS server."""
    folder = tmp_path_factory.mktemp("signin")
    manifest = copy_example(folder)
    runner = RunnerProcess(manifest)
    resource = runner.url
    text = manifest.read_text().replace("  resource:", f"  base_url: {jwks.base_url}\n  resource:")
    manifest.write_text(text)
    runner.env = {"MCP_APP_ID": jwks.app_id, "MCP_APP_RESOURCE": resource}
    runner.start()
    yield runner, Issuer(base_url=jwks.base_url, resource=resource, key=jwks.keys[0])
    runner.stop()
