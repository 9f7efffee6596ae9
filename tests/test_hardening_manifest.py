"""Issue 22, items 11, 13 and 14: what a manifest and its folder can do to the runner, against the real server.

- 11: a YAML alias bomb is refused with a located error, at `check`, at start-up and at a reload
  (which leaves the last good definition served), before its values are built;
- 13: a module beside the manifest named like one of the runner's dependencies (`jwt.py`) no longer
  takes its place: the server starts, verifies real tokens with PyJWT, and says so in one line;
- 14 (documented, not changed): a reload during a call leaves the names the tool's module bound
  at import on the old code, while an import the tool runs at call time gets the new module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tests.helpers import Issuer, JWKSServer, RunnerProcess, edit_and_wait, healthz, mcp_client, run_main

pytestmark = pytest.mark.anyio

TOOL = "def add(a: int, b: int) -> int:\n    return a + b\n"


def alias_bomb(levels: int) -> str:
    """`levels` lists, each holding ten aliases of the one before: 10**levels values from a few hundred bytes.

    In a tool's output schema, where any JSON goes (an `x-` keyword), so that a small one is a valid manifest.
    """
    lines = ["    output_schema:", "      type: object", "      x-bomb:"]
    lines.append('        l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]')
    for level in range(1, levels):
        lines.append(f"        l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def manifest(bomb: str = "", signin: str = "") -> str:
    return f"name: bombed\n{signin}tools:\n  - function: bomb_tools:add\n{bomb}"


LOCATED = re.compile(r"m\.yaml:\d+:\d+: the manifest expands to more than 100,000 values")


def test_an_alias_bomb_is_refused_by_check_with_its_location(tmp_path: Path) -> None:
    (tmp_path / "bomb_tools.py").write_text(TOOL)
    for levels in (5, 9):  # 111,110 values once expanded (accepted before), then a billion
        (tmp_path / "m.yaml").write_text(manifest(alias_bomb(levels)))
        result = run_main("check", str(tmp_path / "m.yaml"), cwd=tmp_path)
        assert result.returncode != 0
        assert LOCATED.search(result.stdout + result.stderr), result.stdout + result.stderr
    # Aliases that stay within the bound are as welcome as ever.
    (tmp_path / "m.yaml").write_text(manifest(alias_bomb(3)))
    assert run_main("check", str(tmp_path / "m.yaml"), cwd=tmp_path).returncode == 0


async def test_an_alias_bomb_in_a_reload_leaves_the_last_good_manifest_served(tmp_path: Path) -> None:
    (tmp_path / "bomb_tools.py").write_text(TOOL)
    (tmp_path / "m.yaml").write_text(manifest())
    runner = RunnerProcess(tmp_path / "m.yaml").start()
    try:
        health = await edit_and_wait(tmp_path, runner.health_url, "m.yaml", manifest(alias_bomb(5)))
        assert health["last_reload"]["result"] == "failed", health
        async with mcp_client(runner.url) as client:
            assert (await client.call_tool("add", {"a": 2, "b": 3})).structured_content == {"result": 5}
        assert LOCATED.search(runner.logged()), runner.logged()
    finally:
        runner.stop()


# -- item 13 ---------------------------------------------------------------------------------------------------

SHADOW = 'raise RuntimeError("a module beside the manifest was imported in place of PyJWT")\n'


async def test_a_jwt_py_beside_the_manifest_does_not_shadow_pyjwt(tmp_path: Path, jwks: JWKSServer) -> None:
    (tmp_path / "bomb_tools.py").write_text(TOOL)
    (tmp_path / "jwt.py").write_text(SHADOW)  # never named by the manifest
    (tmp_path / "yaml.py").write_text(SHADOW.replace("PyJWT", "PyYAML"))  # the runner imports PyYAML first thing
    runner = RunnerProcess(tmp_path / "m.yaml")
    signin = f"signin:\n  app_id: {jwks.app_id}\n  base_url: {jwks.base_url}\n  resource: {runner.url}\n"
    (tmp_path / "m.yaml").write_text(manifest(signin=signin))
    runner.start()
    try:
        issuer = Issuer(jwks.base_url, runner.url, jwks.keys[0])
        async with mcp_client(runner.url, issuer.token()) as client:  # verified by the real PyJWT
            assert (await client.call_tool("add", {"a": 2, "b": 3})).structured_content == {"result": 5}
        assert healthz(runner.health_url)["status"] == "ok"
    finally:
        log = runner.stop()
    assert "Traceback" not in log and "in place of Py" not in log
    assert [line for line in log.splitlines() if "jwt beside the manifest" in line], log


# -- item 14 ---------------------------------------------------------------------------------------------------

TOOLS_14 = """
import time
from pathlib import Path

