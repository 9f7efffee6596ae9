"""`mcp-runner install`: each client's documented format, merging into existing files, and a stdio entry that runs.

The formats checked here are the ones each client documents (cited in README "Add it to an MCP client"):
Claude Code `.mcp.json` (`mcpServers`, `type: http`, `${VAR}` in headers), Claude Desktop
`claude_desktop_config.json` (`mcpServers`, stdio only), Cursor `mcp.json` (`mcpServers`, `url`/`headers`,
`${env:VAR}`), VS Code `.vscode/mcp.json` (`servers`, `type` required, `${input:ID}` with a password input).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import copy_example
from tests.helpers import run_main

pytestmark = pytest.mark.anyio
RESOURCE = "http://127.0.0.1:8000/mcp"


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return copy_example(tmp_path)


def printed(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = run_main("install", *args, "--print", env=env)
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def test_stdio_entries_by_client(manifest: Path) -> None:
    """No auth or the local issuer: the client launches `serve --transport stdio` (no token to expire)."""
    args = ["serve", str(manifest.resolve()), "--transport", "stdio"]
    for client in ("claude-code", "claude-desktop", "cursor"):
        document = printed(client, str(manifest))
        assert list(document) == ["mcpServers"]
        entry = document["mcpServers"]["redmine-mcp-server"]
        assert list(entry) == ["command", "args"] and entry["args"] == args
        assert os.path.isabs(entry["command"]) and os.access(entry["command"], os.X_OK)
    vscode = printed("vscode", str(manifest))
    assert list(vscode) == ["servers"]  # VS Code's key, not mcpServers
    assert vscode["servers"]["redmine-mcp-server"]["type"] == "stdio"
    assert vscode["servers"]["redmine-mcp-server"]["args"] == args


def test_http_entries_by_client(manifest: Path) -> None:
    """HTTP entries name the token's variable (or input), never a token."""
    env = {"MCP_APP_ID": "test-app"}  # an MCP SignIn app: http is the default
    code = printed("claude-code", str(manifest), env=env)["mcpServers"]["redmine-mcp-server"]
    assert code == {"type": "http", "url": RESOURCE, "headers": {"Authorization": "Bearer ${MCP_TOKEN}"}}
    cursor = printed("cursor", str(manifest), "--token-env", "WEATHER_TOKEN", env=env)["mcpServers"]
    assert cursor["redmine-mcp-server"] == {
        "url": RESOURCE,
        "headers": {"Authorization": "Bearer ${env:WEATHER_TOKEN}"},
    }
    vscode = printed("vscode", str(manifest), "--url", "https://mcp.example.com/mcp", env=env)
    assert vscode["servers"]["redmine-mcp-server"] == {
        "type": "http",
        "url": "https://mcp.example.com/mcp",
        "headers": {"Authorization": "Bearer ${input:redmine-mcp-server-token}"},
    }
    assert vscode["inputs"] == [
        {
            "type": "promptString",
            "id": "redmine-mcp-server-token",
            "description": "Bearer token for redmine-mcp-server (mcp-runner token MANIFEST)",
            "password": True,
        }
    ]
    local = printed("claude-code", str(manifest), "--transport", "http", "--name", "mine")["mcpServers"]["mine"]
    assert local["headers"] == {"Authorization": "Bearer ${MCP_TOKEN}"}
    desktop = run_main("install", "claude-desktop", str(manifest), "--transport", "http", "--print")
    assert desktop.returncode == 2 and "stdio" in desktop.stderr and desktop.stdout == ""


def test_merges_into_existing_files(manifest: Path, tmp_path: Path) -> None:
    config = tmp_path / ".mcp.json"
    other = {"command": "npx", "args": ["-y", "other-server"], "env": {"KEY": "v"}}
    config.write_text(json.dumps({"mcpServers": {"other": other}, "someSetting": True}))
    base = ["install", "claude-code", str(manifest), "--config", str(config)]

    added = run_main(*base)
    assert added.returncode == 0 and f"{config}: added 'redmine-mcp-server'" in added.stderr
    document = json.loads(config.read_text())
    assert document["someSetting"] is True and document["mcpServers"]["other"] == other
    assert list(document["mcpServers"]) == ["other", "redmine-mcp-server"]

    again = run_main(*base)  # the same entry again: nothing to do
    assert again.returncode == 0 and "already has 'redmine-mcp-server' as it would be written" in again.stderr
    before = config.read_text()
    clash = run_main(*base, "--transport", "http")
    assert clash.returncode == 1 and "already has a server named 'redmine-mcp-server'" in clash.stderr
    assert config.read_text() == before
    forced = run_main(*base, "--transport", "http", "--force")
    assert forced.returncode == 0 and "replaced 'redmine-mcp-server'" in forced.stderr
    assert json.loads(config.read_text())["mcpServers"]["redmine-mcp-server"]["type"] == "http"
    assert json.loads(config.read_text())["mcpServers"]["other"] == other

    vscode = tmp_path / ".vscode" / "mcp.json"
    vscode.parent.mkdir()
    vscode.write_text(json.dumps({"inputs": [{"type": "promptString", "id": "x", "password": True}], "servers": {}}))
    assert run_main("install", "vscode", str(manifest), "--transport", "http", "--config", str(vscode)).returncode == 0
    merged = json.loads(vscode.read_text())
    assert [i["id"] for i in merged["inputs"]] == ["x", "redmine-mcp-server-token"]

    commented = tmp_path / "commented.json"
    commented.write_text('{\n  // mine\n  "servers": {}\n}\n')
    refused = run_main("install", "vscode", str(manifest), "--config", str(commented))
    assert refused.returncode == 2 and "not plain JSON" in refused.stderr and '"servers"' in refused.stderr
    assert commented.read_text() == '{\n  // mine\n  "servers": {}\n}\n'


async def test_the_stdio_entry_runs(manifest: Path, tmp_path: Path) -> None:
    """The command written into the client's file really serves the manifest, from any directory."""
    config = tmp_path / "claude_desktop_config.json"
    assert run_main("install", "claude-desktop", str(manifest), "--config", str(config)).returncode == 0
    entry = json.loads(config.read_text())["mcpServers"]["redmine-mcp-server"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    params = StdioServerParameters(command=entry["command"], args=entry["args"], cwd=str(elsewhere))
    async with Client(params) as client:
        assert (await client.call_tool("add", {"a": 4, "b": 5})).structured_content == {"result": 9}
