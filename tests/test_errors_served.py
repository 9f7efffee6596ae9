"""What a served manifest tells clients and operators: client mistakes, versions, log streams.

Real server processes, real MCP clients over HTTP, in both protocol generations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, CallToolResult

from tests.conftest import copy_example
from tests.helpers import (
    RunnerProcess,
    free_port,
    loopback_get,
    mcp_client,
    run_main,
    runner_cmd,
    stop_process,
    wait_for_port,
)

pytestmark = pytest.mark.anyio

MODULE = """
def add(a: int, b: int) -> int:
    return a + b


def item(id: int) -> str:
    return f"item {id}"


def greet(name: str, times: int = 1) -> str:
    return f"Hello {name}. " * times
"""

MANIFEST = """
name: Client errors
{version}tools:
  - function: mod:add
resources:
  - uri: item://{{id}}
    function: mod:item
prompts:
  - function: mod:greet
"""

MODES = ["legacy", "2026-07-28"]


@dataclass
class Served:
    url: str
    log: Path  # the server's stderr
    out: Path  # the server's stdout
    proc: subprocess.Popen[bytes]

    def log_text(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        stop_process(self.proc)


def serve(folder: Path, version: str = "") -> Served:
    """`mcp-runner serve` with stdout and stderr in files, so a test can read them while it runs."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mod.py").write_text(MODULE)
    manifest = folder / "m.yaml"
    manifest.write_text(textwrap.dedent(MANIFEST.format(version=version)).lstrip())
    port = free_port()
    log, out = folder / "stderr.log", folder / "stdout.log"
    with log.open("wb") as err_file, out.open("wb") as out_file:
        proc = subprocess.Popen(
            runner_cmd("serve", str(manifest), "--port", str(port), "--no-reload"),
            cwd=folder,
            env=dict(os.environ),
            stdout=out_file,
            stderr=err_file,
        )
    wait_for_port(port)
    return Served(f"http://127.0.0.1:{port}/mcp", log, out, proc)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = serve(tmp_path_factory.mktemp("client-errors"))
    yield server
    server.stop()


def wait_for_log(served: Served, text: str) -> str:
    """The log once it holds `text` (log lines are flushed as they are written, but not before the answer)."""
    for _ in range(200):
        log = served.log_text()
        if text in log:
            return log
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never reached the log:\n{served.log_text()}")


