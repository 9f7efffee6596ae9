"""Lists changed at run time (not by a reload) reach listening clients of both protocol generations.

A tool adds or removes a tool, a prompt or a resource through the SDK's public methods on
`ctx.mcp_server`; a 2026-07-28 client holding a `subscriptions/listen` stream and a handshake-era
client holding its GET stream both hear the list change, with no `ctx.notify_*` call in the code.
A later reload that drops what was added at run time tells them too.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.subscriptions import PromptsListChanged, ResourcesListChanged, ToolsListChanged
from mcp_types import PromptListChangedNotification, ResourceListChangedNotification, ToolListChangedNotification

from tests.helpers import RunnerProcess, edit_and_wait, healthz, mcp_client
from tests.realredis import RedisServer

pytestmark = pytest.mark.anyio

MODULE = '''
from mcp.server.mcpserver import Context


def echo(text: str) -> str:
    """Echo the text back."""
    return text


def grow(name: str, ctx: Context) -> str:
    """Add a tool (a sync tool: this runs on a worker thread, not the event loop)."""
    ctx.mcp_server.add_tool(echo, name=name)
    return f"added {name}"


async def shrink(name: str, ctx: Context) -> str:
    ctx.mcp_server.remove_tool(name)
    return f"removed {name}"


def note(topic: str) -> str:
    return f"Write a note about {topic}."


async def add_prompt(ctx: Context) -> str:
    ctx.mcp_server.prompt(name="note")(note)
    return "added"


async def drop_prompt(ctx: Context) -> str:
    ctx.mcp_server.remove_prompt("note")
    return "removed"


def memo(id: str) -> str:
    return f"memo {id}"


def today() -> str:
    return "today"


async def add_resources(ctx: Context) -> str:
    ctx.mcp_server.resource("memo://{id}")(memo)
    ctx.mcp_server.resource("memo://today")(today)
    return "added"


async def poke(ctx: Context) -> str:
    await ctx.notify_resources_changed()
    return "poked"
'''

MANIFEST = """
name: lists
tools:
  - function: lc_tools:grow
  - function: lc_tools:shrink
  - function: lc_tools:add_prompt
  - function: lc_tools:drop_prompt
  - function: lc_tools:add_resources
  - function: lc_tools:poke
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    folder = tmp_path_factory.mktemp("lists")
    (folder / "lc_tools.py").write_text(textwrap.dedent(MODULE))
    (folder / "lists.yaml").write_text(MANIFEST)
    runner = RunnerProcess(folder / "lists.yaml").start()
    yield runner
    runner.stop()


@dataclass
class Heard:
    """The list kinds one client heard changed, in order."""

    kinds: list[str] = field(default_factory=list)
    changed: anyio.Event = field(default_factory=anyio.Event)

    def hear(self, kind: str) -> None:
        self.kinds.append(kind)
        self.changed.set()
        self.changed = anyio.Event()

    async def until(self, kind: str) -> None:
        """Wait (bounded) until `kind` was heard, then forget what was heard."""
        with anyio.fail_after(20):
            while kind not in self.kinds:
                await self.changed.wait()
        self.kinds.clear()


LEGACY = {
    ToolListChangedNotification: "tools",
    PromptListChangedNotification: "prompts",
    ResourceListChangedNotification: "resources",
}
MODERN = {ToolsListChanged: "tools", PromptsListChanged: "prompts", ResourcesListChanged: "resources"}


@dataclass
class Clients:
    legacy: Client
    modern: Client
    caller: Client
    heard_legacy: Heard
    heard_modern: Heard

    async def call(self, tool: str, **arguments: Any) -> str:
        result = await self.caller.call_tool(tool, arguments)
        assert not result.is_error, result
        return result.content[0].text  # type: ignore[union-attr,no-any-return]

    async def both_hear(self, kind: str) -> None:
        await self.heard_legacy.until(kind)
        await self.heard_modern.until(kind)


