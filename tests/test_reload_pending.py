"""`reload_pending` on /healthz, and the tests' reload wait built on it, against a reload already running.

A reload set off by an earlier write can still be running when the next file is written. Waiting
for "the reload count changed" then takes that reload, which never read the new text, for the one
that did (seen in CI: "no visible change"). Here a module whose import waits for a gate file holds
a reload running for as long as the test wants, and the next file is written meanwhile: for a
manifest edit, a module edit and a manifest edit that fails.

The gate, not a timed sleep: a reload held for half a second was missed by the test's polling on a
loaded machine (CI), and a test must not depend on how fast the machine is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    RunnerProcess,
    healthz,
    mcp_client,
    reloaded,
    settled_reloads,
    wait_for_health,
    write_atomically,
)

pytestmark = pytest.mark.anyio

# Every import of this module waits (bounded, 60 s) for its gate file: the reload that re-imports it
# stays running until the test opens the gate.
SLOW = """import pathlib
import time

gate = pathlib.Path({gate!r})
for _ in range(6000):
    if gate.exists():
        break
    time.sleep(0.01)


def slow() -> str:
    return {version!r}
"""
FAST = "def fast() -> str:\n    return '{}'\n"
MANIFEST = "name: pending\ntools:\n  - function: pending_slow:slow\n  - function: pending_fast:fast\n"
EXTRA = "  - function: pending_fast:fast\n    name: quick\n"


def slow_module(folder: Path, gates: Path, version: str) -> Path:
    """Write the slow module at `version`; returns its gate, still closed."""
    gate = gates / version
    write_atomically(folder / "pending_slow.py", SLOW.format(gate=str(gate), version=version))
    return gate


async def edit_during_a_held_reload(
    folder: Path, gates: Path, runner: RunnerProcess, version: str, name: str, text: str
) -> dict[str, Any]:
    """Set off a reload that re-imports the slow module and hold it; write `name` meanwhile; let it go.

    Returns what the tests' wait (`reloaded`) returns after the write: it must be the reload that
    read `name`, not the held one.
    """
    before = await settled_reloads(runner.health_url)
    gate = slow_module(folder, gates, version)
    held = await wait_for_health(runner.health_url, lambda h: h["reload_running_s"] is not None, "the held reload")
    assert held["reload_pending"] is True, held
    write_atomically(folder / name, text)
    gate.touch()
    return await reloaded(runner.health_url, before, f"the reload that read {name}")


async def test_an_edit_made_while_a_reload_runs_waits_for_the_reload_that_read_it(tmp_path: Path) -> None:
    gates = tmp_path / "gates"  # outside what the runner watches: opening a gate sets off nothing
    gates.mkdir()
    served = tmp_path / "served"
    served.mkdir()
    slow_module(served, gates, "s1").touch()
    (served / "pending_fast.py").write_text(FAST.format("f1"))
    (served / "pending.yaml").write_text(MANIFEST)
    runner = RunnerProcess(served / "pending.yaml").start()
    try:
        assert healthz(runner.health_url)["reload_pending"] is False
        # The manifest, written while the reload of an earlier module edit runs.
        health = await edit_during_a_held_reload(served, gates, runner, "s2", "pending.yaml", MANIFEST + EXTRA)
        assert health["last_reload"]["result"] == "ok" and health["tools"] == 3, health
        # A module, written while the reload of another module's edit runs.
        health = await edit_during_a_held_reload(served, gates, runner, "s3", "pending_fast.py", FAST.format("f2"))
        assert health["last_reload"]["result"] == "ok" and health["reload_pending"] is False, health
        async with mcp_client(runner.url) as client:
            assert (await client.call_tool("fast", {})).content[0].text == "f2"  # type: ignore[union-attr]
            assert (await client.call_tool("slow", {})).content[0].text == "s3"  # type: ignore[union-attr]
        # A manifest edit that fails is waited for just the same (its text is never served).
        broken = MANIFEST + "  - function: nowhere:x\n"  # a module that does not exist
        health = await edit_during_a_held_reload(served, gates, runner, "s4", "pending.yaml", broken)
        assert health["status"] == "degraded" and health["last_reload"]["result"] == "failed", health
        assert health["tools"] == 3
    finally:
        runner.stop()
