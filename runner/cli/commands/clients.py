"""Each MCP client's own config format for one server entry, as its documentation gives it.

Followed (checked with the search tool, November 2026; the README cites the same pages):
- Claude Code, https://code.claude.com/docs/en/mcp: project scope is `.mcp.json` at the project
  root, `{"mcpServers": {name: ...}}`; a stdio entry is `command`/`args`; an HTTP entry is
  `{"type": "http", "url", "headers"}`; `${VAR}` is expanded in command, args, env, url and headers.
- Claude Desktop, https://modelcontextprotocol.io/docs/develop/connect-local-servers:
  `claude_desktop_config.json`, `{"mcpServers": {name: {"command", "args"}}}`; the file holds
  local (stdio) servers only; remote servers are added in the app as connectors.
- Cursor, https://cursor.com/docs/mcp: `.cursor/mcp.json` (project) or `~/.cursor/mcp.json`,
  `{"mcpServers": ...}`; `command`/`args` for stdio, `url`/`headers` for HTTP; `${env:NAME}` is
  interpolated.
- VS Code, https://code.visualstudio.com/docs/copilot/reference/mcp-configuration: `.vscode/mcp.json`,
  `{"servers": {name: ...}, "inputs": [...]}` (`servers`, not `mcpServers`); `type` is required
  (`"stdio"` with `command`/`args`, `"http"` with `url`/`headers`); secrets come from
  `${input:ID}` with a `promptString` input marked `password: true`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLIENTS = ("claude-code", "claude-desktop", "cursor", "vscode")
DESKTOP_FILE = "claude_desktop_config.json"


@dataclass(frozen=True)
class Entry:
    """What goes into the client's file: the server entry, and (VS Code) the inputs it needs."""

    servers_key: str
    name: str
    server: dict[str, Any]
    inputs: list[dict[str, Any]]

    def document(self) -> dict[str, Any]:
        """The entry as a complete config file of its own (what `--print` shows)."""
        document: dict[str, Any] = {self.servers_key: {self.name: self.server}}
        if self.inputs:
            document["inputs"] = self.inputs
        return document


def default_config(client: str) -> Path:
    """Where the client reads its servers from, for this project (or this user, for Claude Desktop)."""
    if client == "claude-code":
        return Path(".mcp.json")
    if client == "cursor":
        return Path(".cursor") / "mcp.json"
    if client == "vscode":
        return Path(".vscode") / "mcp.json"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "Claude" / DESKTOP_FILE
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming") / "Claude" / DESKTOP_FILE
    # No official Linux build; community builds read the XDG location.
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "Claude" / DESKTOP_FILE


def supports_http(client: str) -> bool:
    return client != "claude-desktop"


def stdio_entry(client: str, name: str, command: list[str]) -> Entry:
    server: dict[str, Any] = {"command": command[0], "args": command[1:]}
    if client == "vscode":
        return Entry("servers", name, {"type": "stdio", **server}, [])
    return Entry("mcpServers", name, server, [])


def http_entry(client: str, name: str, url: str, token_env: str | None) -> Entry:
    """An HTTP entry; with `token_env`, the Authorization header names the token, never holds it."""
    inputs: list[dict[str, Any]] = []
    headers: dict[str, str] = {}
    if token_env is not None:
        if client == "claude-code":
            headers["Authorization"] = f"Bearer ${{{token_env}}}"
        elif client == "cursor":
            headers["Authorization"] = f"Bearer ${{env:{token_env}}}"
        else:  # vscode: the documented way to keep a secret out of the file is an input it asks for
            input_id = f"{name}-token"
            headers["Authorization"] = f"Bearer ${{input:{input_id}}}"
            inputs.append(
                {
                    "type": "promptString",
                    "id": input_id,
                    "description": f"Bearer token for {name} (mcp-runner token MANIFEST)",
                    "password": True,
                }
            )
    server: dict[str, Any] = {"url": url, **({"headers": headers} if headers else {})}
    if client == "cursor":
        return Entry("mcpServers", name, server, inputs)
    if client == "vscode":
        return Entry("servers", name, {"type": "http", **server}, inputs)
    return Entry("mcpServers", name, {"type": "http", **server}, inputs)
