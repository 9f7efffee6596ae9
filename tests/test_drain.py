"""Rolling deploys behind a real nginx: SIGTERM drains a replica, and a rolling restart fails no call.

Two replicas (r1, r2) behind nginx for the module. `hold` keeps a call open until the test
releases it, so "a call in flight during SIGTERM" is a condition, not a timing.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator

import anyio
import anyio.to_thread
import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from tests.helpers import INITIALIZE, JWKSServer, mcp_client
from tests.scale import Cluster, ready, wait_until, whoami
from tests.test_drain_lone import refusing

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, jwks: JWKSServer) -> Iterator[Cluster]:
    running = Cluster(tmp_path_factory.mktemp("drain"), jwks).start()
    yield running
    running.stop()


def open_get_stream(port: int, token: str) -> tuple[httpx2.Client, httpx2.Response]:
    """A handshake-era session made directly on one replica, and its standing GET stream, open."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    http = httpx2.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30)
    opened = http.post("/mcp", json=INITIALIZE)
    assert opened.status_code == 200, opened.text
    session = {"Mcp-Session-Id": opened.headers["mcp-session-id"], "Mcp-Protocol-Version": "2025-06-18"}
    http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
    stream = http.send(http.build_request("GET", "/mcp", headers=session), stream=True)
    assert stream.status_code == 200
    return http, stream


async def test_sigterm_during_a_long_call(cluster: Cluster) -> None:
    """The call completes, /readyz is never 200 again, new work goes to the other replica, exit 0;
    then the session of the replica that left gets 404, and a new session works."""
    token = cluster.issuer().token()
    hold_dir = cluster.folder / "hold"
    async with mcp_client(cluster.url, token, mode="legacy") as held, mcp_client(cluster.url, token) as fresh:
        victim = await whoami(held)
        other = "r2" if victim == "r1" else "r1"
        process = cluster.replicas[victim]
        http, get_stream = open_get_stream(process.port, token)
        answer: list[str] = []

        async def long_call() -> None:
            result = await held.call_tool("hold", {"name": "drain"})
            answer.append(str(result.structured_content["result"]))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(long_call)
            await anyio.to_thread.run_sync(wait_until, (hold_dir / "drain.started").exists, "the call to start")
            assert process.proc is not None
            process.proc.send_signal(signal.SIGTERM)
            # The replica takes no new work: a call straight to it gets 503 (nginx sends such a call elsewhere).
            direct = f"http://127.0.0.1:{process.port}/mcp"
            await anyio.to_thread.run_sync(wait_until, lambda: refusing(direct, token, "whoami", {}), "the drain")
            assert await anyio.to_thread.run_sync(ready, process.port) in (None, 503)
            served = Counter([await whoami(fresh) for _ in range(10)])
            assert served == {other: 10}, served
            with pytest.raises(AssertionError, match="timed out"):  # the GET stream waits for the call
                await anyio.to_thread.run_sync(
                    lambda: wait_until(lambda: "standing stream" in process.logged(), "an early end", timeout=1.0)
                )
            (hold_dir / "drain.release").touch()
        assert answer == [victim]  # the call in flight finished on the draining replica
        # Then the standing GET stream is ended cleanly: the chunked response completes, no error.
        await anyio.to_thread.run_sync(lambda: b"".join(get_stream.iter_bytes()))
        http.close()
        assert await anyio.to_thread.run_sync(process.proc.wait, 30) == 0
        # The session's replica is gone: nginx answers the spec's 404 ...
        with pytest.raises(MCPError, match="Session not found"):
            await whoami(held)
    # ... and the client's new session lands on a replica that is there.
    async with mcp_client(cluster.url, token, mode="legacy") as again:
        assert await whoami(again) == other
    assert "ended 1 standing stream" in process.logged() or "ended 2 standing stream" in process.logged()
    cluster.restart(victim)
    wait_until(lambda: ready(cluster.replicas[victim].port) == 200, "the restarted replica")


async def test_rolling_restart_fails_no_call(cluster: Cluster) -> None:
    token = cluster.issuer().token()
    results: Counter[str] = Counter()
    failures: list[BaseException] = []
    done = anyio.Event()

    async def call_in_a_loop() -> None:
        async with mcp_client(cluster.url, token) as client:
            while not done.is_set():
                try:
                    results[await whoami(client)] += 1
                except Exception as exc:  # counted, and shown if any
                    failures.append(exc)

    def roll() -> None:
        for name in list(cluster.replicas):
            process = cluster.replicas[name]
            assert process.proc is not None
            process.proc.send_signal(signal.SIGTERM)
            assert process.proc.wait(timeout=30) == 0
            cluster.restart(name)
            wait_until(lambda name=name: ready(cluster.replicas[name].port) == 200, f"{name} to be ready")

    async with anyio.create_task_group() as tasks:
        for _ in range(2):
            tasks.start_soon(call_in_a_loop)
        try:
            await anyio.to_thread.run_sync(roll)
            after = sum(results.values())
            await anyio.to_thread.run_sync(wait_until, lambda: sum(results.values()) > after + 20, "calls after")
        finally:
            done.set()
    assert not failures, failures[:3]
    assert set(results) == {"r1", "r2"} and sum(results.values()) > 20, results


async def test_a_standing_stream_outlives_a_2026_call_in_flight(cluster: Cluster) -> None:
    """A 2026-07-28 call in flight on the draining replica (taken without a stream record, runner/deploy/drain.py)
    still holds back the end of a handshake-era GET stream until it completes."""
    token = cluster.issuer().token()
    hold_dir = cluster.folder / "hold"
    victim = "r1"
    process = cluster.replicas[victim]
    http, get_stream = open_get_stream(process.port, token)
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "hold", "arguments": {"name": "modern"}, "_meta": meta},
    }
    headers = {"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "hold"}
    answer: list[httpx2.Response] = []

    def long_call() -> None:  # one plain POST, straight to the replica: no client that would reconnect
        with httpx2.Client(base_url=f"http://127.0.0.1:{process.port}", timeout=60) as client:
            auth = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
            answer.append(client.post("/mcp", json=call, headers={**auth, **headers}))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(anyio.to_thread.run_sync, long_call)
        await anyio.to_thread.run_sync(wait_until, (hold_dir / "modern.started").exists, "the call to start")
        assert process.proc is not None
        process.proc.send_signal(signal.SIGTERM)
        direct = f"http://127.0.0.1:{process.port}/mcp"
        await anyio.to_thread.run_sync(wait_until, lambda: refusing(direct, token, "whoami", {}), "the drain")
        with pytest.raises(AssertionError, match="timed out"):  # the stream is not ended while the call runs
            await anyio.to_thread.run_sync(
                lambda: wait_until(lambda: "standing stream" in process.logged(), "an early end", timeout=1.0)
            )
        (hold_dir / "modern.release").touch()
    assert answer[0].status_code == 200 and f'"result":"{victim}"' in answer[0].text.replace(" ", "")
    await anyio.to_thread.run_sync(lambda: b"".join(get_stream.iter_bytes()))  # then it ends cleanly
    http.close()
    assert await anyio.to_thread.run_sync(process.proc.wait, 30) == 0
    assert "ended 1 standing stream" in process.logged()
    cluster.restart(victim)
    wait_until(lambda: ready(cluster.replicas[victim].port) == 200, "the restarted replica")