@asynccontextmanager
async def listening(served: RunnerProcess) -> AsyncIterator[Clients]:
    heard_legacy, heard_modern = Heard(), Heard()

    async def on_message(message: Any) -> None:
        if type(message) in LEGACY:
            heard_legacy.hear(LEGACY[type(message)])

    async with (
        mcp_client(served.url, mode="legacy", message_handler=on_message) as legacy,
        mcp_client(served.url) as modern,
        mcp_client(served.url) as caller,
        anyio.create_task_group() as tasks,
    ):
        tools = legacy.server_capabilities.tools
        assert tools is not None and tools.list_changed  # advertised, so the client listens for them
        assert modern.protocol_version == "2026-07-28"
        # The standing GET stream opens in the background: until a first event arrives, one may be lost.
        with anyio.fail_after(20):
            while "resources" not in heard_legacy.kinds:
                await caller.call_tool("poke", {})
                with anyio.move_on_after(0.2):
                    await heard_legacy.changed.wait()
        heard_legacy.kinds.clear()
        async with modern.listen(
            tools_list_changed=True, prompts_list_changed=True, resources_list_changed=True
        ) as subscription:

            async def pump() -> None:
                async for event in subscription:
                    if type(event) in MODERN:
                        heard_modern.hear(MODERN[type(event)])

            tasks.start_soon(pump)
            yield Clients(legacy, modern, caller, heard_legacy, heard_modern)
            tasks.cancel_scope.cancel()


async def names(client: Client, kind: str) -> set[str]:
    if kind == "tools":
        return {t.name for t in (await client.list_tools()).tools}
    if kind == "prompts":
        return {p.name for p in (await client.list_prompts()).prompts}
    listed = {str(r.uri) for r in (await client.list_resources()).resources}
    return listed | {t.uri_template for t in (await client.list_resource_templates()).resource_templates}


async def test_tools_prompts_and_resources_changed_at_run_time_reach_both_generations(served: RunnerProcess) -> None:
    async with listening(served) as clients:
        assert await clients.call("grow", name="shout") == "added shout"
        await clients.both_hear("tools")
        for client in (clients.legacy, clients.modern):
            assert "shout" in await names(client, "tools")
            assert (await client.call_tool("shout", {"text": "hi"})).content[0].text == "hi"  # type: ignore[union-attr]

        assert await clients.call("shrink", name="shout") == "removed shout"
        await clients.both_hear("tools")
        assert "shout" not in await names(clients.legacy, "tools")
        assert "shout" not in await names(clients.modern, "tools")

        await clients.call("add_prompt")
        await clients.both_hear("prompts")
        assert await names(clients.modern, "prompts") == {"note"}
        await clients.call("drop_prompt")
        await clients.both_hear("prompts")
        assert await names(clients.legacy, "prompts") == set()

        await clients.call("add_resources")
        await clients.both_hear("resources")
        assert await names(clients.modern, "resources") == {"memo://{id}", "memo://today"}


async def test_a_reload_that_drops_a_tool_added_at_run_time_tells_clients(served: RunnerProcess) -> None:
    async with listening(served) as clients:
        await clients.call("grow", name="ephemeral")
        await clients.both_hear("tools")
        assert "ephemeral" in await names(clients.legacy, "tools")
        # An edit that changes nothing in the manifest's lists: the reload serves the manifest's tools,
        # so the one added at run time is gone, and clients that saw it must hear so.
        health = await edit_and_wait(served.manifest.parent, served.health_url, "lists.yaml", MANIFEST + "# edited\n")
        # (`resources -…` too, when the other test added some at run time before this one)
        assert health["last_reload"]["changes"].startswith("tools -ephemeral"), health
        await clients.both_hear("tools")
        assert "ephemeral" not in await names(clients.legacy, "tools")
        assert "ephemeral" not in await names(clients.modern, "tools")


async def test_with_server_bus_a_listener_on_another_replica_hears_it(tmp_path: Path) -> None:
    """A 2026-07-28 client's calls and its listen stream may land on different replicas: the news travels."""
    redis = RedisServer().start()
    (tmp_path / "lc_tools.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "lists.yaml").write_text(MANIFEST + "server:\n  bus: ${LISTS_BUS}\n")
    a = RunnerProcess(tmp_path / "lists.yaml", env={"LISTS_BUS": redis.url})
    b = RunnerProcess(tmp_path / "lists.yaml", env={"LISTS_BUS": redis.url})
    try:
        a.start()
        b.start()
        with anyio.fail_after(30):
            while any(healthz(r.health_url)["bus"]["state"] != "connected" for r in (a, b)):
                await anyio.sleep(0.05)
        async with mcp_client(b.url) as on_b, on_b.listen(tools_list_changed=True) as subscription:
            async with mcp_client(a.url) as on_a:
                assert not (await on_a.call_tool("grow", {"name": "shout"})).is_error
            with anyio.fail_after(20):
                assert isinstance(await subscription.__anext__(), ToolsListChanged)
    finally:
        for runner in (a, b):
            if runner.proc is not None:
                runner.stop()
        redis.stop()
