"""Resource subscriptions with the real server and the SDK's client, in both protocol generations.

An update reaches exactly the sessions watching that URI: from a tool (`ctx.notify_resource_updated`),
from a background thread of the user's module (`runner.events.resource_updated`), and from a reload
that changed the resource's code, with no user code at all.
"""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import ResourceUpdatedNotification

from tests.helpers import Issuer, JWKSServer, RunnerProcess, edit_and_wait, loopback_get, mcp_client

pytestmark = [
    pytest.mark.anyio,
    # Handshake-era subscriptions are what these tests exercise, deliberately.
    pytest.mark.filterwarnings("ignore:resources/(un)?subscribe is removed as of 2026-07-28"),
]

GREET = """
from ev_helper import salutation


def greeting(name: str) -> str:
    return f"{salutation()} {name}"
"""
HELPER = 'def salutation() -> str:\n    return "Hello"\n'
TOOLS = """
import threading

from mcp.server.mcpserver import Context

from runner.events import resource_updated


def status() -> str:
    return "ok"


def secret() -> str:
    return "s3cret"


async def touch(uri: str, ctx: Context) -> str:
    await ctx.notify_resource_updated(uri)
    return uri


def touch_from_thread(uri: str) -> str:
    # A background thread of the user's module, outside any request.
    threading.Thread(target=resource_updated, args=(uri,)).start()
    return uri
"""
MANIFEST = """
name: events
signin:
  app_id: {app_id}
  base_url: {base_url}
  resource: {resource}
tools:
  - function: ev_tools:touch
  - function: ev_tools:touch_from_thread
resources:
  - uri: greeting://{{name}}
    function: ev_greet:greeting
  - uri: status://server
    function: ev_tools:status
  - uri: secret://vault
    function: ev_tools:secret
    scopes: [admin]
"""

ANN, BOB, STATUS = "greeting://ann", "greeting://bob", "status://server"


@dataclass
class Served:
    folder: Path
    runner: RunnerProcess
    issuer: Issuer

    def token(self, scope: str = "read write") -> str:
        return self.issuer.token(scope=scope)

    def health(self) -> dict[str, Any]:
        return loopback_get(f"http://127.0.0.1:{self.runner.port}/healthz").json()  # type: ignore[no-any-return]

    async def edit(self, name: str, text: str) -> None:
        health = await edit_and_wait(self.folder, self.runner.health_url, name, text)
        assert health["last_reload"]["result"] == "ok", health


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, jwks: JWKSServer) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("events")
    runner = RunnerProcess(folder / "events.yaml")
    (folder / "ev_greet.py").write_text(GREET)
    (folder / "ev_helper.py").write_text(HELPER)
    (folder / "ev_tools.py").write_text(TOOLS)
    manifest = MANIFEST.format(app_id=jwks.app_id, base_url=jwks.base_url, resource=runner.url)
    (folder / "events.yaml").write_text(textwrap.dedent(manifest))
    runner.start()
    yield Served(folder, runner, Issuer(base_url=jwks.base_url, resource=runner.url, key=jwks.keys[0]))
    runner.stop()


@dataclass
class Watcher:
    """One client session and the resource updates it heard, in order."""

    client: Client
    heard: list[str] = field(default_factory=list)
    changed: anyio.Event = field(default_factory=anyio.Event)

    def hear(self, uri: str) -> None:
        self.heard.append(uri)
        self.changed.set()
        self.changed = anyio.Event()

    async def until(self, uri: str) -> list[str]:
        """Wait (bounded) until `uri` was heard; everything heard so far."""
        with anyio.fail_after(20):
            while uri not in self.heard:
                await self.changed.wait()
        return list(self.heard)


@asynccontextmanager
async def legacy_watcher(served: Served, *uris: str, scope: str = "read write") -> AsyncIterator[Watcher]:
    """A handshake-era session subscribed to `uris` (resources/subscribe), its GET stream proven open."""
    box: list[Watcher] = []
    probe = f"greeting://probe-{uuid.uuid4().hex}"  # this session's own: nobody else touches it
    probed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            if str(message.params.uri) == probe:
                probed.set()
            elif box:
                box[0].hear(str(message.params.uri))

    async with mcp_client(served.runner.url, served.token(scope), mode="legacy", message_handler=on_message) as client:
        await client.subscribe_resource(probe)
        # The standing GET stream opens in the background: until a first update arrives, one may be lost.
        with anyio.fail_after(20):
            while not probed.is_set():
                await client.call_tool("touch", {"uri": probe})
                with anyio.move_on_after(0.2):
                    await probed.wait()
        await client.unsubscribe_resource(probe)
        box.append(Watcher(client))
        for uri in uris:
            await client.subscribe_resource(uri)
        yield box[0]


