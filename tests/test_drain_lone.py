"""A lone server's clients survive its drain: an SDK client connected straight to one `mcp-runner serve`
(no balancer to send it elsewhere) with a call in flight at SIGTERM or Ctrl-C gets the call's result and
no error, and its standing stream ends the way the SDK reads as a graceful close.

Before the fix, the client lost the call although the server finished it: the handshake-era client, as
the SDK does for a tool it has not listed, lists the tools before it returns a call's result, and met a
closed socket (`ConnectError`); a 2026-07-28 client's `subscriptions/listen` stream was cut at once
(`SubscriptionLost`), and with it the task group its call ran in. `hold` keeps a call open until the
test releases it, so "a call in flight at the signal" is a condition, not a timing.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import mcp_types as types
import pytest
from mcp.shared.subscriptions import ResourceUpdated

from tests.helpers import INITIALIZE, Issuer, JWKSServer, RunnerProcess, mcp_client, stop_process
from tests.realredis import RedisServer
from tests.scale import wait_until

pytestmark = pytest.mark.anyio

MANIFEST = """\
name: lone drain
signin:
  app_id: ${MCP_APP_ID}
  base_url: ${JWKS_BASE}
  resource: ${MCP_APP_RESOURCE}
tools:
  - function: lone_tools:hold
  - function: lone_tools:touch
  - function: lone_tools:ask_later
  - function: lone_tools:book
resources:
  - uri: note://{name}
    function: lone_tools:note
