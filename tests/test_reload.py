"""Hot reload with the real server and the SDK's real client: edits show up in open sessions, breakage never does."""

from __future__ import annotations

import hashlib
import os
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.shared.subscriptions import ToolsListChanged

from tests.helpers import RunnerProcess, edit_and_wait, loopback_get, mcp_client, reloaded, settled_reloads

pytestmark = pytest.mark.anyio

TOOLS_V1 = """
import anyio
from mcp.server.mcpserver import Context

from helper import suffix

VERSION = "v1"


def add(a: int, b: int) -> int:
    return a + b


def version() -> str:
    return VERSION + suffix()


async def slow(seconds: float) -> str:
    await anyio.sleep(seconds)
    return VERSION


def session(ctx: Context) -> str:
    return str(ctx.request_context.request.headers.get("mcp-session-id"))  # None on 2026-07-28: no sessions
"""

HELPER = 'def suffix() -> str:\n    return "-h1"\n'

MANIFEST = """
name: live
tools:
  - function: live_tools:add
  - function: live_tools:version
  - function: live_tools:slow
  - function: live_tools:session
"""

EXTRA_TOOL = "  - function: live_tools:add\n    name: plus\n"


@dataclass
class Live:
    folder: Path
    runner: RunnerProcess

    @property
    def url(self) -> str:
        return self.runner.url

    def health(self) -> dict[str, Any]:
        return loopback_get(f"http://127.0.0.1:{self.runner.port}/healthz").json()  # type: ignore[no-any-return]

    def write(self, name: str, text: str) -> None:
        (self.folder / name).write_text(textwrap.dedent(text))

    async def edit(self, name: str, text: str) -> dict[str, Any]:
        return await edit_and_wait(self.folder, self.runner.health_url, name, textwrap.dedent(text))


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    project = Live(tmp_path, RunnerProcess(tmp_path / "live.yaml"))
    project.write("live_tools.py", TOOLS_V1)
    project.write("helper.py", HELPER)
    project.write("live.yaml", MANIFEST)
    project.runner.start()
    yield project
    project.runner.stop()


def names(result: Any) -> list[str]:
    return sorted(t.name for t in result.tools)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_add_and_remove_tool_in_the_same_session(live: Live, mode: str) -> None:
    async with mcp_client(live.url, mode=mode) as client:
        session = (await client.call_tool("session", {})).content[0].text  # type: ignore[union-attr]
        assert names(await client.list_tools()) == ["add", "session", "slow", "version"]
        health = await live.edit("live.yaml", MANIFEST + EXTRA_TOOL)
        assert health["last_reload"]["result"] == "ok"
        assert health["last_reload"]["changes"] == "tools +plus"
        assert names(await client.list_tools()) == ["add", "plus", "session", "slow", "version"]
        assert (await client.call_tool("plus", {"a": 2, "b": 3})).structured_content == {"result": 5}
        await live.edit("live.yaml", MANIFEST.replace("  - function: live_tools:add\n", ""))
        assert names(await client.list_tools()) == ["session", "slow", "version"]
        # The same session throughout: no re-initialize, same id.
        assert (await client.call_tool("session", {})).content[0].text == session  # type: ignore[union-attr]
    if mode == "legacy":
        assert session != "None"


async def test_module_body_and_signature_changes(live: Live) -> None:
    async with mcp_client(live.url, mode="legacy") as client:
        assert (await client.call_tool("add", {"a": 2, "b": 3})).structured_content == {"result": 5}
        await live.edit("live_tools.py", TOOLS_V1.replace("return a + b", "return a * b"))
        assert (await client.call_tool("add", {"a": 2, "b": 3})).structured_content == {"result": 6}
        changed = TOOLS_V1.replace(
            "def add(a: int, b: int) -> int:\n    return a + b",
            "def add(a: int, b: int, c: int = 0) -> int:\n    return a + b + c",
        )
        health = await live.edit("live_tools.py", changed)
        assert health["last_reload"]["changes"] == "tools ~add"
        tool = next(t for t in (await client.list_tools()).tools if t.name == "add")
        assert set(tool.input_schema["properties"]) == {"a", "b", "c"}
        assert (await client.call_tool("add", {"a": 1, "b": 2, "c": 3})).structured_content == {"result": 6}


async def test_changing_an_imported_helper_reimports_its_importers(live: Live) -> None:
    async with mcp_client(live.url, mode="legacy") as client:
        assert (await client.call_tool("version", {})).content[0].text == "v1-h1"  # type: ignore[union-attr]
        await live.edit("helper.py", HELPER.replace("-h1", "-h2"))
        assert (await client.call_tool("version", {})).content[0].text == "v1-h2"  # type: ignore[union-attr]


