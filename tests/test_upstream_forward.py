"""An upstream's log messages and questions during a call reach the client that made it (docs/upstreams.md).

Over stdio nothing in a message names its call: it is the call's when that call was the only one in flight on
the upstream (runner/upstreams/inflight.py), and otherwise no client gets it. The upstream is the plain-SDK
server of tests/apps/plain_upstream.py, started by one runner shared by this module; clients are real MCP
clients over real HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from tests.helpers import RunnerProcess, mcp_client, wait_for_health
from tests.test_upstreams import connected, front, plain_entry

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def stdio_front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    """One runner for the module, its stdio upstream's untied messages in its debug log."""
    runner = front(tmp_path_factory.mktemp("forward"), "name: front\nupstreams:\n" + plain_entry())
    runner.extra = ("--log-level", "debug")
    runner.start()
    yield runner
    runner.stop()


async def connected_front(runner: RunnerProcess) -> RunnerProcess:
    await wait_for_health(runner.health_url, connected("plain"), "the stdio upstream connected")
    return runner


def listening(heard: list[str]) -> dict[str, Any]:
    """Client callbacks that note what reached this client, and answer the questions as `heard` is named."""

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        heard.append(f"log {params.data}")

    async def on_elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        heard.append(f"asked {params.message}")
        return types.ElicitResult(action="accept", content={"answer": "yes"})

    async def on_sample(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        heard.append(f"sampled {params.messages[0].content.text}")  # type: ignore[union-attr]
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="w"), model="m")

    return {"logging_callback": on_log, "elicitation_callback": on_elicit, "sampling_callback": on_sample}


async def test_the_only_call_in_flight_on_a_stdio_upstream_gets_its_log_line_and_questions(
    stdio_front: RunnerProcess,
) -> None:
    await connected_front(stdio_front)
    heard: list[str] = []
    async with mcp_client(stdio_front.url, mode="legacy", **listening(heard)) as client:
        result = await client.call_tool("plain_chatty", {"topic": "ann"})
    assert not result.is_error, result
    assert result.content[0].text == "accept yes w"  # type: ignore[union-attr]
    assert heard == ["log thinking about ann", "asked what about ann?", "sampled a word for ann"]


async def test_two_calls_in_flight_on_a_stdio_upstream_hear_nothing_of_each_other(stdio_front: RunnerProcess) -> None:
    """Both calls run when the upstream logs and asks: no client is told or asked, the upstream hears why.

    The first log line and the first question are read before any response (each call logs, then asks, then
    answers), so while both are in flight: not delivered. A later question may be read once the other call has
    ended: then it is its own call's, alone in flight, and delivered to it. Nothing ever reaches the other client.
    """
    await connected_front(stdio_front)
    heard: dict[str, list[str]] = {"ann": [], "bob": []}
    refused: dict[str, str] = {}

    async def call(me: str) -> None:
        async with mcp_client(stdio_front.url, mode="legacy", **listening(heard[me])) as client:
            try:
                await client.call_tool("plain_chatty", {"topic": me, "together": 2})
            except MCPError as exc:
                refused[me] = str(exc)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(call, "ann")
        tasks.start_soon(call, "bob")
    for me, other in (("ann", "bob"), ("bob", "ann")):
        assert not any(other in line for line in heard[me]), heard
    assert refused, "the first question was read while both calls were in flight"
    for text in refused.values():
        assert "cannot tell which of its clients' calls" in text, refused
    assert "(stdio, 2 requests in flight): log message outside a known call" in stdio_front.logged()
    # Once alone again, a call gets its own messages.
    again: list[str] = []
    async with mcp_client(stdio_front.url, mode="legacy", **listening(again)) as client:
        assert not (await client.call_tool("plain_chatty", {"topic": "cy"})).is_error
    assert again == ["log thinking about cy", "asked what about cy?", "sampled a word for cy"]