"""
BUS = "server:\n  bus: ${EVENTS_BUS}\n"

TOOLS = '''\
"""A call the test holds open, and one that says a resource changed."""

import os
import time
from pathlib import Path
from typing import Annotated

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Elicit, Resolve
from pydantic import BaseModel


async def hold(name: str) -> str:
    """Mark `name`.started, then wait for `name`.release (at most 60 s)."""
    folder = Path(os.environ["HOLD_DIR"])
    (folder / f"{name}.started").touch()
    with anyio.move_on_after(60):
        while not (folder / f"{name}.release").exists():
            await anyio.sleep(0.02)
    return f"{name} done"


class Name(BaseModel):
    name: str


async def ask_later(ctx: Context) -> str:
    """Wait for ask.release, then ask the client for a name (elicitation)."""
    folder = Path(os.environ["HOLD_DIR"])
    (folder / "ask.started").touch()
    with anyio.move_on_after(60):
        while not (folder / "ask.release").exists():
            await anyio.sleep(0.02)
    answer = await ctx.elicit("Your name?", Name)
    return f"{answer.action}: {answer.data.name if answer.data else '-'}"


class Booking(BaseModel):
    guests: int


def ask_booking() -> Elicit[Booking]:
    """Wait for book.release, then ask how many guests (a resolver: on 2026-07-28, a round of its own)."""
    folder = Path(os.environ["HOLD_DIR"])
    (folder / "book.started").touch()
    deadline = time.monotonic() + 60
    while not (folder / "book.release").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return Elicit("How many guests?", Booking)


def book(booking: Annotated[Booking, Resolve(ask_booking)]) -> str:
    """Book a table."""
    return f"booked for {booking.guests}"


async def touch(uri: str, ctx: Context) -> str:
    """Tell subscribers that `uri` changed."""
    await ctx.notify_resource_updated(uri)
    return uri


def note(name: str) -> str:
    """A note."""
    return name
'''


@dataclass
class Lone:
    folder: Path
    runner: RunnerProcess
    issuer: Issuer

    @property
    def hold(self) -> Path:
        return self.folder / "hold"

    def token(self) -> str:
        return self.issuer.token()

    def draining(self) -> bool:
        return "draining (replica" in self.runner.logged()


def serve(folder: Path, jwks: JWKSServer, bus: str | None = None, resource: str | None = None) -> Lone:
    """One server (not started) of the test manifest in `folder`, with real RS256 tokens from `jwks`."""
    folder.mkdir(exist_ok=True)
    (folder / "hold").mkdir(exist_ok=True)
    (folder / "lone_tools.py").write_text(TOOLS)
    (folder / "lone.yaml").write_text(MANIFEST + (BUS if bus else ""))
    runner = RunnerProcess(folder / "lone.yaml", extra=("--no-reload",))
    resource = resource or runner.url
    runner.env = {
        "MCP_APP_ID": jwks.app_id,
        "JWKS_BASE": jwks.base_url,
        "MCP_APP_RESOURCE": resource,
        "HOLD_DIR": str(folder / "hold"),
        **({"EVENTS_BUS": bus} if bus else {}),
    }
    return Lone(folder, runner, Issuer(base_url=jwks.base_url, resource=resource, key=jwks.keys[0]))


@pytest.fixture
def lone(tmp_path: Path, jwks: JWKSServer) -> Iterator[Lone]:
    served = serve(tmp_path, jwks)
    served.runner.start()
    yield served
    if served.runner.proc is not None and served.runner.proc.poll() is None:
        stop_process(served.runner.proc)


def post(url: str, token: str, method: str, params: dict[str, object]) -> httpx2.Response:
    """A 2026-07-28 request on a connection of its own, as a client that arrives now would send it."""
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": {**params, "_meta": meta}}
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "Mcp-Protocol-Version": "2026-07-28",
        "Mcp-Method": method,
        **({"Mcp-Name": str(params["name"])} if "name" in params else {}),
    }
    return httpx2.post(url, json=body, headers=headers, timeout=30)


def refusing(url: str, token: str, call: str = "touch", arguments: dict[str, object] | None = None) -> bool:
    """Whether the server at `url` now refuses new work: a new call is not taken (503, or a refused
    connection). The call runs if it is taken: one that does no harm."""
    params = {"name": call, "arguments": {"uri": "note://probe"} if arguments is None else arguments}
    try:
        return post(url, token, "tools/call", params).status_code == 503
    except httpx2.ConnectError:
        return True


EXIT = {signal.SIGTERM: 0, signal.SIGINT: 130}  # Ctrl-C: the shell's 128 + SIGINT


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_call_in_flight_at_the_signal_returns_its_result(lone: Lone, mode: str, sig: signal.Signals) -> None:
    """A plain SDK client (it never listed the tools) with a call in flight, and, on 2026-07-28, a listen
    stream in the same task group: the call returns its result, the stream ends gracefully, no error."""
    proc = lone.runner.proc
    assert proc is not None
    results: list[str] = []
    ends: list[str] = []
    async with mcp_client(lone.runner.url, lone.token(), mode=mode) as client:
        listening = anyio.Event()

        async def listen() -> None:
            async with client.listen(tools_list_changed=True) as subscription:
                listening.set()
                async for _ in subscription:
                    pass
            ends.append("graceful")  # SubscriptionLost would have raised out of the task group

        async def call() -> None:
            result = await client.call_tool("hold", {"name": "signal"})
            assert not result.is_error, result
            results.append(str(result.structured_content["result"]))

        async with anyio.create_task_group() as tasks:
            if mode != "legacy":
                tasks.start_soon(listen)
                with anyio.fail_after(30):
                    await listening.wait()
            tasks.start_soon(call)
            await anyio.to_thread.run_sync(wait_until, (lone.hold / "signal.started").exists, "the call to start")
            proc.send_signal(sig)
            token = lone.token()  # the server has done what it does at the signal: it takes no new call
            await anyio.to_thread.run_sync(
                wait_until, lambda: refusing(lone.runner.url, token), "new work to be refused"
            )
            (lone.hold / "signal.release").touch()
    assert results == ["signal done"]
    assert ends == ([] if mode == "legacy" else ["graceful"])
    assert await anyio.to_thread.run_sync(proc.wait, 30) == EXIT[sig]
    if mode != "legacy":
        assert "ended 1 standing stream(s) gracefully" in lone.runner.logged()


async def answered_across_sigterm(lone: Lone, token: str, mode: str, answer: Any, tool: str, hold: str) -> list[object]:
    """Call `tool` (it asks, then waits on `hold`), send SIGTERM while it is in flight, let it finish once
    new work is refused: the structured results the client got."""
    proc = lone.runner.proc
    assert proc is not None
    results: list[object] = []
    async with mcp_client(lone.runner.url, token, mode=mode, elicitation_callback=answer) as client:
        async with anyio.create_task_group() as tasks:

            async def call() -> None:
                results.append((await client.call_tool(tool, {})).structured_content)

            tasks.start_soon(call)
            await anyio.to_thread.run_sync(wait_until, (lone.hold / f"{hold}.started").exists, f"{tool} to start")
            proc.send_signal(signal.SIGTERM)
            await anyio.to_thread.run_sync(wait_until, lambda: refusing(lone.runner.url, token), "new work refused")
            (lone.hold / f"{hold}.release").touch()
    return results


async def test_a_call_that_asks_the_user_during_the_drain_gets_the_answer(lone: Lone) -> None:
    """A handshake-era call in flight at SIGTERM that then asks the user: the client's answer (a POST,
    on a new connection if need be) is a follow-up the draining server takes, and the call completes."""
    proc = lone.runner.proc
    assert proc is not None
    token = lone.token()

    async def answer_ann(context: object, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"name": "Ann"})

    results = await answered_across_sigterm(lone, token, "legacy", answer_ann, "ask_later", "ask")
    assert results == [{"result": "accept: Ann"}]
    assert await anyio.to_thread.run_sync(proc.wait, 30) == 0


async def test_a_multi_round_call_in_flight_at_the_signal_gets_its_next_round(lone: Lone) -> None:
    """A 2026-07-28 call whose first round is in flight at SIGTERM answers `input_required`; the client's
    next round (the same call, with the user's answer and `requestState`) is taken, and the call completes."""
    proc = lone.runner.proc
    assert proc is not None
    token = lone.token()

    async def four_guests(context: object, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"guests": 4})

    results = await answered_across_sigterm(lone, token, "2026-07-28", four_guests, "book", "book")
    assert results == [{"result": "booked for 4"}]
    assert await anyio.to_thread.run_sync(proc.wait, 30) == 0