@asynccontextmanager
async def modern_watcher(served: Served, *uris: str) -> AsyncIterator[Watcher]:
    """A 2026-07-28 client with a `subscriptions/listen` stream for `uris`."""
    async with mcp_client(served.runner.url, served.token()) as client, anyio.create_task_group() as tasks:
        assert client.protocol_version == "2026-07-28"
        watcher = Watcher(client)
        async with client.listen(resource_subscriptions=list(uris)) as subscription:

            async def pump() -> None:
                async for event in subscription:
                    if isinstance(event, ResourceUpdated):
                        watcher.hear(event.uri)

            tasks.start_soon(pump)
            yield watcher
            tasks.cancel_scope.cancel()


async def test_legacy_update_reaches_only_subscribers_until_they_unsubscribe(served: Served) -> None:
    async with (
        legacy_watcher(served, ANN) as ann,
        legacy_watcher(served, BOB) as bob,
        mcp_client(served.runner.url, served.token(), mode="legacy") as caller,
    ):
        caps = caller.server_capabilities.resources
        assert caps is not None and caps.subscribe is True
        await caller.call_tool("touch", {"uri": ANN})
        await caller.call_tool("touch", {"uri": BOB})  # after ANN's: once bob heard it, ANN's was decided
        assert await ann.until(ANN) == [ANN]
        assert await bob.until(BOB) == [BOB]  # never ANN: bob does not watch it
        await ann.client.unsubscribe_resource(ANN)
        await ann.client.subscribe_resource(STATUS)
        await caller.call_tool("touch", {"uri": ANN})
        await caller.call_tool("touch", {"uri": STATUS})
        assert await ann.until(STATUS) == [ANN, STATUS]  # the second ANN never came


async def test_modern_update_reaches_only_listeners_of_that_uri(served: Served) -> None:
    async with modern_watcher(served, ANN) as ann, modern_watcher(served, BOB) as bob:
        caps = ann.client.server_capabilities.resources
        assert caps is not None and caps.subscribe is True
        await ann.client.call_tool("touch", {"uri": ANN})
        await ann.client.call_tool("touch", {"uri": BOB})
        assert await ann.until(ANN) == [ANN]
        assert await bob.until(BOB) == [BOB]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_update_from_a_background_thread(served: Served, mode: str) -> None:
    watching = legacy_watcher(served, ANN) if mode == "legacy" else modern_watcher(served, ANN)
    async with watching as ann:
        await ann.client.call_tool("touch_from_thread", {"uri": BOB})
        await ann.client.call_tool("touch_from_thread", {"uri": ANN})
        heard = await ann.until(ANN)
        assert BOB not in heard


async def test_only_readable_resources_can_be_watched(served: Served) -> None:
    async with mcp_client(served.runner.url, served.token(), mode="legacy") as client:
        for uri in ("nothing://here", "secret://vault"):  # unknown; needs the admin scope this token lacks
            with pytest.raises(MCPError) as caught:
                await client.subscribe_resource(uri)
            assert caught.value.error.code == -32602
            assert "Unknown resource" in caught.value.error.message
        for i in range(100):
            await client.subscribe_resource(f"greeting://n{i}")
        with pytest.raises(MCPError, match="at most 100 resources"):
            await client.subscribe_resource("greeting://one-too-many")
        await client.subscribe_resource("greeting://n0")  # one already watched is no new subscription
    async with mcp_client(served.runner.url, served.token()) as client:
        async with client.listen(resource_subscriptions=[ANN, "secret://vault", "nothing://here"]) as subscription:
            assert subscription.honored is not None
            assert subscription.honored.resource_subscriptions == [ANN]
        async with mcp_client(served.runner.url, served.token("read admin")) as admin:
            async with admin.listen(resource_subscriptions=["secret://vault"]) as subscription:
                assert subscription.honored is not None
                assert subscription.honored.resource_subscriptions == ["secret://vault"]


async def test_reload_that_changes_a_resources_code_tells_its_subscribers(served: Served) -> None:
    """No user code: editing a module the resource depends on is an update; other resources hear nothing."""
    async with legacy_watcher(served, ANN, STATUS) as legacy, modern_watcher(served, ANN, STATUS) as modern:
        await served.edit("ev_helper.py", HELPER.replace("Hello", "Howdy"))
        assert await legacy.until(ANN) == [ANN]
        assert await modern.until(ANN) == [ANN]
        content = await legacy.client.read_resource(ANN)
        assert content.contents[0].text == "Howdy ann"  # type: ignore[union-attr]
        # A sentinel: once STATUS's own update arrives, the reload's events are all in, and none was STATUS's.
        await legacy.client.call_tool("touch", {"uri": STATUS})
        assert await legacy.until(STATUS) == [ANN, STATUS]
        assert await modern.until(STATUS) == [ANN, STATUS]