def assert_client_error_logged_quietly(log: str) -> None:
    assert " ERROR " not in log and "Traceback" not in log, log


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("arguments", "expected", "argument"),
    [
        ({}, "prompt 'greet': missing required argument 'name'", "name"),
        ({"name": "ann", "times": "many"}, "prompt 'greet': invalid argument 'times': Input should be", "times"),
        ({"name": "ann", "tone": "dry"}, "prompt 'greet': unknown argument 'tone' (it takes: 'name', 'times')", "tone"),
    ],
)
async def test_bad_prompt_arguments_are_invalid_params(
    served: Served, mode: str, arguments: dict[str, str], expected: str, argument: str
) -> None:
    async with mcp_client(served.url, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.get_prompt("greet", arguments)
        assert caught.value.error.code == INVALID_PARAMS
        assert expected in caught.value.error.message
        assert caught.value.error.data == {"argument": argument}
        # The same session still works: the mistake was the client's, nothing broke.
        ok = await client.get_prompt("greet", {"name": "ann", "times": "2"})
        assert "Hello ann. Hello ann." in str(ok.messages[0].content)
    assert_client_error_logged_quietly(wait_for_log(served, f"INFO runner: rejected a client's arguments: {expected}"))


@pytest.mark.parametrize("mode", MODES)
async def test_unknown_prompt_is_invalid_params(served: Served, mode: str) -> None:
    async with mcp_client(served.url, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.get_prompt("nope", {})
        assert caught.value.error.code == INVALID_PARAMS
        assert "Unknown prompt: nope" in caught.value.error.message
    assert_client_error_logged_quietly(served.log_text())


@pytest.mark.parametrize("mode", MODES)
async def test_template_read_with_an_ill_typed_part_is_invalid_params(served: Served, mode: str) -> None:
    async with mcp_client(served.url, mode=mode) as client:
        assert (await client.read_resource("item://7")).contents[0].text == "item 7"  # type: ignore[union-attr]
        with pytest.raises(MCPError) as caught:
            await client.read_resource("item://seven")
        assert caught.value.error.code == INVALID_PARAMS
        assert "resource template 'item://{id}': invalid argument 'id'" in caught.value.error.message
    assert_client_error_logged_quietly(wait_for_log(served, "resource template 'item://{id}': invalid argument 'id'"))


@pytest.mark.parametrize("mode", MODES)
async def test_tool_call_missing_an_argument_is_a_tool_error_logged_at_info(served: Served, mode: str) -> None:
    async with mcp_client(served.url, mode=mode) as client:
        result = await client.call_tool("add", {"a": 1})
        assert result.is_error
    assert_client_error_logged_quietly(wait_for_log(served, "Tool 'add' rejected arguments: ['b']"))


def server_info(client: Client, result: CallToolResult) -> dict[str, Any]:
    if client.server_info is not None:  # legacy: from the initialize handshake
        return client.server_info.model_dump()
    assert result.meta is not None  # 2026-07-28: stamped on results
    info: dict[str, Any] = result.meta["io.modelcontextprotocol/serverInfo"]
    return info


@pytest.mark.parametrize("mode", MODES)
async def test_default_server_version_is_the_runners_plus_the_manifest_hash(served: Served, mode: str) -> None:
    from runner.version import RUNNER_VERSION

    async with mcp_client(served.url, mode=mode) as client:
        info = server_info(client, await client.call_tool("add", {"a": 1, "b": 2}))
    digest = loopback_get(served.url.replace("/mcp", "/healthz"), timeout=30).json()["manifest_sha256"]
    assert info["name"] == "Client errors"
    assert info["version"] == f"{RUNNER_VERSION}+{digest[:8]}"


async def test_manifest_version_and_one_log_stream(tmp_path: Path) -> None:
    """`version:` is serverInfo.version, in both generations. Every log line goes to stderr, stdout stays empty."""
    server = serve(tmp_path, version='version: "2.5.1"\n')
    try:
        for mode in MODES:
            async with mcp_client(server.url, mode=mode) as client:
                info = server_info(client, await client.call_tool("add", {"a": 1, "b": 2}))
            assert (info["name"], info["version"]) == ("Client errors", "2.5.1")
        wait_for_log(server, '"POST /mcp HTTP/1.1" 200')  # the access log, on stderr
    finally:
        server.stop()
    log = server.log_text()
    assert log.startswith('mcp-runner: serving "Client errors"')  # the start-up block, then the log
    assert "uvicorn.access" in log and "Finished server process" in log
    assert server.out.read_text() == ""  # stdout carries nothing while serving


def test_connect_line_names_the_server_after_its_manifest(tmp_path: Path) -> None:
    """Two servers pasted into one client must not collide on the name `mcp-runner`."""
    example = copy_example(tmp_path)
    names = []
    for file, name in (("a.yaml", "Redmine MCP server"), ("b.yaml", "Billing tools")):
        manifest = tmp_path / file
        manifest.write_text(example.read_text().replace("name: Redmine MCP server", f"name: {name}"))
        runner = RunnerProcess(manifest).start()
        banner = runner.stop()
        connect = next(line for line in banner.splitlines() if line.lstrip().startswith("connect:"))
        command = connect.split("connect:", 1)[1].split("   (", 1)[0].split()
        assert command[:3] == ["mcp-runner", "install", "claude-code"]
        assert "Bearer" not in connect and ".ey" not in connect  # no token to paste into a client's config
        printed = run_main(*command[1:], "--print", cwd=tmp_path)  # the line as printed, asked to show its entry
        assert printed.returncode == 0, printed.stderr
        names.extend(json.loads(printed.stdout)["mcpServers"])
    assert names == ["redmine-mcp-server", "billing-tools"]


def test_stdio_banner_says_what_becomes_of_scopes_and_bind(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text(MODULE + "\n\ndef whoami(user: str) -> str:\n    return user\n")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "name: s\nsignin:\n  app_id: local\n  scopes: [mcp]\ntools:\n  - function: mod:add\n    scopes: [math]\n"
        "  - function: mod:whoami\n    bind: {user: sub}\n"
    )
    # stdin at EOF: the server prints its start-up block and ends, as when its client goes away.
    result = subprocess.run(
        runner_cmd("serve", str(manifest), "--transport", "stdio", "--no-reload"),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert (
        "  scopes:    not checked over stdio (no token): every tool, resource and prompt is listed and usable" in lines
    )
    assert "  bind:      whoami: every call is a tool error over stdio (no token to take claims from)" in lines


def test_readme_client_snippet_runs_as_pasted(tmp_path: Path) -> None:
    """The README's Python client, saved to a file and run the way the README says, against example.yaml."""
    from tests.helpers import ROOT

    readme = (ROOT / "README.md").read_text()
    intro = readme.index("`client.py`")  # "save this as `client.py`", just before the snippet
    start = readme.index("```python\n", intro) + len("```python\n")
    snippet = readme[start : readme.index("```\n", start)]
    manifest = copy_example(tmp_path)
    runner = RunnerProcess(manifest)
    env = {"MCP_APP_RESOURCE": runner.url}
    runner.env = env
    # The one change: the port this test serves on instead of 8000.
    (tmp_path / "client.py").write_text(snippet.replace("http://127.0.0.1:8000/mcp", runner.url))
    runner.start()
    try:
        token = run_main("token", str(manifest), "--port", str(runner.port), cwd=tmp_path, env=env).stdout.strip()
        result = subprocess.run(
            [sys.executable, "client.py"],
            cwd=tmp_path,
            env={**os.environ, "MCP_TOKEN": token},
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        runner.stop()
    assert result.returncode == 0, result.stderr
    assert result.stdout == "{'result': 3}\n"
