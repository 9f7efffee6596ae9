"""An upstream's log messages and questions during a call reach the client that made it (docs/upstreams.md).

Over stdio nothing in a message names its call: it is the call's when that call was the only one in flight on
the upstream (runner/upstreams/inflight.py), and otherwise no client gets it. A 2026-07-28 client is asked in
rounds of its own call, the upstream call held open between them (runner/upstreams/rounds.py). The upstream
is the plain-SDK server of tests/apps/plain_upstream.py, over stdio (`plain`) and over HTTP (`web`), mounted
by one runner shared by this module; clients are real MCP clients over real HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from runner.upstreams.inflight import Flights
from tests.helpers import RunnerProcess, mcp_client, stop_process, wait_for_health
from tests.test_upstreams import connected, front, plain_entry, plain_over_http

pytestmark = pytest.mark.anyio


STATE_KEY = "k" * 40  # server.request_state_keys: a restarted runner opens the requestState the first one sealed


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    with plain_over_http() as url:
        yield url


@pytest.fixture(scope="module")
def stdio_front(tmp_path_factory: pytest.TempPathFactory, web: str) -> Iterator[RunnerProcess]:
    """One runner for the module, with the plain upstream over stdio and over HTTP; untied messages in its log."""
    server = f"server:\n  request_state_keys: [{STATE_KEY}]\n  max_held_calls_per_client: 1\n"
    text = f"name: front\n{server}upstreams:\n" + plain_entry()
    runner = front(tmp_path_factory.mktemp("forward"), text + f"  - name: web\n    url: {web}\n")
    runner.extra = ("--log-level", "debug")
    runner.start()
    yield runner
    runner.stop()


async def connected_front(runner: RunnerProcess) -> RunnerProcess:
    await wait_for_health(runner.health_url, connected("plain", "web"), "the upstreams connected")
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


@pytest.mark.parametrize("upstream", ["web", "plain"])
async def test_a_2026_client_answers_an_upstreams_questions_in_rounds_of_its_call(
    stdio_front: RunnerProcess, upstream: str
) -> None:
    """The upstream asks mid-call; the client gets input_required, answers in its next round, and the call goes on."""
    await connected_front(stdio_front)
    heard: list[str] = []
    # log_level: on 2026-07-28 a request gets log messages only when its _meta asks for them.
    async with mcp_client(stdio_front.url, log_level="info", **listening(heard)) as client:  # 2026-07-28
        result = await client.call_tool(f"{upstream}_chatty", {"topic": "dee"})
    assert not result.is_error, result
    assert result.content[0].text == "accept yes w"  # type: ignore[union-attr]
    assert heard == ["log thinking about dee", "asked what about dee?", "sampled a word for dee"]


async def test_a_2026_client_that_declines_the_upstreams_question(stdio_front: RunnerProcess) -> None:
    await connected_front(stdio_front)

    async def decline(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="decline")

    options = {**listening([]), "elicitation_callback": decline}
    async with mcp_client(stdio_front.url, **options) as client:
        result = await client.call_tool("web_chatty", {"topic": "eve"})
    assert result.content[0].text == "decline None w"  # type: ignore[union-attr]  # the upstream heard "decline"


async def test_a_2026_client_that_cannot_answer_is_not_held_and_the_upstream_hears_why(
    stdio_front: RunnerProcess,
) -> None:
    """No elicitation or sampling declared: the call runs as it is, and the upstream's question is refused."""
    await connected_front(stdio_front)
    async with mcp_client(stdio_front.url) as client:  # 2026-07-28, no callbacks: no capabilities
        with pytest.raises(MCPError, match="the calling client did not declare the elicitation capability"):
            await client.call_tool("web_chatty", {"topic": "ivy"})


