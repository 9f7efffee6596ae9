"""What a hostile or sloppy upstream (`upstreams:`, docs/upstreams.md "Limits") cannot do to the runner or its clients.

The upstream is tests/apps/hostile_upstream.py, raw JSON-RPC over stdio, mounted by a real `mcp-runner serve`
(one per module); clients are real MCP clients over real HTTP with real RS256 tokens from the loopback JWKS server.
Each test is one attack from the issue-21 security review, reproduced against the real server.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.helpers import (
    ROOT,
    Issuer,
    JWKSServer,
    RunnerProcess,
    mcp_client,
    run_main,
    wait_for_health,
)

pytestmark = pytest.mark.anyio

HOSTILE = ROOT / "tests" / "apps" / "hostile_upstream.py"


def manifest(jwks: JWKSServer, url: str, mark: str = "a") -> str:
    return (
        "name: front\nserver:\n  max_upstream_calls_per_client: 2\n"
        f"signin:\n  app_id: {jwks.app_id}\n  resource: {url}\n  base_url: {jwks.base_url}\n"
        f"upstreams:\n  - name: h\n    command: [{sys.executable}, {HOSTILE}]\n    env: {{MARK: {mark}}}\n"
        "    prefix: h_\n    timeout: 10\n"
    )


def connected(health: dict[str, object]) -> bool:
    return health.get("upstreams", {}).get("h", {}).get("state") == "connected"  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, jwks: JWKSServer) -> Iterator[tuple[RunnerProcess, str]]:
    """A runner mounting the hostile upstream, and a token for it."""
    runner = RunnerProcess(tmp_path_factory.mktemp("hostile") / "front.yaml")
    runner.manifest.write_text(manifest(jwks, runner.url))
    runner.start()
    yield runner, Issuer(base_url=jwks.base_url, resource=runner.url, key=jwks.keys[0]).token()
    runner.stop()


async def text(runner: RunnerProcess, token: str, tool: str, **arguments: object) -> str:
    await wait_for_health(runner.health_url, connected, "the hostile upstream connected")
    async with mcp_client(runner.url, token) as client:
        result = await client.call_tool(tool, arguments)
    assert not result.is_error, result
    return result.content[0].text  # type: ignore[union-attr,no-any-return]


async def client_tools(runner: RunnerProcess, token: str) -> list[Any]:
    async with mcp_client(runner.url, token) as client:
        return (await client.list_tools()).tools


async def logged(runner: RunnerProcess, wanted: str) -> str:
    """The runner's log once it has `wanted` (bounded)."""
    with anyio.fail_after(30):
        while wanted not in (log := runner.logged()):
            await anyio.sleep(0.05)
    return log


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie nobody reaped yet counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


async def gone(pid: int) -> None:
    with anyio.fail_after(30):
        while alive(pid):
            await anyio.sleep(0.05)


async def test_an_upstreams_children_die_with_it_and_with_the_runner(tmp_path: Path, jwks: JWKSServer) -> None:
    """F7: what the command starts (npx -> node) ends when the command exits, and after `kill -9` of the runner."""
    runner = RunnerProcess(tmp_path / "front.yaml")
    runner.manifest.write_text(manifest(jwks, runner.url))
    runner.start()
    try:
        token = Issuer(base_url=jwks.base_url, resource=runner.url, key=jwks.keys[0]).token()
        first = int(await text(runner, token, "h_spawn"))
        assert alive(first)
        assert await text(runner, token, "h_crash") == "exiting"
        await gone(first)  # the command exited: its group went with it
        again = "the upstream started again"
        await wait_for_health(runner.health_url, lambda h: h["upstreams"]["h"]["connects"] == 2 and connected(h), again)
        second = int(await text(runner, token, "h_spawn"))  # started again
        assert runner.proc is not None
        os.kill(runner.proc.pid, signal.SIGKILL)
        await gone(second)
    finally:
        runner.stop()


async def test_a_giant_message_marks_the_upstream_down_and_is_never_forwarded(
    hostile: tuple[RunnerProcess, str],
) -> None:
    """F2: one stdout line past 4 MiB is refused (the upstream is down, saying why); 1 MiB still passes; a listing
    (its pages together) past 4 MiB or 2000 items is refused, the served one stays."""
    runner, token = hostile
    await wait_for_health(runner.health_url, connected, "the hostile upstream connected")
    async with mcp_client(runner.url, token) as client:
        result = await client.call_tool("h_big", {"mb": 5})
    refused = result.content[0].text  # type: ignore[union-attr]
    assert result.is_error and refused == "upstream 'h' failed: its connection closed during the call", refused[:200]
    await logged(runner, "upstream 'h': down (MessageTooLarge: a message larger than 4 MiB)")
    assert len(await text(runner, token, "h_big", mb=1)) == 1048576

    assert await text(runner, token, "h_bloat") == "bloated"  # 3 pages of 1.5 MiB: each fits, the listing does not
    await logged(runner, "cannot list tools again (ListingTooLarge: its tools listing is larger than 4 MiB)")
    assert await text(runner, token, "h_bloat", many=True) == "bloated"
    await logged(runner, "upstream 'h': cannot list tools again (ListingTooLarge: it lists more than 2000 tools)")
    assert "h_spawn" in {tool.name for tool in (await client_tools(runner, token))}  # the last listing stays


