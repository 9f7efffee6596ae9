"""A reload survives anything the user's module does at import: exits, interrupts, hangs, a saturated pool."""

from __future__ import annotations

import re
import signal
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.helpers import RunnerProcess, edit_and_wait, loopback_get, mcp_client, run_cli

pytestmark = pytest.mark.anyio

TOOLS = """
def add(a: int, b: int) -> int:
    return a + b
"""

MANIFEST = """
name: survivor
tools:
  - function: tools:add
"""

LOCATED = re.compile(r"m\.yaml:\d+:\d+: ")


@dataclass
class Served:
    folder: Path
    runner: RunnerProcess

    def health(self) -> dict[str, Any]:
        return loopback_get(f"http://127.0.0.1:{self.runner.port}/healthz").json()  # type: ignore[no-any-return]

    def write(self, name: str, text: str) -> None:
        (self.folder / name).write_text(textwrap.dedent(text))

    async def until(self, condition: Any, what: str) -> dict[str, Any]:
        """Poll /healthz (bounded) until `condition(health)` holds."""
        with anyio.fail_after(60):
            while not condition(health := self.health()):
                assert self.runner.proc is not None and self.runner.proc.poll() is None, "the server died"
                await anyio.sleep(0.05)
        return health

    async def edit(self, name: str, text: str) -> dict[str, Any]:
        return await edit_and_wait(self.folder, self.runner.health_url, name, textwrap.dedent(text))

    async def add_answers(self) -> None:
        async with mcp_client(self.runner.url, mode="legacy") as client:
            assert (await client.call_tool("add", {"a": 2, "b": 3})).structured_content == {"result": 5}


def start(folder: Path, *extra: str) -> Served:
    served = Served(folder, RunnerProcess(folder / "m.yaml", extra=extra))
    served.write("tools.py", TOOLS)
    served.write("m.yaml", MANIFEST)
    served.runner.start()
    return served


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    project = start(tmp_path_factory.mktemp("survival"), "--reload-timeout", "3")
    yield project
    project.runner.stop()


ATTACKS = {
    "sys.exit(3)": "import sys\nsys.exit(3)\n",
    "sys.exit(0)": "import sys\nsys.exit(0)\n",
    "KeyboardInterrupt": "raise KeyboardInterrupt\n",
    "BaseException": 'raise BaseException("x")\n',
    "GeneratorExit": "raise GeneratorExit\n",
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_anything_raised_at_import_is_a_failed_reload(served: Served, attack: str) -> None:
    module = "bad_" + re.sub(r"\W", "", attack).lower()
    served.write(f"{module}.py", ATTACKS[attack] + "def f() -> int:\n    return 1\n")
    health = await served.edit("m.yaml", MANIFEST + f"  - function: {module}:f\n")
    assert served.runner.proc is not None and served.runner.proc.poll() is None
    assert health["status"] == "degraded" and health["last_reload"]["result"] == "failed"
    assert LOCATED.search(health["last_reload"]["error"]), health["last_reload"]["error"]
    assert health["tools"] == 1
    await served.add_answers()  # the last good definition keeps serving, over MCP
    health = await served.edit("m.yaml", MANIFEST + "  - function: tools:add\n    name: plus\n")
    assert health["status"] == "ok" and health["tools"] == 2
    async with mcp_client(served.runner.url, mode="legacy") as client:
        assert (await client.call_tool("plus", {"a": 1, "b": 1})).structured_content == {"result": 2}
    await served.edit("m.yaml", MANIFEST)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("import sys\nsys.exit(0)\n", "importing 'bad' raised SystemExit (sys.exit(0) at import)"),
        ('raise BaseException("x")\n', "importing 'bad' raised BaseException: x"),
        ("raise KeyboardInterrupt\n", "importing 'bad' raised KeyboardInterrupt"),
    ],
)
def test_check_reports_exits_and_base_exceptions_at_import(tmp_path: Path, body: str, expected: str) -> None:
    (tmp_path / "bad.py").write_text(body + "def f() -> int:\n    return 1\n")
    (tmp_path / "m.yaml").write_text("name: x\ntools:\n  - function: bad:f\n")
    result = run_cli("check", str(tmp_path / "m.yaml"), cwd=tmp_path)
    assert result.returncode == 2, result
    assert f"m.yaml:3:15: {expected}" in result.stderr
    assert 'File "bad.py", line ' in result.stderr  # the user's frame, no raw traceback
    assert "runner/" not in result.stderr and "importlib" not in result.stderr


HANG = "import time\nwhile True:\n    time.sleep(0.05)\n"


