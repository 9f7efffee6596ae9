"""Local-issuer tokens that work the first time, on every documented path (README, "Connect a client").

Each path is the real CLI: `serve` as a process (its start-up block read from its
stderr), `token` through `run_cli`, then a real MCP call with the printed token.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest

from tests.conftest import copy_example
from tests.helpers import (
    free_port,
    loopback_get,
    mcp_client,
    post_initialize,
    run_main,
    runner_cmd,
    stop_process,
    wait_for_port,
)

pytestmark = pytest.mark.anyio

BARE = """\
name: bare
signin:
  app_id: local
server:
  port: 0
tools:
  - function: servers.demo:add
"""

SCOPED = """\
name: scoped
signin:
  app_id: local
  scopes: [mcp]
tools:
  - function: servers.demo:add
prompts:
  - function: servers.demo:greet_user
    scopes: [extra]
"""


@dataclass
class Served:
    """`mcp-runner serve` with exactly the given flags, and what its start-up block said."""

    proc: subprocess.Popen[str]
    block: dict[str, str]

    @property
    def url(self) -> str:
        return self.block["URL"]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/")[0])

    @property
    def token(self) -> str:
        return self.block["token"]

    def stop(self) -> None:
        stop_process(self.proc)


def serve(manifest: Path, *flags: str, env: dict[str, str] | None = None) -> Served:
    proc = subprocess.Popen(
        runner_cmd("serve", str(manifest), *flags),
        cwd=manifest.parent,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    block: dict[str, str] = {}
    for line in proc.stderr:  # the start-up block ends with its reload line
        key, _, value = line.strip().partition(":")
        if line.startswith("  ") and value and key.isalpha():
            block.setdefault(key, value.strip())
        if line.startswith("  reload:"):
            break
    served = Served(proc, block)
    try:
        if "URL" not in block:
            raise RuntimeError(f"no start-up block: {block}")
        wait_for_port(served.port, proc=proc)
    except BaseException:  # a server that never came up must not outlive the test
        served.stop()
        raise
    return served


@pytest.fixture
def started() -> Iterator[list[Served]]:
    """Servers a test starts; each stopped by PID at the end, whatever happened."""
    servers: list[Served] = []
    yield servers
    for served in servers:
        served.stop()


def token(manifest: Path, *flags: str, env: dict[str, str] | None = None) -> str:
    minted = run_main("token", str(manifest), *flags, cwd=manifest.parent, env=env)
    assert minted.returncode == 0, minted.stderr
    return minted.stdout.strip()


async def add(url: str, token: str) -> None:
    async with mcp_client(url, token) as client:
        assert (await client.call_tool("add", {"a": 1, "b": 2})).structured_content == {"result": 3}


@pytest.mark.parametrize("how", ["manifest-port", "port-flag-and-resource", "port-flag-only"])
async def test_readme_paths(tmp_path: Path, started: list[Served], how: str) -> None:
    """`serve example.yaml [--port P]`, then `token example.yaml`: the block's and the command's tokens work."""
    manifest = copy_example(tmp_path)
    port = free_port()
    flags: tuple[str, ...] = ("--port", str(port))
    env = {"MCP_APP_RESOURCE": ""}  # the manifest's default, http://127.0.0.1:8000/mcp
    if how == "manifest-port":  # the README's very first command, on a port of the test's own
        manifest.write_text(manifest.read_text().replace("8000", str(port)))
        flags = ()
    elif how == "port-flag-and-resource":  # "Set MCP_APP_RESOURCE=… for both serve and token"
        env = {"MCP_APP_RESOURCE": f"http://127.0.0.1:{port}/mcp"}
    started.append(served := serve(manifest, *flags, env=env))
    assert served.url == f"http://127.0.0.1:{port}/mcp"

    await add(served.url, served.token)
    printed = token(manifest, env=env)
    await add(served.url, printed)
    if flags:  # the same flags as serve's work too
        await add(served.url, token(manifest, *flags, env=env))
    if how == "port-flag-and-resource":  # the block's hint, run in a shell without the variable
        await add(served.url, token(manifest, env={"MCP_APP_RESOURCE": ""}))
    claims = jwt.decode(printed, options={"verify_signature": False})
    assert claims["iss"].startswith("urn:mcp-runner:local:")  # the key, not a port
    assert claims["iss"] == jwt.decode(served.token, options={"verify_signature": False})["iss"]

    # A clean stop removes the server's record: nothing is left to mislead the next `token`.
    served.stop()
    assert list((tmp_path / ".mcp-runner").glob("serving-*")) == []


async def test_any_port_and_two_servers(tmp_path: Path, started: list[Served]) -> None:
    """The audience is the served URL (no signin.resource) and the port is any free one."""
    copy_example(tmp_path)
    manifest = tmp_path / "bare.yaml"
    manifest.write_text(BARE)
    started.append(first := serve(manifest))
    await add(first.url, first.token)
    await add(first.url, token(manifest))

    # Two servers of one manifest: each takes its own --port, and without one `token` says which exist.
    started.append(second := serve(manifest, "--port", "0"))
    both = run_main("token", str(manifest), cwd=tmp_path)
    assert both.returncode == 2 and both.stdout == ""
    assert "2 servers of" in both.stderr and first.url in both.stderr and second.url in both.stderr
    for served, other in ((first, second), (second, first)):
        chosen = token(manifest, "--port", str(served.port))
        await add(served.url, chosen)
        assert post_initialize(other.url, chosen).status_code == 401  # another audience

    # A server killed outright leaves its record behind; the dead record must not count.
    second.proc.send_signal(signal.SIGKILL)
    second.proc.wait()
    await add(first.url, token(manifest))

    first.stop()
    gone = run_main("token", str(manifest), cwd=tmp_path)
    assert gone.returncode == 2 and gone.stdout == ""
    assert "no server of it is running" in gone.stderr and "--port" in gone.stderr


def test_token_refuses_port_zero(tmp_path: Path) -> None:
    manifest = copy_example(tmp_path)
    result = run_main("token", str(manifest), "--port", "0", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert "token --port 0 names no server" in result.stderr


async def test_server_wide_scopes_are_in_every_ready_token(tmp_path: Path, started: list[Served]) -> None:
    """`signin.scopes: [mcp]`: the block's token and the default token carry it; --scope adds."""
    copy_example(tmp_path)
    manifest = tmp_path / "scoped.yaml"
    manifest.write_text(SCOPED)
    started.append(served := serve(manifest, "--port", str(free_port())))

    await add(served.url, served.token)
    default = token(manifest)
    await add(served.url, default)
    assert jwt.decode(default, options={"verify_signature": False})["scope"] == "mcp"

    extra = token(manifest, "--scope", "extra")
    assert jwt.decode(extra, options={"verify_signature": False})["scope"] == "mcp extra"
    async with mcp_client(served.url, extra) as client:
        prompt = await client.get_prompt("greet_user", {"name": "Ann"})
        assert "Ann" in prompt.messages[0].content.text  # type: ignore[union-attr]
    async with mcp_client(served.url, default) as client:
        assert [p.name for p in (await client.list_prompts()).prompts] == []  # extra is not in the default

    # The metadata names no authorization server: the local issuer has no authorize or token
    # endpoint, so a client following one would only meet 404s.
    challenge = post_initialize(served.url, None)
    assert challenge.status_code == 401
    metadata_url = challenge.headers["www-authenticate"].split('resource_metadata="')[1].rstrip('"')
    document = loopback_get(metadata_url).json()
    assert document["resource"] == served.url and document["scopes_supported"] == ["mcp", "extra"]
    assert "authorization_servers" not in document