async def test_held_calls_are_bounded_per_client(stdio_front: RunnerProcess) -> None:
    """max_held_calls_per_client: 1. While its first call waits for its answer, the client's second call is refused."""
    await connected_front(stdio_front)
    second: list[Any] = []

    async def call_again_then_answer(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        if not second:
            second.append(await client.call_tool("web_chatty", {"topic": "gus"}))
        return types.ElicitResult(action="accept", content={"answer": "yes"})

    options = {**listening([]), "elicitation_callback": call_again_then_answer}
    async with mcp_client(stdio_front.url, **options) as client:
        first = await client.call_tool("web_chatty", {"topic": "hal"})
    assert first.content[0].text == "accept yes w"  # type: ignore[union-attr]
    assert second[0].is_error
    assert "at most 1 (server.max_held_calls_per_client)" in second[0].content[0].text


async def test_a_next_round_that_reaches_a_server_not_holding_the_call_is_told_to_start_again(
    tmp_path: Path, web: str
) -> None:
    """The runner restarts between two rounds (as another replica would answer): the state opens, the call is gone."""
    text = f"name: front\nserver:\n  request_state_keys: [{STATE_KEY}]\nupstreams:\n  - name: web\n    url: {web}\n"
    first = front(tmp_path, text).start()
    second = RunnerProcess(first.manifest, port=first.port)
    try:
        await wait_for_health(first.health_url, connected("web"), "the HTTP upstream connected")

        async def restart_then_answer(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
            stop_process(first.proc)  # type: ignore[arg-type]
            second.start()
            await wait_for_health(second.health_url, connected("web"), "the HTTP upstream connected again")
            return types.ElicitResult(action="accept", content={"answer": "yes"})

        async with mcp_client(first.url, elicitation_callback=restart_then_answer) as client:
            with pytest.raises(MCPError, match="not held by this server .*call it again from the start"):
                await client.call_tool("web_chatty", {"topic": "fay"})
    finally:
        for runner in (first, second):
            if runner.proc is not None:
                runner.stop()


def test_a_stdio_call_the_runner_gave_up_on_keeps_counting_as_in_flight() -> None:
    """Its upstream may still send its messages: they must not be taken for the next call's (inflight.py)."""
    flights = Flights(grace=600)
    with pytest.raises(TimeoutError), flights.hold("ann"):
        raise TimeoutError  # the entry's timeout: no answer came
    with flights.hold("bob"):
        assert flights.sole() == (None, 2)  # bob's call is not alone: nothing is forwarded to bob
    answered = Flights(grace=600)
    with pytest.raises(MCPError), answered.hold("ann"):
        raise MCPError(code=-32602, message="the upstream's error answer")  # an answer: the upstream is done
    with answered.hold("bob"):
        assert answered.sole() == ("bob", 1)


@pytest.mark.parametrize("upstream", ["web", "plain"])
async def test_a_2026_client_sees_the_upstreams_form_schema_as_it_was_sent(
    stdio_front: RunnerProcess, upstream: str
) -> None:
    """The SDK's 2026-07-28 sieve keeps only the keys the spec names on a requestedSchema: the top-level title and
    description the upstream sent used to be dropped on the way to a client asked in rounds (not to one asked on the
    call's stream). Both clients now see the schema the upstream sent."""
    await connected_front(stdio_front)
    seen: dict[str, Any] = {}

    async def note(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        assert isinstance(params, types.ElicitRequestFormParams), params
        seen[mode] = params.requested_schema
        return types.ElicitResult(action="accept", content={"answer": "yes"})

    for mode in ("legacy", "auto"):  # asked on the call's stream (2025-11-25), and in rounds (2026-07-28)
        async with mcp_client(stdio_front.url, mode=mode, **{**listening([]), "elicitation_callback": note}) as client:
            assert not (await client.call_tool(f"{upstream}_chatty", {"topic": "joe"})).is_error
    sent = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "title": "About the topic",
        "description": "What you think about joe",
        "properties": {"answer": {"type": "string", "title": "Answer"}},
        "required": ["answer"],
    }
    assert seen == {"legacy": sent, "auto": sent}


async def test_forwarding_an_upstreams_log_line_logs_no_deprecation_of_the_runners_own(
    stdio_front: RunnerProcess,
) -> None:
    """The runner sent a forwarded log line with the SDK's `send_log_message`, deprecated with 2026-07-28's logging:
    its first forwarded line logged the SDK's warning, naming runner/upstreams/rounds.py (or forward.py). It now
    sends the notification itself, through the same per-request gate. (The stdio upstream's own warnings, relayed
    from its stderr, are its own.)"""
    await connected_front(stdio_front)
    for mode in ("auto", "legacy"):  # in rounds (2026-07-28), and on the call's stream (2025-11-25)
        for upstream in ("web", "plain"):
            heard: list[str] = []
            async with mcp_client(stdio_front.url, mode=mode, log_level="info", **listening(heard)) as client:
                assert not (await client.call_tool(f"{upstream}_chatty", {"topic": "kim"})).is_error
            assert heard[0] == "log thinking about kim", heard
    own = [line for line in stdio_front.logged().splitlines() if "upstream 'plain' stderr" not in line]
    deprecated = [line for line in own if "deprecat" in line.lower()]
    assert not deprecated, deprecated


async def test_a_held_call_whose_upstream_call_ended_leaves_the_bounds(tmp_path: Path, web: str) -> None:
    """A client abandons a call at its question; the upstream call ends at the entry's `timeout` (1 s). Before, the
    held call stayed counted for `request_state_ttl` (600 s): 256 of them, from one local process, refused every
    2026-07-28 client's upstream calls with nothing running (an attacker's probe). Now the ended call leaves the
    bounds, so the same client (max_held_calls_per_client: 1) is served again once the upstream call is over."""
    server = f"server:\n  request_state_keys: [{STATE_KEY}]\n  max_held_calls_per_client: 1\n"
    runner = front(tmp_path, f"name: front\n{server}upstreams:\n  - name: web\n    url: {web}\n    timeout: 1\n")
    runner.start()
    try:
        await wait_for_health(runner.health_url, connected("web"), "the HTTP upstream connected")
        asked = anyio.Event()

        async def never_answer(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
            asked.set()
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        async with mcp_client(runner.url, elicitation_callback=never_answer) as client:
            async with anyio.create_task_group() as group:
                group.start_soon(client.call_tool, "web_chatty", {"topic": "ida"})
                await asked.wait()
                group.cancel_scope.cancel()  # the client walks away from its question
        outcomes: list[str] = []
        with anyio.move_on_after(30):  # bounded: the held call would be counted for 600 s before the fix
            while True:
                async with mcp_client(runner.url, **listening([])) as client:
                    result = await client.call_tool("web_chatty", {"topic": "jo"})
                text = result.content[0].text  # type: ignore[union-attr]
                outcomes.append(text)
                if not result.is_error:
                    break
                assert "server.max_held_calls_per_client" in text, text  # refused only while the first one runs
                await anyio.sleep(0.2)
        assert outcomes and outcomes[-1] == "accept yes w", outcomes[-3:]
    finally:
        runner.stop()
