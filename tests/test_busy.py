"""One bound on requests in flight per client (runner/http/busy.py), for upstreams and OpenAPI APIs alike.

A real runner (one per module) mounts an HTTP upstream whose `hold` requests answer only when released
(tests/apps/held_upstream.py, plain SDK) and an API whose /hold does the same (`HeldAPI`, Starlette on
loopback); clients are real MCP clients over real HTTP with real RS256 tokens from the loopback JWKS server.
`server.max_upstream_calls_per_client` is 2 here. Each test holds requests, then looks at what the held
server counts and at what the clients got: never at how long anything took.
"""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.apps.openapi.pets_api import PetsAPI
from tests.helpers import (
    ROOT,
    Issuer,
    JWKSServer,
    RunnerProcess,
    free_port,
    mcp_client,
    run_main,
    stop_process,
    wait_for_health,
    wait_for_port,
)

pytestmark = pytest.mark.anyio

HELD_UPSTREAM = ROOT / "tests" / "apps" / "held_upstream.py"
PER_CLIENT = 2
MAX_CALLS = 64  # runner/http/busy.py: in flight to one upstream or API, all clients together
MAX_CALLS_PER_SUBJECT = 32  # and of one token subject, over all its client ids
KEPT_IDLE = 8  # runner/upstreams/wire.py: idle connections kept per pool
OTHER_CONNECTIONS = 3  # an entry's other connections to its upstream: its SDK client's GET stream and POST, a ping
DOCUMENT = """\
openapi: 3.1.0
info: {title: held, version: "1"}
paths:
  /hold: {get: {operationId: hold}}
  /text: {get: {operationId: text}}
"""


def busy(kind: str, name: str) -> str:
    return (
        f"server busy: this client has {PER_CLIENT} calls in flight to {kind} {name!r} already "
        "(server.max_upstream_calls_per_client); try again when one has finished"
    )


@dataclass
class HeldAPI(PetsAPI):
    """An API whose /v1/hold answers only at `release()` (or after 60 s), and /v1/text at once."""

    held: int = 0  # requests held now
    _loop: asyncio.AbstractEventLoop | None = None
    _gate: asyncio.Event | None = None

    def _routes(self) -> Starlette:
        async def hold(request: Request) -> Response:
            self._loop = asyncio.get_running_loop()
            gate = self._gate = self._gate or asyncio.Event()
            self.held += 1
            try:
                with anyio.move_on_after(60):  # bounded
                    await gate.wait()
            finally:
                self.held -= 1
            return JSONResponse({"hold": "released" if gate.is_set() else "gave up"})

        async def text(request: Request) -> Response:
            return PlainTextResponse("plain words")

        return Starlette(routes=[Route("/v1/hold", hold), Route("/v1/text", text)])

    def release(self) -> None:
        """Answer every held request (from the test's thread: the gate lives on the server's loop)."""

        def now() -> None:
            if self._gate is not None:
                self._gate.set()
                self._gate = None

        assert self._loop is not None
        self._loop.call_soon_threadsafe(now)


@dataclass
class Served:
    runner: RunnerProcess
    api: HeldAPI
    issuer: Issuer

    def token(self, subject: str, client_id: str = "client-1") -> str:
        return self.issuer.token(sub=subject, client_id=client_id)


@contextmanager
def held_upstream() -> Iterator[int]:
    """A held upstream (tests/apps/held_upstream.py) on a free port, stopped on exit."""
    port = free_port()
    upstream = subprocess.Popen([sys.executable, str(HELD_UPSTREAM), str(port)])
    try:
        wait_for_port(port, proc=upstream)  # type: ignore[arg-type]
        yield port
    finally:
        stop_process(upstream)


@contextmanager
def busy_runner(folder: Path, jwks: JWKSServer, port: int) -> Iterator[Served]:
    """A runner with auth mounting the held upstream at `port` and a held API, bound at PER_CLIENT."""
    api = HeldAPI().start()
    try:
        (folder / "held.yaml").write_text(DOCUMENT)
        runner = RunnerProcess(folder / "m.yaml", env={"API": api.base_url})
        runner.manifest.write_text(
            f"name: busy\nserver:\n  max_upstream_calls_per_client: {PER_CLIENT}\n"
            f"signin:\n  app_id: {jwks.app_id}\n  resource: {runner.url}\n  base_url: {jwks.base_url}\n"
            f"upstreams:\n  - name: held\n    url: http://127.0.0.1:{port}/mcp\n    prefix: held_\n    timeout: 90\n"
            "openapi:\n  - {name: api, spec: held.yaml, base_url: '${API}/v1', timeout: 90}\n"
        )
        runner.start()
        try:
            yield Served(runner, api, Issuer(base_url=jwks.base_url, resource=runner.url, key=jwks.keys[0]))
        finally:
            runner.stop()
    finally:
        api.stop()