async def test_an_import_that_never_returns_is_abandoned(tmp_path: Path) -> None:
    # 2 s, not 1: the good reload after the abandoned one must fit in it on a loaded CI machine.
    served = start(tmp_path, "--reload-timeout", "2")
    try:
        served.write("hang.py", HANG + "def f() -> int:\n    return 1\n")
        health = await served.edit("m.yaml", MANIFEST + "  - function: hang:f\n")
        assert health["status"] == "degraded", health
        assert health["last_reload"]["error"].startswith("hang.py:3: reload abandoned: still running after 2 s")
        await served.add_answers()
        # Later edits still apply: the stuck import was interrupted, its module lock released.
        health = await served.edit("m.yaml", MANIFEST + "  - function: tools:add\n    name: plus\n")
        assert health["status"] == "ok" and health["tools"] == 2, health
        # And the same module, fixed, imports again.
        served.write("hang.py", "def f() -> int:\n    return 1\n")
        health = await served.edit("m.yaml", MANIFEST + "  - function: hang:f\n")
        assert health["status"] == "ok" and health["tools"] == 2, health
        # An import blocked inside C (one long sleep) cannot be interrupted: /healthz says stuck, never ok.
        served.write("sleeper.py", "import time\ntime.sleep(3600)\ndef g() -> int:\n    return 1\n")
        served.write("m.yaml", MANIFEST + "  - function: sleeper:g\n")
        health = await served.until(lambda h: h["status"] == "stuck", "stuck")
        assert health["reload_running_s"] >= 2
        await served.add_answers()
        # Ctrl-C still stops the process (the stuck thread is a daemon, never joined).
    finally:
        proc = served.runner.proc
        assert proc is not None
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)  # bounded: a Ctrl-C that hangs fails the test
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail("Ctrl-C did not stop the server")
    assert proc.returncode is not None


GATED = """
import time
from pathlib import Path

HERE = Path(__file__).parent


def gate(name: str) -> str:
    (HERE / "started" / name).touch()
    for _ in range(6000):  # released by the test; bounded so a failed test leaves no stuck process
        if (HERE / "release").exists():
            break
        time.sleep(0.01)
    return name


async def ping() -> str:
    return "pong"
"""

GATED_MANIFEST = "name: pool\ntools:\n  - function: gated:gate\n  - function: gated:ping\n"


def start_gated(folder: Path, *extra: str) -> Served:
    (folder / "started").mkdir()
    served = Served(folder, RunnerProcess(folder / "m.yaml", extra=extra))
    served.write("gated.py", GATED)
    served.write("m.yaml", GATED_MANIFEST)
    served.runner.start()
    return served


async def test_busy_sync_tools_never_delay_a_reload(tmp_path: Path) -> None:
    served = start_gated(tmp_path)  # the default pool: 40 threads
    try:
        async with mcp_client(served.runner.url, mode="legacy") as client:
            results: list[Any] = []

            async def call(i: int) -> None:
                results.append(await client.call_tool("gate", {"name": str(i)}))

            async with anyio.create_task_group() as tasks:
                for i in range(40):
                    tasks.start_soon(call, i)
                with anyio.fail_after(60):
                    while len(list((tmp_path / "started").iterdir())) < 40:
                        await anyio.sleep(0.05)
                # Every tool thread is taken: a reload still runs, and an async tool still answers.
                health = await served.edit("m.yaml", GATED_MANIFEST + "  - function: gated:ping\n    name: pong\n")
                assert health["status"] == "ok" and health["tools"] == 3
                assert health["tool_threads"] == {"size": 40, "busy": 40, "waiting": 0}
                assert not results, "the sync tools were released before the reload"
                assert (await client.call_tool("pong", {})).content[0].text == "pong"  # type: ignore[union-attr]
                (tmp_path / "release").touch()
        assert sorted(r.content[0].text for r in results) == sorted(str(i) for i in range(40))
    finally:
        (tmp_path / "release").touch()
        served.runner.stop()


async def test_a_full_pool_queues_a_bounded_line_then_refuses(tmp_path: Path) -> None:
    served = start_gated(tmp_path, "--tool-threads", "2")
    try:
        async with mcp_client(served.runner.url, mode="legacy") as client:
            results: list[Any] = []

            async def call(i: int) -> None:
                results.append(await client.call_tool("gate", {"name": str(i)}))

            async with anyio.create_task_group() as tasks:
                for i in range(4):
                    tasks.start_soon(call, i)
                await served.until(lambda h: h["tool_threads"] == {"size": 2, "busy": 2, "waiting": 2}, "a full line")
                refused = await client.call_tool("gate", {"name": "one too many"})
                assert refused.is_error
                assert "server busy: all 2 threads for sync tools are in use" in refused.content[0].text  # type: ignore[union-attr]
                # The tool never ran: the audit line (and the metric) says refused, not tool_error.
                assert 'tool call "gate" by anonymous: refused' in served.runner.logged()
                assert (await client.call_tool("ping", {})).content[0].text == "pong"  # type: ignore[union-attr]
                (tmp_path / "release").touch()
        assert sorted(r.content[0].text for r in results) == ["0", "1", "2", "3"]
    finally:
        (tmp_path / "release").touch()
        served.runner.stop()
