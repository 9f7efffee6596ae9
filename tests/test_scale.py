"""Several replicas behind a real nginx: sticky handshake-era sessions, round-robin 2026-07-28 clients.

One nginx and two `mcp-runner serve` replicas (r1, r2) for the module; the tool `whoami` says
which replica answered. The configuration is exactly what `mcp-runner nginx` prints.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx2
import mcp_types as types
import pytest

from tests.helpers import JWKSServer, loopback_get, mcp_client
from tests.scale import Cluster, whoami

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, jwks: JWKSServer) -> Iterator[Cluster]:
    running = Cluster(tmp_path_factory.mktemp("cluster"), jwks).start()
    yield running
    running.stop()


async def test_handshake_session_stays_on_its_replica_for_100_calls(cluster: Cluster) -> None:
    token = cluster.issuer().token()
    homes = []
    for _ in range(4):  # new sessions are spread over the replicas; each then keeps its own
        async with mcp_client(cluster.url, token, mode="legacy") as client:
            served = Counter([await whoami(client) for _ in range(100 if not homes else 10)])
            assert len(served) == 1, f"one session was served by several replicas: {served}"
            homes.append(next(iter(served)))
    assert set(homes) == {"r1", "r2"}, homes


async def test_2026_client_is_served_round_robin(cluster: Cluster) -> None:
    async with mcp_client(cluster.url, cluster.issuer().token()) as client:
        served = Counter([await whoami(client) for _ in range(20)])
    assert set(served) == {"r1", "r2"}, served


def test_session_ids_name_their_replica_and_foreign_ones_get_404(cluster: Cluster) -> None:
    headers = {
        "Authorization": f"Bearer {cluster.issuer().token()}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    }
    opened = httpx2.post(cluster.url, json=init, headers=headers, timeout=30)
    assert opened.status_code == 200
    session = opened.headers["mcp-session-id"]
    replica, _, sdk_id = session.partition(".")
    assert replica in ("r1", "r2") and len(sdk_id) == 32, session
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    for unknown in (
        f"r9.{sdk_id}",
        f"{'r2' if replica == 'r1' else 'r1'}.{sdk_id}",
        sdk_id,
        f"{replica}.{'1' if sdk_id[0] == '0' else '0'}{sdk_id[1:]}",
    ):
        answer = httpx2.post(cluster.url, json=ping, headers={**headers, "Mcp-Session-Id": unknown}, timeout=30)
        assert answer.status_code == 404, (unknown, answer.status_code, answer.text)
        assert answer.json()["error"]["message"] == "Session not found"
    same = httpx2.post(cluster.url, json=ping, headers={**headers, "Mcp-Session-Id": session}, timeout=30)
    assert same.status_code == 200, same.text


def test_healthz_names_the_replica(cluster: Cluster) -> None:
    for replica, process in cluster.replicas.items():
        health = loopback_get(f"http://127.0.0.1:{process.port}/healthz", timeout=10).json()
        assert health["replica_id"] == replica
        assert len(health["manifest_sha256"]) == 64


async def test_a_stateful_session_keeps_server_to_client_requests(cluster: Cluster) -> None:
    """What stateless mode gives up (test_stateless.py) works on a sticky session through nginx."""

    async def answer_ann(context: object, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"name": "Ann"})

    async with mcp_client(cluster.url, cluster.issuer().token(), mode="legacy", elicitation_callback=answer_ann) as c:
        result = await c.call_tool("ask", {})
    assert result.structured_content == {"result": "accept: Ann"}, result