async def test_legacy_session_gets_list_changed_only_for_visible_changes(live: Live) -> None:
    received: list[str] = []
    arrived = anyio.Event()

    async def on_message(message: Any) -> None:
        method = getattr(message, "method", None)
        if method:
            received.append(method)
            arrived.set()

    async with mcp_client(live.url, mode="legacy", message_handler=on_message) as client:
        assert client.server_capabilities.tools is not None and client.server_capabilities.tools.list_changed
        await client.list_tools()
        # A save that changes nothing a client can see: a reload, but no notification.
        health = await live.edit("live_tools.py", TOOLS_V1 + "\n# a comment\n")
        assert health["last_reload"]["changes"] == "no visible change"
        await live.edit("live.yaml", MANIFEST + EXTRA_TOOL)
        with anyio.fail_after(30):
            await arrived.wait()
        assert received == ["notifications/tools/list_changed"]


async def test_modern_client_hears_through_subscriptions_listen(live: Live) -> None:
    async with mcp_client(live.url) as client:
        assert client.protocol_version == "2026-07-28"
        listed = await client.list_tools()
        # SEP-2549 cache hints: the server never lets a client cache a list that a reload may change.
        assert listed.ttl_ms == 0
        before = names(listed)
        async with client.listen(tools_list_changed=True) as subscription:
            await live.edit("live.yaml", MANIFEST + EXTRA_TOOL)
            with anyio.fail_after(30):
                event = await subscription.__anext__()
            assert isinstance(event, ToolsListChanged)
        after = names(await client.list_tools())
        assert "plus" not in before and "plus" in after


BROKEN = {
    "yaml syntax": ("live.yaml", "name: live\ntools: [\n", "live.yaml:3:1: YAML syntax error"),
    "module syntax error": (
        "live_tools.py",
        TOOLS_V1 + "\ndef broken(:\n",
        f"live_tools.py:{TOOLS_V1.count(chr(10)) + 2}:12: syntax error: invalid syntax (needed by ",
    ),
    "module raising at import": (
        "live_tools.py",
        TOOLS_V1 + "\nraise RuntimeError('no db')\n",
        "live.yaml:4:15: importing 'live_tools' raised RuntimeError: no db",
    ),
    "dangling attribute": (
        "live.yaml",
        MANIFEST + "  - function: live_tools:nope\n",
        "live.yaml:8:15: 'live_tools' has no attribute 'nope'",
    ),
    "unknown key": (
        "live.yaml",
        MANIFEST + "  - function: live_tools:add\n    nmae: x\n",
        "live.yaml:9:5: unknown key 'nmae' (did you mean 'name'?)",
    ),
}

# What the unauthenticated /healthz says instead: where, and what kind of problem, never the message.
PUBLIC = {
    "yaml syntax": "live.yaml:3:1: YAML syntax error",
    "module syntax error": "live_tools.py:26:12: Python syntax error",
    "module raising at import": "live.yaml:4:15: exception at import (RuntimeError), raised at live_tools.py:26",
    "dangling attribute": "live.yaml:8:15: missing attribute",
    "unknown key": "live.yaml:9:5: unknown key",
}


@pytest.mark.parametrize("case", list(BROKEN))
async def test_broken_edit_keeps_serving_the_last_good_definition(live: Live, case: str) -> None:
    name, text, expected = BROKEN[case]
    good = (live.folder / name).read_text()
    async with mcp_client(live.url, mode="legacy") as client:
        health = await live.edit(name, text)
        assert health["status"] == "degraded"
        assert health["last_reload"]["result"] == "failed"
        assert PUBLIC[case] in health["last_reload"]["error"]
        # One problem, one line, even when (as here) every tool comes from the broken module.
        assert len(health["last_reload"]["error"].splitlines()) == 1, health["last_reload"]["error"]
        assert "Traceback" not in health["last_reload"]["error"]  # no source lines on the unauthenticated probe
        assert health["tools"] == 4
        assert names(await client.list_tools()) == ["add", "session", "slow", "version"]
        assert (await client.call_tool("add", {"a": 1, "b": 1})).structured_content == {"result": 2}
        assert (await client.call_tool("version", {})).content[0].text == "v1-h1"  # type: ignore[union-attr]
        # The next good edit applies normally, and health recovers.
        health = await live.edit(name, good.replace("return a + b", "return a - b"))
        assert health["status"] == "ok" and health["last_reload"]["error"] is None
        expected_sum = -0 if name == "live_tools.py" else 2
        assert (await client.call_tool("add", {"a": 1, "b": 1})).structured_content == {"result": expected_sum}
    err = live.runner.stop()
    assert "reload failed, still serving the last good definition" in err
    assert expected in err


async def test_running_call_finishes_on_the_code_it_started_with(live: Live) -> None:
    async with mcp_client(live.url, mode="legacy") as client:
        results: list[str] = []

        async def slow_call() -> None:
            result = await client.call_tool("slow", {"seconds": 1.5})
            results.append(result.content[0].text)  # type: ignore[union-attr]

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(slow_call)
            await anyio.sleep(0.3)  # let the call reach the server
            await live.edit("live_tools.py", TOOLS_V1.replace('VERSION = "v1"', 'VERSION = "v2"'))
            fresh = await client.call_tool("slow", {"seconds": 0})
            assert fresh.content[0].text == "v2"  # type: ignore[union-attr]
        assert results == ["v1"]