async def test_an_upstreams_stderr_is_logged_escaped_cut_and_rate_limited(hostile: tuple[RunnerProcess, str]) -> None:
    """F9: a forged log line, an ANSI escape and a flood on the upstream's stderr reach the log only as its lines."""
    runner, token = hostile
    assert await text(runner, token, "h_noise", lines=100) == "ok"
    log = await logged(runner, "upstream 'h' stderr: over 20 lines a second: dropping")
    assert "upstream 'h' stderr: '2026-12-07 14:00:00,000 CRITICAL runner: auth: token accepted" in log
    assert "\n2026-12-07 14:00:00,000 CRITICAL" not in log and not log.startswith("2026-12-07 14:00:00,000")
    assert "\x1b" not in log and "'\\x1b[2J\\x1b[31mterminal cleared\\x1b[0m'" in log
    assert "E" * 500 in log and "E" * 501 not in log
    assert "'noise 99'" not in log  # over the rate


async def test_hostile_tool_names_are_not_served(hostile: tuple[RunnerProcess, str]) -> None:
    """F13: only names matching `[A-Za-z0-9_.-]{1,128}` (with the prefix) reach clients; the others are said once."""
    runner, token = hostile
    await wait_for_health(runner.health_url, connected, "the hostile upstream connected")
    async with mcp_client(runner.url, token) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"h_spawn", "h_ok.name-1", "h_" + "a" * 126} <= names
        assert all(name.startswith("h_") and "\n" not in name and "\x1b" not in name for name in names), names
        assert not any(len(name) > 128 for name in names)
        refused = await client.call_tool("h_esc\x1b[2J\x1b[31mred", {})
        assert refused.is_error and "Unknown tool" in refused.content[0].text  # type: ignore[union-attr]
    log = await logged(runner, "'h_esc\\x1b[2J\\x1b[31mred'")
    assert "'h_evil\\n2026-12-07 14:00:00,000 CRITICAL runner: forged'" in log and "\x1b" not in log


async def test_a_list_changed_storm_is_coalesced(hostile: tuple[RunnerProcess, str]) -> None:
    """F12: 200 tools/list_changed from the upstream cost a few re-lists, not 200; the change still reaches clients."""
    runner, token = hostile
    before = int(await text(runner, token, "h_lists"))
    assert await text(runner, token, "h_storm", count=200, grow=True) == "stormed"
    async with mcp_client(runner.url, token) as client:
        with anyio.fail_after(30):
            while "h_grown0" not in {tool.name for tool in (await client.list_tools()).tools}:
                await anyio.sleep(0.05)
    assert int(await text(runner, token, "h_lists")) - before <= 3


def test_a_header_value_with_a_control_character_is_refused_at_load_never_shown(tmp_path: Path) -> None:
    """F10: `K=$(cat token.txt)` ends in a newline: `check` names the header, never its value."""
    path = tmp_path / "m.yaml"
    path.write_text('name: m\nupstreams:\n  - name: up\n    url: http://127.0.0.1:9/mcp\n    headers: {X-K: "${K}"}\n')
    result = run_main("check", str(path), "--offline", env={"K": "SECRETVALUE-0123\n"}, cwd=tmp_path)
    assert result.returncode == 2, result
    assert f"{path}:5:" in result.stderr and "header 'X-K'" in result.stderr, result.stderr
    assert "SECRETVALUE" not in result.stderr + result.stdout


def test_a_refused_header_is_never_echoed_in_the_reason() -> None:
    """F10: what httpx2 says of a header it refuses carries the value; the upstream's reason does not."""
    import httpx2

    from runner.upstreams.connection import reason

    said = reason(httpx2.LocalProtocolError("Illegal header value b'SECRETVALUE-0123\\n'"))
    assert "SECRETVALUE" not in said and said.startswith("LocalProtocolError")


async def test_one_clients_calls_cannot_lock_the_others_out(
    hostile: tuple[RunnerProcess, str], jwks: JWKSServer
) -> None:
    """F4: a client's calls in flight to one upstream are bounded (here 2); past it, refused at once; others go on."""
    runner, _ = hostile
    issuer = Issuer(base_url=jwks.base_url, resource=runner.url, key=jwks.keys[0])
    await wait_for_health(runner.health_url, connected, "the hostile upstream connected")
    answers: list[str] = []
    async with (
        mcp_client(runner.url, issuer.token(sub="greedy")) as greedy,
        mcp_client(runner.url, issuer.token(sub="other")) as other,
        anyio.create_task_group() as tasks,
    ):

        async def hold() -> None:
            answers.append((await greedy.call_tool("h_hold", {})).content[0].text)  # type: ignore[union-attr]

        async def said(client: Any, tool: str) -> str:
            result = await client.call_tool(tool, {})
            assert not result.is_error, result
            return result.content[0].text  # type: ignore[no-any-return]

        tasks.start_soon(hold)
        tasks.start_soon(hold)
        with anyio.fail_after(30):
            while await said(other, "h_holding") != "2":
                await anyio.sleep(0.02)
            refused = await greedy.call_tool("h_hold", {})  # a third: refused at once, never held
        refusal = refused.content[0].text  # type: ignore[union-attr]
        assert refused.is_error and "server.max_upstream_calls_per_client" in refusal, refusal
        assert await said(other, "h_lists")  # another client is served meanwhile
        assert await said(other, "h_release") == "2"
    assert answers == ["released", "released"]
