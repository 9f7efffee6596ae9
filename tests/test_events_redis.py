"""Events across replicas over a real Redis: two `mcp-runner serve` processes on one manifest with `server.bus`.

An event published on one replica reaches subscribers on the other, in both protocol generations,
and the publishing replica's own clients hear it once. Redis going away costs no call, shows in
/healthz, and events resume when it is back.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.shared.subscriptions import ToolsListChanged
from mcp_types import ToolListChangedNotification

from tests.helpers import Issuer, JWKSServer, RunnerProcess, loopback_get, mcp_client, run_main
from tests.realredis import RedisServer
from tests.test_events import ANN, GREET, HELPER, MANIFEST, STATUS, TOOLS, Served, legacy_watcher, modern_watcher

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore:resources/(un)?subscribe is removed as of 2026-07-28"),
]

BUS = "server:\n  bus: ${EVENTS_BUS}\n"  # env-substituted, as any string value


@dataclass
class Replicas:
    folder: Path
    redis: RedisServer
    a: Served
    b: Served

    def health(self, replica: Served) -> dict[str, Any]:
        return loopback_get(f"http://127.0.0.1:{replica.runner.port}/healthz").json()  # type: ignore[no-any-return]

    async def until_bus(self, replica: Served, state: str) -> dict[str, Any]:
        with anyio.fail_after(30):
            while (bus := self.health(replica)["bus"])["state"] != state:
                await anyio.sleep(0.05)
        return bus  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, jwks: JWKSServer) -> Iterator[Replicas]:
    folder = tmp_path_factory.mktemp("replicas")
    redis = RedisServer().start()
    (folder / "ev_greet.py").write_text(GREET)
    (folder / "ev_helper.py").write_text(HELPER)
    (folder / "ev_tools.py").write_text(TOOLS)
    a = RunnerProcess(folder / "events.yaml", env={"EVENTS_BUS": redis.url})
    b = RunnerProcess(folder / "events.yaml", env={"EVENTS_BUS": redis.url})
    resource = a.url  # one audience for both replicas, as behind a balancer
    manifest = MANIFEST.format(app_id=jwks.app_id, base_url=jwks.base_url, resource=resource)
    (folder / "events.yaml").write_text(textwrap.dedent(manifest) + BUS)
    issuer = Issuer(base_url=jwks.base_url, resource=resource, key=jwks.keys[0])
    try:
        a.start()
        b.start()
        yield Replicas(folder, redis, Served(folder, a, issuer), Served(folder, b, issuer))
    finally:
        for runner in (a, b):
            if runner.proc is not None:
                runner.stop()
        redis.stop()


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_update_published_on_one_replica_reaches_the_other_once(replicas: Replicas, mode: str) -> None:
    a, b = replicas.a, replicas.b
    await replicas.until_bus(a, "connected")
    await replicas.until_bus(b, "connected")
    watch = legacy_watcher if mode == "legacy" else modern_watcher
    async with watch(a, ANN, STATUS) as on_a, watch(b, ANN, STATUS) as on_b:
        await on_a.client.call_tool("touch", {"uri": ANN})  # published on A
        assert await on_b.until(ANN) == [ANN]  # heard on B, through Redis
        # Redis keeps one order per channel: once A hears B's STATUS, any echo of A's own ANN came first.
        await on_b.client.call_tool("touch", {"uri": STATUS})
        assert await on_a.until(STATUS) == [ANN, STATUS]  # ANN once: A skips its own message


async def test_manifest_edit_reaches_listeners_on_every_replica(replicas: Replicas) -> None:
    a, b = replicas.a, replicas.b
    heard: list[str] = []
    legacy_heard = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, ToolListChangedNotification):
            heard.append("legacy")
            legacy_heard.set()

    async with (
        mcp_client(a.runner.url, a.token()) as modern,
        mcp_client(b.runner.url, b.token(), mode="legacy", message_handler=on_message) as legacy,
        modern.listen(tools_list_changed=True) as on_a,
    ):
        async with mcp_client(b.runner.url, b.token()) as modern_b, modern_b.listen(tools_list_changed=True) as on_b:
            await legacy.list_tools()
            text = (a.folder / "events.yaml").read_text()
            extra = "  - function: ev_tools:touch\n    name: poke\n"
            (a.folder / "events.yaml").write_text(text.replace("resources:\n", extra + "resources:\n"))
            with anyio.fail_after(30):
                assert isinstance(await on_a.__anext__(), ToolsListChanged)
                assert isinstance(await on_b.__anext__(), ToolsListChanged)
                await legacy_heard.wait()
            assert "poke" in {t.name for t in (await legacy.list_tools()).tools}
            assert "poke" in {t.name for t in (await modern.list_tools()).tools}
    assert replicas.health(a)["manifest_sha256"] == replicas.health(b)["manifest_sha256"]


async def test_redis_outage_costs_no_call_and_events_resume(replicas: Replicas) -> None:
    a, b = replicas.a, replicas.b
    await replicas.until_bus(a, "connected")
    failures: list[BaseException] = []
    calls = 0

    async with mcp_client(a.runner.url, a.token()) as caller_a, mcp_client(b.runner.url, b.token()) as caller_b:

        async def keep_calling() -> None:
            nonlocal calls
            while True:
                for caller in (caller_a, caller_b):
                    try:
                        result = await caller.call_tool("touch", {"uri": STATUS})
                        assert not result.is_error, result
                        calls += 1
                    except Exception as exc:  # every failed call is recorded, not raised
                        failures.append(exc)
                await anyio.sleep(0.01)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(keep_calling)
            outages = replicas.health(a)["bus"]["outages"]
            replicas.redis.stop()
            down = await replicas.until_bus(a, "disconnected")
            await replicas.until_bus(b, "disconnected")
            assert down["outages"] == outages + 1 and down["error"]
            before = calls
            with anyio.fail_after(30):
                while calls < before + 10:  # calls go on on both replicas while Redis is down
                    await anyio.sleep(0.05)
            replicas.redis.start()  # the same port
            await replicas.until_bus(a, "connected")
            await replicas.until_bus(b, "connected")
            tasks.cancel_scope.cancel()
    assert failures == []

    async with legacy_watcher(b, ANN) as on_b:  # events flow again, A to B
        await on_b.client.call_tool("touch", {"uri": STATUS})  # B's own, to be sure its session is live
        async with mcp_client(a.runner.url, a.token()) as caller:
            await caller.call_tool("touch", {"uri": ANN})
        assert ANN in await on_b.until(ANN)


async def test_bus_password_is_never_shown(tmp_path: Path) -> None:
    """An unreachable bus with a password: logged and reported with the password redacted; calls still work."""
    (tmp_path / "t.py").write_text("def add(a: int, b: int) -> int:\n    return a + b\n")
    closed = RedisServer().port  # nothing listens there
    url = f"redis://:s3cret-pw@127.0.0.1:{closed}/0"
    (tmp_path / "m.yaml").write_text("name: pw\nserver:\n  bus: ${EVENTS_BUS}\ntools:\n  - function: t:add\n")
    runner = RunnerProcess(tmp_path / "m.yaml", env={"EVENTS_BUS": url}, log=tmp_path / "server.log").start()
    try:
        with anyio.fail_after(30):
            while (bus := loopback_get(f"http://127.0.0.1:{runner.port}/healthz").json()["bus"])[
                "state"
            ] != "disconnected":
                await anyio.sleep(0.05)
        assert bus["url"] == f"redis://:***@127.0.0.1:{closed}/0"
        async with mcp_client(runner.url) as client:
            assert (await client.call_tool("add", {"a": 1, "b": 2})).structured_content == {"result": 3}
    finally:
        log = runner.stop()
    assert "s3cret-pw" not in log
    assert f"event bus redis://:***@127.0.0.1:{closed}/0 unreachable" in log

    (tmp_path / "m.yaml").write_text("name: pw\nserver:\n  bus: http://user:s3cret-pw@example.com\n")
    checked = run_main("check", str(tmp_path / "m.yaml"), cwd=tmp_path)
    assert checked.returncode == 2
    assert "m.yaml:3:8: " in checked.stderr and "must be a Redis URL" in checked.stderr
    assert "s3cret-pw" not in checked.stderr
