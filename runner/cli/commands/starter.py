"""The files `mcp-runner init` writes: a manifest, its schema, a module, and a test that calls them.

Kept as text here (not package data) so that a non-editable install carries them with no
packaging rule to forget. The manifest uses the built-in local issuer, so `mcp-runner serve`
works at once with no account; the test drives the server over stdio with the SDK's client,
so it needs no port, no token and no running server, and runs as a plain script: the venv
the README makes (`pip install -e .`) has no pytest.
"""

from __future__ import annotations

import json

from runner.manifest.schema import json_schema

MANIFEST = "mcp-runner.yaml"
SCHEMA = "mcp-runner.schema.json"
MODULE = "tools.py"
TEST = "test_server.py"

_MANIFEST = """\
# yaml-language-server: $schema=./{schema}
# Serve with `mcp-runner serve` in this folder; edit this file or {module} and it reloads.
name: {name}
instructions: A starter server with one tool, one resource and one prompt.

signin:
  app_id: local  # the built-in local issuer (tokens: `mcp-runner token`); put your MCP SignIn app id here

server:
  host: 127.0.0.1
  port: 8000
  path: /mcp

tools:
  - function: tools:add
    title: Add numbers
    annotations: {{readOnlyHint: true, idempotentHint: true}}

resources:
  - uri: greeting://{{name}}
    function: tools:greeting
    mime_type: text/plain

prompts:
  - function: tools:review
"""

_MODULE = '''\
"""The server's tool, resource and prompt: plain Python functions, listed in mcp-runner.yaml.

Type hints become the input schema and docstrings the descriptions.
"""


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def greeting(name: str) -> str:
    """A personalized greeting."""
    return f"Hello, {name}!"


def review(code: str, focus: str = "clarity") -> str:
    """Ask for a review of a piece of code."""
    return f"Please review this code for {focus}:\\n\\n{code}"
'''

_TEST = '''\
"""Calls the tool, the resource and the prompt through a real server process.

Run: `python test_server.py` with the Python that has mcp-runner (no other package needed), or `pytest`.

The server runs over stdio (`mcp-runner serve --transport stdio`), as MCP clients that launch
their servers do: no port, and no token (over stdio the client that starts the process owns it).
"""

import asyncio
import sys
from pathlib import Path

from mcp import Client, StdioServerParameters

HERE = Path(__file__).resolve().parent
SERVER = StdioServerParameters(
    command=sys.executable,
    args=["-m", "runner.cli", "serve", str(HERE / "mcp-runner.yaml"), "--transport", "stdio", "--no-reload"],
    cwd=str(HERE),
)


async def _exercise() -> None:
    async with Client(SERVER) as client:
        result = await client.call_tool("add", {"a": 2, "b": 3})
        assert not result.is_error
        assert result.structured_content == {"result": 5}

        resource = await client.read_resource("greeting://Ada")
        assert resource.contents[0].text == "Hello, Ada!"

        prompt = await client.get_prompt("review", {"code": "x = 1"})
        assert "x = 1" in prompt.messages[0].content.text


def test_tool_resource_and_prompt() -> None:
    asyncio.run(_exercise())


if __name__ == "__main__":
    test_tool_resource_and_prompt()
    print("ok: the tool, the resource and the prompt answered as expected")
'''


def files(name: str) -> dict[str, str]:
    """File name -> content, for a server called `name`."""
    return {
        MANIFEST: _MANIFEST.format(name=_yaml_string(name), schema=SCHEMA, module=MODULE),
        SCHEMA: json.dumps(json_schema(), indent=2) + "\n",
        MODULE: _MODULE,
        TEST: _TEST,
    }


def _yaml_string(text: str) -> str:
    """`text` as a YAML scalar that stays a string (a folder named `123` or `yes` included)."""
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar
