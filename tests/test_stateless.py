"""`serve --stateless` behind nginx: handshake-era clients need no stickiness, and what they give up.

Two stateless replicas behind round-robin nginx (no session ids, so the `map` sends every
request round-robin). The same elicitation works on a stateful replica (test_scale.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from tests.helpers import INITIALIZE, JWKSServer, loopback_get, mcp_client
from tests.scale import Cluster

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, jwks: JWKSServer) -> Iterator[Cluster]:
    running = Cluster(tmp_path_factory.mktemp("stateless"), jwks, extra=("--stateless",)).start()
    yield running
    running.stop()


async def answer_ann(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"name": "Ann"})


async def test_handshake_client_works_round_robin_without_sessions(cluster: Cluster) -> None:
    async with mcp_client(cluster.url, cluster.issuer().token(), mode="legacy") as client:
        served = Counter()
        for _ in range(20):
            result = await client.call_tool("whoami", {})
            assert not result.is_error, result
            served[result.structured_content["result"]] += 1
        assert set(served) == {"r1", "r2"}, served  # any replica answers any request
        assert {t.name for t in (await client.list_tools()).tools} == {"whoami", "hold", "ask"}


async def test_what_a_stateless_handshake_client_loses(cluster: Cluster) -> None:
    """No session id, no standing GET stream, no server-to-client requests."""
    token = cluster.issuer().token()
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    opened = httpx2.post(cluster.url, json=INITIALIZE, headers=headers, timeout=30)
    assert opened.status_code == 200 and "mcp-session-id" not in opened.headers
    get = loopback_get(cluster.url, headers=headers, timeout=30)
    assert get.status_code == 405 and get.headers["allow"] == "POST", get.text
    async with mcp_client(cluster.url, token, mode="legacy", elicitation_callback=answer_ann) as client:
        with pytest.raises(MCPError, match="no back-channel for server-initiated requests"):
            await client.call_tool("ask", {})
        assert (await client.call_tool("whoami", {})).structured_content["result"] in ("r1", "r2")
