"""The watcher never goes blind: ConfigMap symlink swaps, folders deleted and recreated, polling."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.helpers import RunnerProcess, loopback_get, mcp_client, reloaded, settled_reloads

pytestmark = pytest.mark.anyio

TOOLS = "def add(a: int, b: int) -> int:\n    return a + b\n"


def health(runner: RunnerProcess) -> dict[str, Any]:
    return loopback_get(f"http://127.0.0.1:{runner.port}/healthz").json()  # type: ignore[no-any-return]


async def until(runner: RunnerProcess, condition: Any) -> dict[str, Any]:
    """Poll /healthz (bounded) until `condition(health)` holds."""
    with anyio.fail_after(60):
        while not condition(state := health(runner)):
            assert runner.proc is not None and runner.proc.poll() is None, "the server died"
            await anyio.sleep(0.05)
    return state


async def tool_names(runner: RunnerProcess) -> list[str]:
    async with mcp_client(runner.url, mode="legacy") as client:
        return sorted(t.name for t in (await client.list_tools()).tools)


def manifest(*names: str) -> str:
    return "name: w\ntools:\n" + "".join(f"  - function: tools:add\n    name: {n}\n" for n in names)


class ConfigMap:
    """A folder laid out and updated the way the kubelet does it (AtomicWriter)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.version = 0
        folder.mkdir()

    def publish(self, text: str) -> None:
        self.version += 1
        fresh = self.folder / f"..2026_11_26_{self.version}"
        fresh.mkdir()
        (fresh / "m.yaml").write_text(text)
        data = self.folder / "..data"
        old = os.readlink(data) if data.is_symlink() else None
        os.symlink(fresh.name, self.folder / "..data_tmp")
        os.rename(self.folder / "..data_tmp", data)  # the atomic swap
        if not (self.folder / "m.yaml").is_symlink():
            os.symlink("..data/m.yaml", self.folder / "m.yaml")
        if old is not None:
            shutil.rmtree(self.folder / old)


async def test_configmap_symlink_swaps_reload_every_time(tmp_path: Path) -> None:
    app = tmp_path / "app"  # the code ships in the image; the ConfigMap holds only the manifest
    app.mkdir()
    (app / "tools.py").write_text(TOOLS)
    config = ConfigMap(tmp_path / "config")
    config.publish(manifest("v0"))
    runner = RunnerProcess(config.folder / "m.yaml", env={"PYTHONPATH": str(app)}).start()
    try:
        for version in (1, 2, 3):
            before = await settled_reloads(runner.health_url)
            config.publish(manifest(f"v{version}"))
            state = await reloaded(runner.health_url, before, f"the reload that read v{version}")
            assert state["status"] == "ok", state
            assert state["manifest_sha256"] == hashlib.sha256(manifest(f"v{version}").encode()).hexdigest()
            assert await tool_names(runner) == [f"v{version}"]
    finally:
        runner.stop()


async def test_folder_deleted_and_recreated_recovers_by_itself(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "tools.py").write_text(TOOLS)
    (project / "m.yaml").write_text(manifest("add"))
    runner = RunnerProcess(project / "m.yaml").start()
    try:
        shutil.rmtree(project)  # a git checkout, a deploy tool
        await until(runner, lambda h: h["status"] == "degraded")
        assert await tool_names(runner) == ["add"]  # the last good definition keeps serving
        project.mkdir()
        (project / "tools.py").write_text(TOOLS.replace("a + b", "a * b"))
        (project / "m.yaml").write_text(manifest("add", "times"))
        await until(runner, lambda h: h["status"] == "ok" and h["tools"] == 2)
        async with mcp_client(runner.url, mode="legacy") as client:
            assert (await client.call_tool("times", {"a": 3, "b": 4})).structured_content == {"result": 12}
        (project / "m.yaml").write_text(manifest("times"))  # and it keeps watching the new folder
        await until(runner, lambda h: h["status"] == "ok" and h["tools"] == 1)
    finally:
        runner.stop()


async def test_poll_mode_reloads(tmp_path: Path) -> None:
    (tmp_path / "tools.py").write_text(TOOLS)
    (tmp_path / "m.yaml").write_text(manifest("add"))
    runner = RunnerProcess(tmp_path / "m.yaml", extra=("--poll", "0.2")).start()
    try:
        assert health(runner)["watch"] == "polling every 0.2 s"
        (tmp_path / "m.yaml").write_text(manifest("add", "plus"))
        await until(runner, lambda h: h["tools"] == 2 and h["status"] == "ok")
        assert await tool_names(runner) == ["add", "plus"]
    finally:
        runner.stop()


async def test_a_quiet_audit_does_not_scan_the_loaded_modules(tmp_path: Path) -> None:
    """The half-second audit used to scan every loaded module (on the event loop, delaying the calls in flight) each
    time; a tick with no event (or only a log file written next to the manifest), no drift and no import or purge
    since cannot change the folders, and skips it."""
    from runner.reload.watcher import Baseline, Watcher

    path = tmp_path / "m.yaml"
    path.write_text(manifest("a"))
    scans: list[int] = []

    def files() -> list[Path]:
        scans.append(1)
        return []

    reloads: list[set[Path]] = []

    async def reload(changed: set[Path]) -> None:
        reloads.append(changed)

    baseline = Baseline(path, files)
    baseline.capture()
    watcher = Watcher(path, baseline, reload, busy=lambda: False, poll_interval=lambda: None)

    async def ticks(count: int) -> None:
        for _ in range(count):
            seen = watcher.heartbeat
            with anyio.fail_after(30):
                while watcher.heartbeat == seen:
                    await anyio.sleep(0.02)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(watcher.run)
        await ticks(1)  # armed, and anything imported on the way loaded
        before = len(scans)
        await ticks(2)
        (tmp_path / "server.log").write_text("a line\n")  # the server's log, written next to its manifest
        await ticks(2)
        tasks.cancel_scope.cancel()
    assert reloads == [] and len(scans) == before, (before, len(scans))