async def test_new_work_is_refused_while_follow_ups_are_answered(lone: Lone) -> None:
    """During the drain, a call that was not in flight is refused with 503 and `Connection: close` (a
    balancer sends it to another replica), on a new connection too: the socket is still open for the
    follow-ups, such as the listing an SDK client sends after a call, which is answered."""
    proc = lone.runner.proc
    assert proc is not None
    token = lone.token()
    auth = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    opened = httpx2.post(lone.runner.url, json=INITIALIZE, headers=auth, timeout=30)  # a handshake-era session
    session = {**auth, "Mcp-Session-Id": opened.headers["mcp-session-id"], "Mcp-Protocol-Version": "2025-06-18"}
    async with mcp_client(lone.runner.url, token, mode="2026-07-28") as client, anyio.create_task_group() as tasks:
        tasks.start_soon(client.call_tool, "hold", {"name": "busy"})
        await anyio.to_thread.run_sync(wait_until, (lone.hold / "busy.started").exists, "the call to start")
        proc.send_signal(signal.SIGTERM)
        await anyio.to_thread.run_sync(wait_until, lambda: refusing(lone.runner.url, token), "new work to be refused")
        refused = await anyio.to_thread.run_sync(
            post, lone.runner.url, token, "tools/call", {"name": "touch", "arguments": {"uri": "note://a"}}
        )
        assert refused.status_code == 503, refused.text
        assert refused.headers["connection"] == "close" and refused.headers["retry-after"] == "1"
        listed = await anyio.to_thread.run_sync(post, lone.runner.url, token, "tools/list", {})
        assert listed.status_code == 200 and '"hold"' in listed.text, listed.text
        # The next round of a multi-round call (it carries requestState) belongs to a call begun before the
        # drain: taken, so the SDK judges it (this state is made up, and refused as such), not the drain.
        arguments = {"uri": "note://a"}
        next_round = {"name": "touch", "arguments": arguments, "requestState": "made-up", "inputResponses": {}}
        taken = await anyio.to_thread.run_sync(post, lone.runner.url, token, "tools/call", next_round)
        assert taken.status_code != 503 and "Invalid or expired requestState" in taken.text, taken.text
        # Within a session, which ends with this server: the spec's 404, so that the client starts a new one.
        call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "touch", "arguments": {"uri": "x"}},
        }
        gone = await anyio.to_thread.run_sync(lambda: httpx2.post(lone.runner.url, json=call, headers=session))
        assert gone.status_code == 404 and gone.json()["error"]["message"] == "Session not found", gone.text
        (lone.hold / "busy.release").touch()
    assert await anyio.to_thread.run_sync(proc.wait, 30) == 0


async def test_a_listener_hears_the_bus_until_the_graceful_close(tmp_path: Path, jwks: JWKSServer) -> None:
    """With `server.bus`, the draining replica's listen stream stays open while its calls finish: an
    event published on another replica meanwhile reaches it, and then the stream ends gracefully."""
    redis = RedisServer().start()
    a = serve(tmp_path / "a", jwks, bus=redis.url)
    b = serve(tmp_path / "b", jwks, bus=redis.url, resource=a.runner.url)  # one audience, as behind a balancer
    b.runner.env["HOLD_DIR"] = str(a.hold)
    try:
        a.runner.start()
        b.runner.start()
        proc = a.runner.proc
        assert proc is not None
        heard: list[str] = []
        ends: list[str] = []
        async with (
            mcp_client(a.runner.url, a.token()) as on_a,
            mcp_client(b.runner.url, a.token()) as on_b,
            anyio.create_task_group() as tasks,
        ):
            async with on_a.listen(resource_subscriptions=["note://probe", "note://during"]) as subscription:

                async def pump() -> None:
                    async for event in subscription:
                        if isinstance(event, ResourceUpdated):
                            heard.append(event.uri)
                    ends.append("graceful")

                tasks.start_soon(pump)
                with anyio.fail_after(30):  # A hears B through Redis: the bus is up on both
                    while "note://probe" not in heard:
                        await on_b.call_tool("touch", {"uri": "note://probe"})
                        await anyio.sleep(0.1)
                tasks.start_soon(on_a.call_tool, "hold", {"name": "bus"})
                await anyio.to_thread.run_sync(wait_until, (a.hold / "bus.started").exists, "the call to start")
                proc.send_signal(signal.SIGTERM)
                await anyio.to_thread.run_sync(wait_until, a.draining, "the drain to start")
                await on_b.call_tool("touch", {"uri": "note://during"})  # published on B while A drains
                with anyio.fail_after(30):
                    while "note://during" not in heard:
                        await anyio.sleep(0.02)
                (a.hold / "bus.release").touch()
                with anyio.fail_after(30):
                    while not ends:
                        await anyio.sleep(0.02)
        assert ends == ["graceful"]
        assert await anyio.to_thread.run_sync(proc.wait, 30) == 0
    finally:
        for runner in (a.runner, b.runner):
            if runner.proc is not None and runner.proc.poll() is None:
                stop_process(runner.proc)
        redis.stop()
