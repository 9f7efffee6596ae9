"""`serve --transport stdio`: the same manifest over stdin/stdout, driven by the SDK's stdio client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import copy_example
from tests.helpers import free_port, runner_cmd, wait_for_port

pytestmark = pytest.mark.anyio


async def test_stdio_transport(tmp_path: Path) -> None:
    manifest = copy_example(tmp_path)
    command = runner_cmd("serve", str(manifest), "--transport", "stdio")
    params = StdioServerParameters(command=command[0], args=command[1:], cwd=str(tmp_path), env=dict(os.environ))
    async with Client(params) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["add"]
        assert (await client.call_tool("add", {"a": 4, "b": 5})).structured_content == {"result": 9}


def test_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    manifest = copy_example(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        runner_cmd("serve", str(manifest), "--port", str(port)),
        cwd=tmp_path,
        env={**os.environ, "MCP_APP_RESOURCE": f"http://127.0.0.1:{port}/mcp"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_port(port, proc=proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err  # the shell convention for "stopped by Ctrl-C", after a clean shutdown
    assert "Traceback" not in err
    assert "Finished server process" in err


def test_python_module_entry_point_matches_console_script() -> None:
    result = subprocess.run([sys.executable, "-m", "runner.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "serve" in result.stdout and "check" in result.stdout


async def test_stdio_reload_notifies_the_client(tmp_path: Path) -> None:
    import anyio

    manifest = copy_example(tmp_path)
    command = runner_cmd("serve", str(manifest), "--transport", "stdio")
    params = StdioServerParameters(command=command[0], args=command[1:], cwd=str(tmp_path), env=dict(os.environ))
    changed = anyio.Event()

    async def on_message(message: object) -> None:
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            changed.set()

    async with Client(params, mode="legacy", message_handler=on_message) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["add"]
        text = manifest.read_text().replace("tools:\n", "tools:\n  - function: servers.demo:add\n    name: plus\n")
        manifest.write_text(text)
        with anyio.fail_after(30):
            await changed.wait()
        assert sorted(t.name for t in (await client.list_tools()).tools) == ["add", "plus"]