@pytest.fixture(scope="module")
def held_port() -> Iterator[int]:
    """The held upstream's port (one per module, mounted by each runner here)."""
    with held_upstream() as port:
        yield port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, jwks: JWKSServer, held_port: int) -> Iterator[Served]:
    with busy_runner(tmp_path_factory.mktemp("busy"), jwks, held_port) as served:
        yield served


def connected(health: dict[str, Any]) -> bool:
    return health.get("upstreams", {}).get("held", {}).get("state") == "connected"  # type: ignore[no-any-return]


@asynccontextmanager
async def clients(served: Served, *tokens: str) -> AsyncIterator[list[Client]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(mcp_client(served.runner.url, token)) for token in tokens]


def said(result: Any) -> str:
    """The text of a tool result, a prompt or a resource read; a tool error's text prefixed with `error: `."""
    if hasattr(result, "messages"):
        return str(result.messages[0].content.text)
    if hasattr(result, "contents"):
        return str(result.contents[0].text)
    return ("error: " if result.is_error else "") + str(result.content[0].text)


async def outcome(request: Callable[[], Awaitable[Any]]) -> str:
    """What the client got: the answer's text, or `error: <message>` for a tool or JSON-RPC error."""
    try:
        return said(await request())
    except MCPError as exc:
        return f"error: {exc.message}"


async def until(what: str, done: Callable[[], Awaitable[bool]]) -> None:
    """Wait (bounded) until `done()`; fail naming `what` otherwise."""
    with anyio.move_on_after(30):
        while not await done():
            await anyio.sleep(0.02)
        return
    raise AssertionError(f"not within the bound: {what}")


async def test_prompt_gets_and_resource_reads_count_and_cannot_lock_another_client_out(served: Served) -> None:
    """A client's prompt gets and resource reads (static and templated) forwarded to an upstream count in the bound
    as tool calls do: past it each is refused at once with the busy error, and another client is served meanwhile.
    Before, they were not counted: 8 of them held all 8 connections to the HTTP upstream, and every other client's
    request waited for the upstream's answers."""
    await wait_for_health(served.runner.health_url, connected, "the held upstream connected")
    outcomes: list[str] = []
    async with (
        clients(served, served.token("greedy"), served.token("other")) as (greedy, other),
        anyio.create_task_group() as tasks,
    ):
        requests: list[Callable[[], Awaitable[Any]]] = [
            *[lambda: greedy.get_prompt("held_hold")] * 3,
            *[lambda: greedy.read_resource("held://fixed")] * 3,
            *[lambda: greedy.read_resource("held://item/7")] * 2,
        ]

        async def ask(request: Callable[[], Awaitable[Any]]) -> None:
            outcomes.append(await outcome(request))

        for request in requests:
            tasks.start_soon(ask, request)

        holding = functools.partial(_holding, other)
        await until("each request held or answered", lambda: _settled(holding, outcomes, len(requests)))
        assert outcomes == [f"error: {busy('upstream', 'held')}"] * 6  # refused at once; 2 are held
        assert await holding() == PER_CLIENT
        assert said(await other.get_prompt("held_quick")) == "quick"  # the other client is served meanwhile
        assert said(await other.call_tool("held_quick", {})) == "quick"
        refused = await greedy.call_tool("held_quick", {})  # a tool call counts in the same bound
        assert said(refused) == f"error: {busy('upstream', 'held')}"
        assert said(await other.call_tool("held_release", {})) == str(PER_CLIENT)
    assert sorted(outcomes) == ["error: " + busy("upstream", "held")] * 6 + ["released"] * 2


async def _settled(holding: Callable[[], Awaitable[int]], outcomes: list[str], count: int) -> bool:
    return await holding() + len(outcomes) >= count