import early_helper  # bound when this module is imported

HERE = Path(__file__).parent


def versions(name: str) -> str:
    (HERE / f"{name}.started").touch()
    deadline = time.monotonic() + 60
    while not (HERE / f"{name}.release").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    import late_helper  # at call time: whatever module `sys.modules` holds now

    return f"{early_helper.VERSION}/{late_helper.VERSION}"
"""


@pytest.fixture
def reloading(tmp_path: Path) -> Iterator[RunnerProcess]:
    (tmp_path / "call_tools.py").write_text(TOOLS_14)
    for helper in ("early_helper", "late_helper"):
        (tmp_path / f"{helper}.py").write_text('VERSION = "v1"\n')
    (tmp_path / "m.yaml").write_text("name: late\ntools:\n  - function: call_tools:versions\n")
    runner = RunnerProcess(tmp_path / "m.yaml").start()
    yield runner
    runner.stop()


async def test_a_call_time_import_sees_a_reload_that_lands_mid_call(tmp_path: Path, reloading: RunnerProcess) -> None:
    async with mcp_client(reloading.url) as client:
        (tmp_path / "first.release").touch()
        first = await client.call_tool("versions", {"name": "first"})
        assert first.structured_content == {"result": "v1/v1"}  # late_helper is loaded from now on
        answer: list[object] = []

        async def held() -> None:
            answer.append((await client.call_tool("versions", {"name": "held"})).structured_content)

        with anyio.fail_after(90):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(held)
                while not (tmp_path / "held.started").exists():
                    await anyio.sleep(0.02)
                (tmp_path / "early_helper.py").write_text('VERSION = "v2"\n')
                health = await edit_and_wait(tmp_path, reloading.health_url, "late_helper.py", 'VERSION = "v2"\n')
                assert health["last_reload"]["result"] == "ok", health
                (tmp_path / "held.release").touch()
        # The documented limit: the module-level import finished on the old code, the call-time one did not.
        assert answer == [{"result": "v1/v2"}]
        (tmp_path / "after.release").touch()
        after = await client.call_tool("versions", {"name": "after"})
        assert after.structured_content == {"result": "v2/v2"}


def flat(text: str) -> str:
    return " ".join(text.split())


def test_the_docs_say_a_manifest_is_code_and_a_call_time_import_sees_a_reload() -> None:
    """Items 13 and 14 are changed in the docs, not the code: nothing said a manifest could serve `os:system`
    (it matters when the people who edit a ConfigMap are not meant to run code), and the docs promised that a
    running call finishes on the code it started with, which an import at call time breaks (the test above)."""
    docs = Path(__file__).resolve().parent.parent / "docs"
    security, reload, manifest_page = (
        flat((docs / page).read_text()) for page in ("security.md", "reload.md", "manifest.md")
    )
    assert "Trusted: whoever edits the manifest and the files in its folder.** A manifest is code." in security
    assert "- function: os:system" in security and "A manifest is code." in manifest_page
    assert "## A running call and imports at call time" in reload
    promise = "finish on the code they started with"
    for page in (*docs.glob("*.md"), docs.parent / "README.md"):
        text = flat(page.read_text())
        assert f"{promise}." not in text, page  # the unqualified promise is gone everywhere
    assert f"{promise}, except for modules they import at call time" in reload
