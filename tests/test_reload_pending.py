"""`reload_pending` on /healthz, and the tests' `edit_and_wait` built on it, against a reload already running.

A reload set off by an earlier write can still be running when the next file is written. Waiting
for "the reload count changed" then takes that reload, which never read the new text, for the one
that did (seen in CI: "no visible change"). Here an import that takes a while makes that window
wide on purpose, for a manifest edit and for a module edit.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import RunnerProcess, edit_and_wait, healthz, mcp_client, wait_for_health

pytestmark = pytest.mark.anyio

# Every import of this module takes a while: the reload that re-imports it stays running meanwhile.
SLOW = "import time\n\ntime.sleep(0.5)\n\n\ndef slow() -> str:\n    return '{}'\n"
FAST = "def fast() -> str:\n    return '{}'\n"
MANIFEST = "name: pending\ntools:\n  - function: pending_slow:slow\n  - function: pending_fast:fast\n"
BROKEN = MANIFEST + "  - function: nowhere:x\n"  # a module that does not exist
EXTRA = "  - function: pending_fast:fast\n    name: quick\n"


async def slow_reload_running(folder: Path, runner: RunnerProcess, version: str) -> None:
    """Set off a reload that re-imports the slow module, and see it running."""
    (folder / "pending_slow.py").write_text(SLOW.format(version))
    await wait_for_health(runner.health_url, lambda h: h["reload_running_s"] is not None, "the slow reload running")


async def test_an_edit_made_while_a_reload_runs_waits_for_the_reload_that_read_it(tmp_path: Path) -> None:
    (tmp_path / "pending_slow.py").write_text(SLOW.format("s1"))
    (tmp_path / "pending_fast.py").write_text(FAST.format("f1"))
    (tmp_path / "pending.yaml").write_text(MANIFEST)
    runner = RunnerProcess(tmp_path / "pending.yaml").start()
    try:
        assert healthz(runner.health_url)["reload_pending"] is False
        # The manifest, written while the reload of an earlier module edit runs.
        await slow_reload_running(tmp_path, runner, "s2")
        health = await edit_and_wait(tmp_path, runner.health_url, "pending.yaml", MANIFEST + EXTRA)
        assert health["last_reload"]["result"] == "ok" and health["tools"] == 3, health
        # A module, written while the reload of another module's edit runs.
        await slow_reload_running(tmp_path, runner, "s3")
        health = await edit_and_wait(tmp_path, runner.health_url, "pending_fast.py", FAST.format("f2"))
        assert health["last_reload"]["result"] == "ok" and health["reload_pending"] is False, health
        async with mcp_client(runner.url) as client:
            assert (await client.call_tool("fast", {})).content[0].text == "f2"  # type: ignore[union-attr]
            assert (await client.call_tool("slow", {})).content[0].text == "s3"  # type: ignore[union-attr]
        # A manifest edit that fails is waited for just the same (its text is never served).
        await slow_reload_running(tmp_path, runner, "s4")
        health = await edit_and_wait(
            tmp_path, runner.health_url, "pending.yaml", MANIFEST + "  - function: nowhere:x\n"
        )
        assert health["status"] == "degraded" and health["last_reload"]["result"] == "failed", health
        assert health["tools"] == 3
    finally:
        runner.stop()