async def test_one_user_with_many_client_ids_cannot_take_an_http_upstream_from_the_others(served: Served) -> None:
    """Each client id of a token's subject is a client of its own (as for sessions), and the subject over all its
    client ids may have half of the 64 in flight: 17 client ids holding 2 calls each get 32 held, 2 refused. Before,
    8 calls held every connection the runner kept to an HTTP upstream, and another client's call waited for the
    upstream's answers; the runner now keeps as many connections as calls may be in flight to it."""
    await wait_for_health(served.runner.health_url, connected, "the held upstream connected")
    tokens = [served.token("many", f"client-{i}") for i in range(MAX_CALLS_PER_SUBJECT // PER_CLIENT + 1)]
    answers: list[str] = []
    async with (
        clients(served, *tokens, served.token("other")) as (*many, other),
        anyio.create_task_group() as tasks,
    ):

        async def hold(client: Client) -> None:
            answers.append(said(await client.call_tool("held_hold", {})))

        for client in many:
            for _ in range(PER_CLIENT):
                tasks.start_soon(hold, client)
        await until("each call held or answered", lambda: _settled(lambda: _holding(other), answers, len(many) * 2))
        user = "this user (the token's subject, over all its client ids)"
        refusal = f"error: server busy: {user} has {MAX_CALLS_PER_SUBJECT} calls in flight to upstream 'held' already"
        assert answers == [refusal + " (half of the 64 allowed in all); try again when one has finished"] * 2
        assert said(await other.call_tool("held_quick", {})) == "quick"  # before, it waited for a connection
        assert said(await other.call_tool("held_release", {})) == str(MAX_CALLS_PER_SUBJECT)
    assert answers[2:] == ["released"] * MAX_CALLS_PER_SUBJECT


async def _holding(client: Client) -> int:
    return int(said(await client.call_tool("held_holding", {})))


async def _held_at(upstream: Client) -> int:
    """How many requests the held upstream holds, asked of it directly (not through a runner)."""
    return int(said(await upstream.call_tool("holding", {})))


async def test_the_bound_on_an_api_counts_per_client_and_all_clients_together(served: Served) -> None:
    """`openapi:` calls are bounded by the same setting, per client as the upstreams' are (before: 8 per token
    subject, whatever the setting said), and by 64 in flight to one API in all (before: none below the pool's
    100 connections, so 13 clients at 8 could take every connection)."""
    api = served.api
    answers: list[str] = []

    async def call(client: Client, tool: str) -> None:
        answers.append(said(await client.call_tool(tool, {})))

    async def held(count: int) -> bool:
        return api.held + len(answers) >= count

    async with (
        clients(served, served.token("alice", "client-a"), served.token("alice", "client-b")) as (a, b),
        anyio.create_task_group() as tasks,
    ):
        for _ in range(PER_CLIENT + 1):
            tasks.start_soon(call, a, "api_hold")
        await until("alice's 3 calls held or answered", lambda: held(PER_CLIENT + 1))
        assert answers == [f"error: {busy('API', 'api')}"]  # her third, at once
        tasks.start_soon(call, b, "api_hold")  # her other client id is a client of its own
        await until("the other client id's call held", lambda: held(PER_CLIENT + 2))
        assert api.held == PER_CLIENT + 1
        api.release()
    assert sorted(answers) == [f"error: {busy('API', 'api')}", *['{\n  "hold": "released"\n}'] * 3]

    answers.clear()
    everyone = [served.token(f"user-{i}") for i in range(MAX_CALLS // PER_CLIENT)]
    async with clients(served, *everyone, served.token("late")) as (*many, late), anyio.create_task_group() as tasks:
        for client in many:
            for _ in range(PER_CLIENT):
                tasks.start_soon(call, client, "api_hold")
        await until("64 calls held", lambda: held(MAX_CALLS))
        assert answers == []
        for tool in ("api_hold", "api_text"):  # any of the API's operations: the cap is the API's
            refused = said(await late.call_tool(tool, {}))
            assert refused == f"error: server busy: {MAX_CALLS} calls are in flight to API 'api'; try again later"
        assert api.held == MAX_CALLS
        api.release()
    assert answers == ['{\n  "hold": "released"\n}'] * MAX_CALLS


async def test_a_call_waiting_for_the_clients_answers_keeps_counting(served: Served) -> None:
    """A 2026-07-28 client is asked an upstream's question in rounds of its call, the upstream call held open
    between them (runner/upstreams/rounds.py), on its connection: it counts until it ends. Before, it stopped
    counting when the first round answered `input_required`, so a client could hold calls past the bound."""
    await wait_for_health(served.runner.health_url, connected, "the held upstream connected")
    meanwhile: list[str] = []

    async def hold_then_answer(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        async with anyio.create_task_group() as tasks:  # the asking call is held now: it and one hold are 2
            tasks.start_soon(lambda: _record(meanwhile, client.call_tool("held_hold", {})))
            await until("the hold held", lambda: _is_held(other, 1))
            meanwhile.append(said(await client.call_tool("held_quick", {})))
            assert said(await other.call_tool("held_release", {})) == "1"
        return types.ElicitResult(action="accept", content={"answer": "yes"})

    async with (
        mcp_client(served.runner.url, served.token("asked"), elicitation_callback=hold_then_answer) as client,
        mcp_client(served.runner.url, served.token("other")) as other,
    ):
        assert said(await client.call_tool("held_ask", {})) == "accept yes"
    assert meanwhile == [f"error: {busy('upstream', 'held')}", "released"]


async def _record(into: list[str], request: Awaitable[Any]) -> None:
    into.append(said(await request))


async def _is_held(client: Client, count: int, *, exactly: bool = False) -> bool:
    held = await _holding(client)
    return held == count if exactly else held >= count


async def test_a_cancelled_call_keeps_its_slot_and_the_upstream_hears_the_cancel(served: Served) -> None:
    """A call the client cancels (`notifications/cancelled`) keeps counting until the upstream answers or the entry's
    `timeout` passes, and the runner tells the upstream it gave up (the MCP spec: a proxy propagates cancellation),
    so the held upstream stops. Before, the slot was freed at once and nothing reached the upstream: one client
    calling and cancelling 2 at a time made it hold 2 more each round (192 after 12 rounds of 16)."""
    await wait_for_health(served.runner.health_url, connected, "the held upstream connected")
    answers: dict[int, str] = {}
    peak = 0
    async with (
        httpx2.AsyncClient(headers=_raw_headers(served.token("canceller")), timeout=60) as http,
        mcp_client(served.runner.url, served.token("other")) as other,
        anyio.create_task_group() as tasks,
    ):
        session = await _raw_session(http, served.runner.url)

        async def call(ident: int) -> None:
            body = {"jsonrpc": "2.0", "id": ident, "method": "tools/call", "params": {"name": "held_hold"}}
            answers[ident] = (await http.post(served.runner.url, json=body, headers=session)).text

        for round in range(3):
            idents = [100 * round + i for i in range(PER_CLIENT)]
            for ident in idents:
                tasks.start_soon(call, ident)
            settled = functools.partial(_round_settled, other, answers, idents, PER_CLIENT * (round + 1))
            await until(f"round {round}'s calls held or refused", settled)
            peak = max(peak, await _holding(other))
            for ident in idents:
                cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": ident}}
                assert (await http.post(served.runner.url, json=cancel, headers=session)).status_code == 202
        assert peak == PER_CLIENT
        await until("the upstream stopped the cancelled calls", lambda: _is_held(other, 0, exactly=True))
        refused = [answers[100 * round + i] for round in (1, 2) for i in range(PER_CLIENT)]
        assert all(busy("upstream", "held") in text for text in refused), refused  # still counted: refused at once
        assert said(await other.call_tool("held_quick", {})) == "quick"  # another client is served meanwhile
        tasks.cancel_scope.cancel()


async def _round_settled(other: Client, answers: dict[int, str], idents: list[int], held: int) -> bool:
    """Each call of a round answered (refused), or the upstream holds what it would if none were refused."""
    return all(ident in answers for ident in idents) or await _holding(other) >= held


def _raw_headers(token: str | None) -> dict[str, str]:
    headers = {"accept": "application/json, text/event-stream"}
    return headers | ({"authorization": f"Bearer {token}"} if token else {})


async def _raw_session(http: httpx2.AsyncClient, url: str) -> dict[str, str]:
    """A 2025-11-25 session opened by hand, to send `notifications/cancelled` as a client does: its headers."""
    hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}
    opened = await http.post(url, json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": hello})
    session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    done = await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
    assert done.status_code == 202
    return session


def test_the_setting_may_not_exceed_what_one_subject_may_hold(tmp_path: Path) -> None:
    """`server.max_upstream_calls_per_client` is at most 32, half of the 64 in all: before, 33–1024 were accepted, and
    without auth (no subject cap) one client with 64 locked every other client out. A located error, as for other
    settings."""
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"name: m\nserver:\n  max_upstream_calls_per_client: {MAX_CALLS_PER_SUBJECT + 1}\n")
    result = run_main("check", str(manifest))
    assert result.returncode == 2
    assert f"{manifest}:3:34: server.max_upstream_calls_per_client: Input should be less than or equal to 32" in (
        result.stderr
    )


async def test_two_users_leave_the_last_slots_to_the_others(tmp_path: Path, jwks: JWKSServer) -> None:
    """Beyond 48 of the 64 in flight in all, a user (a token's subject) takes a slot only while it holds fewer than
    4: a user holding none is still served. Before, two subjects at 32 each took all 64 and refused everyone else."""
    # Its own upstream and runner: what the module's other tests leave counted (a cancelled call keeps its slot for
    # the entry's timeout) or held would shift the counts this test reads.
    with held_upstream() as port, busy_runner(tmp_path, jwks, port) as served:
        await wait_for_health(served.runner.health_url, connected, "the held upstream connected")
        first = [served.token("hog-a", f"client-{i}") for i in range(MAX_CALLS_PER_SUBJECT // PER_CLIENT)]
        second = [served.token("hog-b", f"client-{i}") for i in range(9)]
        answers: list[str] = []
        seen: dict[str, Any] = {}
        async with (
            clients(served, *first, *second, served.token("alice")) as everyone,
            anyio.create_task_group() as tasks,
        ):
            *hogs, alice = everyone

            async def hold(client: Client) -> None:
                try:
                    answers.append(said(await client.call_tool("held_hold", {})))
                except Exception as exc:  # shown by the assertion below, not lost in the task group's exception groups
                    answers.append(f"raised: {exc!r}")

            try:  # what goes wrong is raised after the block, plainly: in it, 14 clients' groups would bury it
                for client in hogs[: len(first)]:
                    for _ in range(PER_CLIENT):
                        tasks.start_soon(hold, client)
                await until("the first user's 32 calls held", lambda: _is_held(alice, MAX_CALLS_PER_SUBJECT))
                for client in hogs[len(first) :]:
                    for _ in range(PER_CLIENT):
                        tasks.start_soon(hold, client)
                count = len(second) * PER_CLIENT
                settled = functools.partial(_settled, functools.partial(_holding, alice), answers, 32 + count)
                await until("the second user's calls held or refused", settled)
                seen["refused"] = list(answers)
                seen["quick"] = said(await alice.call_tool("held_quick", {}))  # before: refused, 64 in flight
                seen["held"] = str(32 + count - len(answers))
            except Exception as exc:
                seen["failure"] = exc
            seen["released"] = said(await alice.call_tool("held_release", {}))
        if "failure" in seen:
            raise AssertionError(f"answers so far: {answers}") from seen["failure"]
        refused = seen["refused"]
        busy_now = (
            "error: server busy: 48 calls are in flight to upstream 'held', and the last 16 of 64 are kept for "
            "users with fewer than 4; try again when one has finished"
        )
        # 18 calls, 16 taken (48 of 64), 2 refused; 3 when alice's polling call (held_holding) held a slot just then
        assert len(refused) in (2, 3) and refused == [busy_now] * len(refused), refused
        assert seen["quick"] == "quick"
        assert seen["released"] == seen["held"], seen


@pytest.fixture(scope="module")
def open_runner(tmp_path_factory: pytest.TempPathFactory, held_port: int) -> Iterator[RunnerProcess]:
    """A runner without auth (a client is its address) mounting the same held upstream, at the default bound (16),
    twice: as `held` and as `again` (what a reload renaming `held` makes of it while `held`'s calls still run)."""
    runner = RunnerProcess(tmp_path_factory.mktemp("open") / "m.yaml")
    runner.manifest.write_text(
        f"name: open\nupstreams:\n  - name: held\n    url: http://127.0.0.1:{held_port}/mcp\n    prefix: held_\n"
        f"  - name: again\n    url: http://127.0.0.1:{held_port}/mcp\n    prefix: again_\n"  # the same server
    )
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()


async def test_without_auth_all_loopback_addresses_are_one_client_network(
    open_runner: RunnerProcess, held_port: int
) -> None:
    """Without auth the loopback addresses count together, at most 32 (as one token subject): one process using
    127.0.0.2, .3 and .4 gets 32 in flight, not 48. Before, each address was a client of its own, and four of
    them (16 each) took all 64 from everyone."""
    await wait_for_health(open_runner.health_url, connected, "the held upstream connected")
    answers: list[str] = []
    async with (
        AsyncExitStack() as stack,
        mcp_client(f"http://127.0.0.1:{held_port}/mcp") as upstream,  # the upstream itself, to count and release
        anyio.create_task_group() as tasks,
    ):
        for address in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
            transport = httpx2.AsyncHTTPTransport(local_address=address)
            http = await stack.enter_async_context(
                httpx2.AsyncClient(transport=transport, headers=_raw_headers(None), timeout=60)
            )
            session = await _raw_session(http, open_runner.url)
            for ident in range(16):
                tasks.start_soon(_raw_call, http, open_runner.url, session, ident, answers)

        held = functools.partial(_held_at, upstream)
        await until("each call held or refused", functools.partial(_settled, held, answers, 48))
        network = "this client's network (all loopback addresses, or its IPv4 /24 or IPv6 /64)"
        refusal = f"server busy: {network} has 32 calls in flight to upstream 'held' already (half of the 64 allowed"
        assert len(answers) == 16 and all(refusal in answer for answer in answers), answers
        assert said(await upstream.call_tool("release", {})) == "32"
        await until("the 32 answers passed on", lambda: _true(len(answers) == 48))
    # The runner keeps few of the burst's 32 connections to the upstream (LOW 5): before, it kept each one (closed
    # by the upstream after 5 s, CLOSE-WAIT) for as long as traffic went on.
    assert _sockets_to(open_runner, held_port) <= KEPT_IDLE + 2 * OTHER_CONNECTIONS  # 2 entries reach it


async def _raw_call(
    http: httpx2.AsyncClient, url: str, session: dict[str, str], ident: int, answers: list[str]
) -> None:
    body = {"jsonrpc": "2.0", "id": ident, "method": "tools/call", "params": {"name": "held_hold"}}
    answers.append((await http.post(url, json=body, headers=session)).text)


async def _true(value: bool) -> bool:
    return value


def _sockets_to(runner: RunnerProcess, port: int) -> int:
    """The runner's open TCP sockets to `port` on loopback (its descriptors, matched in /proc/<pid>/net/tcp)."""
    assert runner.proc is not None
    fds = Path(f"/proc/{runner.proc.pid}/fd")
    inodes = {link.removeprefix("socket:[")[:-1] for fd in fds.iterdir() if (link := _link(fd)).startswith("socket:")}
    count = 0
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{runner.proc.pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[2].rpartition(":")[2], 16) == port and fields[9] in inodes and fields[3] != "07":
                count += 1
    return count


def _link(fd: Path) -> str:
    try:
        return str(fd.readlink())
    except OSError:  # closed meanwhile
        return ""


async def test_the_counts_are_the_servers_not_the_entry_names(open_runner: RunnerProcess, held_port: int) -> None:
    """Two entries reaching one upstream share its counts: a client holding its 16 through `held` is refused through
    `again`. Before, counts were kept by entry name, so a reload renaming an entry (or a second entry) gave a client
    16 more at the same server each time."""
    await wait_for_health(open_runner.health_url, connected, "the held upstream connected")
    answers: list[str] = []
    transport = httpx2.AsyncHTTPTransport(local_address="127.0.0.5")
    async with (
        httpx2.AsyncClient(transport=transport, headers=_raw_headers(None), timeout=60) as http,
        mcp_client(f"http://127.0.0.1:{held_port}/mcp") as upstream,
        anyio.create_task_group() as tasks,
    ):
        session = await _raw_session(http, open_runner.url)
        for ident in range(16):
            tasks.start_soon(_raw_call, http, open_runner.url, session, ident, answers)

        held = functools.partial(_held_at, upstream)
        await until("16 calls held", functools.partial(_settled, held, answers, 16))
        body = {"jsonrpc": "2.0", "id": 99, "method": "tools/call", "params": {"name": "again_quick"}}
        refused = (await http.post(open_runner.url, json=body, headers=session)).text
        assert "server busy: this client has 16 calls in flight to upstream 'again' already" in refused, refused
        assert said(await upstream.call_tool("release", {})) == "16"