async def test_editor_save_styles(live: Live) -> None:
    """Temp file + rename, and truncate-then-write: each ends in the new definition."""
    async with mcp_client(live.url, mode="legacy") as client:
        temp = live.folder / ".live.yaml.swp"
        temp.write_text(MANIFEST + EXTRA_TOOL)
        before = await settled_reloads(live.runner.health_url)
        os.replace(temp, live.folder / "live.yaml")
        assert (await reloaded(live.runner.health_url, before))["last_reload"]["result"] == "ok"
        assert "plus" in names(await client.list_tools())

        with open(live.folder / "live.yaml", "w") as handle:  # truncate ...
            handle.flush()
            os.fsync(handle.fileno())
            time.sleep(0.2)  # ... long enough for the watcher to see the empty file
            handle.write(MANIFEST)  # ... then write
        with anyio.fail_after(30):
            while "plus" in names(await client.list_tools()) or live.health()["status"] != "ok":
                await anyio.sleep(0.05)
        assert names(await client.list_tools()) == ["add", "session", "slow", "version"]


async def test_restart_only_settings_are_logged_and_the_rest_applies(live: Live) -> None:
    async with mcp_client(live.url, mode="legacy") as client:
        await live.edit("live.yaml", MANIFEST + EXTRA_TOOL + "server:\n  path: /other\n")
        assert "plus" in names(await client.list_tools())
    err = live.runner.stop()
    assert "server.path changed from '/mcp' to '/other': needs a restart" in err


def test_healthz_and_readyz(live: Live) -> None:
    health = live.health()
    assert health["status"] == "ok" and health["last_reload"] is None and health["reload_pending"] is False
    assert health["tools"] == 4 and health["resources"] == 0 and health["prompts"] == 0

    assert health["manifest_sha256"] == hashlib.sha256((live.folder / "live.yaml").read_bytes()).hexdigest()
    ready = loopback_get(f"http://127.0.0.1:{live.runner.port}/readyz")
    assert ready.status_code == 200 and ready.json() == {"ready": True}


def test_no_reload_flag(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("name: fixed\n")
    runner = RunnerProcess(tmp_path / "m.yaml", extra=("--no-reload",)).start()
    try:
        (tmp_path / "m.yaml").write_text("name: fixed\ntools: [\n")
        time.sleep(1.0)  # give a watcher, if one were running, ample time to act
        health = loopback_get(runner.health_url).json()
        assert health["reloads"] == 0
        assert health["reload_pending"] is True  # what is served is older than the disk
    finally:
        err = runner.stop()
    assert "reload:    off" in err


def test_signin_changes_apply_on_reload(tmp_path: Path, jwks: Any) -> None:
    from tests.helpers import Issuer, post_initialize

    runner = RunnerProcess(tmp_path / "auth.yaml")
    first, second = runner.url, runner.url.replace("/mcp", "/mcp-v2")

    def manifest(resource: str) -> str:
        return (
            f"name: authed\nsignin:\n  app_id: {jwks.app_id}\n  base_url: {jwks.base_url}\n"
            f"  resource: {resource}\ntools:\n  - function: live_tools:add\n"
        )

    (tmp_path / "live_tools.py").write_text(textwrap.dedent(TOOLS_V1))
    (tmp_path / "helper.py").write_text(HELPER)
    (tmp_path / "auth.yaml").write_text(manifest(first))
    runner.start()
    try:
        old_audience = Issuer(jwks.base_url, first, jwks.keys[0]).token()
        new_audience = Issuer(jwks.base_url, second, jwks.keys[0]).token()
        assert post_initialize(runner.url, old_audience).status_code == 200
        assert post_initialize(runner.url, new_audience).status_code == 401
        (tmp_path / "auth.yaml").write_text(manifest(second))
        deadline = time.monotonic() + 30
        while post_initialize(runner.url, new_audience).status_code != 200:
            assert time.monotonic() < deadline, "the new signin.resource never took effect"
            time.sleep(0.05)
        assert post_initialize(runner.url, old_audience).status_code == 401
        metadata = loopback_get(f"http://127.0.0.1:{runner.port}/.well-known/oauth-protected-resource/mcp-v2")
        assert metadata.json()["resource"] == second
    finally:
        runner.stop()


async def test_deleting_a_watched_folder_does_not_take_the_server_down(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tools.py").write_text("def add(a: int, b: int) -> int:\n    return a + b\n")
    (tmp_path / "m.yaml").write_text("name: p\ntools:\n  - function: pkg.tools:add\n")
    runner = RunnerProcess(tmp_path / "m.yaml").start()
    try:
        import shutil

        shutil.rmtree(package)  # the module's folder disappears under the watcher
        health = await reloaded(runner.health_url, 0, "the deletion noticed")
        assert health["status"] == "degraded"
        async with mcp_client(runner.url, mode="legacy") as client:
            assert (await client.call_tool("add", {"a": 1, "b": 2})).structured_content == {"result": 3}
        # And the watcher still works.
        health = await edit_and_wait(tmp_path, runner.health_url, "m.yaml", "name: p\ntools: []\n")
        assert health["status"] == "ok" and health["tools"] == 0, health
    finally:
        runner.stop()
