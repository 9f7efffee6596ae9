"""Sessions are bounded per client as well as globally, against the real server with real tokens."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx2
import pytest

from tests.helpers import INITIALIZE, Issuer, JWKSServer, RunnerProcess, mcp_client, run_main

pytestmark = pytest.mark.anyio

TOOLS = "def add(a: int, b: int) -> int:\n    return a + b\n"
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def serve(folder: Path, server: dict[str, object], signin: str = "") -> RunnerProcess:
    (folder / "cap_tools.py").write_text(TOOLS)
    runner = RunnerProcess(folder / "cap.yaml")
    settings = "".join(f"  {key}: {value}\n" for key, value in server.items())
    (folder / "cap.yaml").write_text(
        f"name: cap\n{signin}server:\n{settings}tools:\n  - function: cap_tools:add\n".replace("{url}", runner.url)
    )
    return runner.start()


def open_session(url: str, token: str | None = None, client: httpx2.Client | None = None) -> httpx2.Response:
    headers = {**HEADERS, **({"Authorization": f"Bearer {token}"} if token else {})}
    return (client or httpx2).post(url, json=INITIALIZE, headers=headers, timeout=30)  # type: ignore[attr-defined]


def ping(url: str, session: str, token: str) -> int:
    headers = {**HEADERS, "Authorization": f"Bearer {token}", "mcp-session-id": session}
    headers["mcp-protocol-version"] = "2025-06-18"
    return httpx2.post(url, json={"jsonrpc": "2.0", "id": 2, "method": "ping"}, headers=headers, timeout=30).status_code


def close(url: str, session: str, token: str | None = None) -> None:
    headers = {"mcp-session-id": session, **({"Authorization": f"Bearer {token}"} if token else {})}
    assert httpx2.delete(url, headers=headers, timeout=30).status_code < 300


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory, jwks: JWKSServer) -> Iterator[tuple[RunnerProcess, Issuer]]:
    signin = f"signin:\n  app_id: {jwks.app_id}\n  resource: {{url}}\n  base_url: {jwks.base_url}\n"
    runner = serve(tmp_path_factory.mktemp("capped"), {"max_sessions_per_client": 3, "max_sessions": 6}, signin)
    yield runner, Issuer(base_url=jwks.base_url, resource=runner.url, key=jwks.keys[0])
    runner.stop()


async def test_one_client_over_its_cap_is_refused_and_nobody_else_notices(capped: tuple[RunnerProcess, Issuer]) -> None:
    runner, issuer = capped
    alice = issuer.token(sub="alice")
    opened = [open_session(runner.url, alice) for _ in range(3)]
    assert [r.status_code for r in opened] == [200, 200, 200]
    sessions = [r.headers["mcp-session-id"] for r in opened]

    refused = open_session(runner.url, issuer.token(sub="alice"))  # a fresh token, the same principal
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert "Too many open sessions for this client: at most 3 (server.max_sessions_per_client)" in error["message"]
    assert refused.json()["id"] is None and "mcp-session-id" not in refused.headers

    # Alice's own sessions still work, and so does everybody else.
    assert all(ping(runner.url, s, alice) == 200 for s in sessions)
    async with mcp_client(runner.url, issuer.token(sub="bob"), mode="legacy") as bob:
        assert (await bob.call_tool("add", {"a": 1, "b": 2})).structured_content == {"result": 3}
    other_client = issuer.token(sub="alice", client_id="another-app")  # another app acting for alice
    other = open_session(runner.url, other_client)
    assert other.status_code == 200

    # Ending a session gives its place back.
    close(runner.url, sessions.pop(), alice)
    again = open_session(runner.url, alice)
    assert again.status_code == 200
    sessions.append(again.headers["mcp-session-id"])
    assert open_session(runner.url, alice).status_code == 429

    for session in sessions:
        close(runner.url, session, alice)
    close(runner.url, other.headers["mcp-session-id"], other_client)


def test_a_second_protocol_version_header_does_not_slip_past_the_cap(capped: tuple[RunnerProcess, Issuer]) -> None:
    """The SDK routes by the first MCP-Protocol-Version header: a handshake-era one followed by a 2026-07-28 one
    opens a session, so it counts against the cap (runner/http/era.py). Reading the last one let it pass uncounted."""
    runner, issuer = capped
    token = issuer.token(sub="mallory")
    headers = [*HEADERS.items(), ("Authorization", f"Bearer {token}")]
    headers += [("mcp-protocol-version", "2025-11-25"), ("mcp-protocol-version", "2026-07-28")]
    answers = [httpx2.post(runner.url, json=INITIALIZE, headers=headers, timeout=30) for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429], [r.text[:200] for r in answers]
    for answer in answers[:3]:
        close(runner.url, answer.headers["mcp-session-id"], token)


def test_the_global_cap_still_holds(capped: tuple[RunnerProcess, Issuer]) -> None:
    runner, issuer = capped
    opened: list[tuple[str, str]] = []
    for who in ("carol", "dave"):
        token = issuer.token(sub=who)
        for _ in range(3):
            response = open_session(runner.url, token)
            assert response.status_code == 200
            opened.append((response.headers["mcp-session-id"], token))
    full = open_session(runner.url, issuer.token(sub="erin"))  # 6 open: server.max_sessions
    assert full.status_code == 503 and "Too many open sessions" in full.text
    for session, token in opened:
        close(runner.url, session, token)
    assert open_session(runner.url, issuer.token(sub="erin")).status_code == 200


async def test_a_session_whose_answer_has_started_counts_once(capped: tuple[RunnerProcess, Issuer]) -> None:
    """It used to count as opening and as owned until its request ended, so sessions opened at nearly the
    same moment were refused below the cap. Raw connections: the other two openings are sent the moment
    the first answer's head arrives, while its request is still running (a race: ten rounds)."""
    runner, issuer = capped
    token = issuer.token(sub="frank")
    host = f"127.0.0.1:{runner.port}"
    body = json.dumps(INITIALIZE).encode()
    head = f"POST /mcp HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\n"
    request = (
        head + f"accept: application/json, text/event-stream\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body
    for _ in range(10):
        connections = [await asyncio.open_connection("127.0.0.1", runner.port) for _ in range(3)]
        try:
            connections[0][1].write(request)
            heads = [await connections[0][0].readuntil(b"\r\n\r\n")]
            for _, writer in connections[1:]:
                writer.write(request)
            heads += [await reader.readuntil(b"\r\n\r\n") for reader, _ in connections[1:]]
        finally:
            for _, writer in connections:
                writer.close()
        sessions = [re.search(rb"mcp-session-id: (\S+)", h, re.I) for h in heads]
        for found in sessions:
            if found:
                close(runner.url, found[1].decode(), token)
        assert [h.split(b" ", 2)[1] for h in heads] == [b"200"] * 3, heads


def held_session(url: str, stack: ExitStack) -> str:
    """A session kept busy by an open GET stream, so it cannot idle out (retried if it expired before the GET)."""
    for _ in range(20):
        session = open_session(url).headers["mcp-session-id"]
        headers = {"Accept": "text/event-stream", "mcp-session-id": session, "mcp-protocol-version": "2025-06-18"}
        stream = stack.enter_context(httpx2.stream("GET", url, headers=headers, timeout=30))
        if stream.status_code == 200:
            return session
    raise AssertionError("could not hold a session open")


def test_without_auth_the_client_is_its_address_and_idle_sessions_give_their_place_back(tmp_path: Path) -> None:
    runner = serve(tmp_path, {"max_sessions_per_client": 2, "session_idle_timeout": 2})
    try:
        with ExitStack() as streams:
            held = [held_session(runner.url, streams) for _ in range(2)]
            assert len(set(held)) == 2
            assert open_session(runner.url).status_code == 429
            # Another loopback address is another client.
            with httpx2.Client(transport=httpx2.HTTPTransport(local_address="127.0.0.2")) as elsewhere:
                assert open_session(runner.url, client=elsewhere).status_code == 200
        # The streams are closed: the sessions idle out (server.session_idle_timeout) and free their places.
        for _ in range(600):
            if open_session(runner.url).status_code == 200:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("idle sessions never gave their places back")
    finally:
        runner.stop()


def test_limits_are_checked_with_a_location(tmp_path: Path) -> None:
    (tmp_path / "cap_tools.py").write_text(TOOLS)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "name: m\nserver:\n  session_idle_timeout: .inf\n  max_sessions_per_client: 0\n"
        "tools:\n  - function: cap_tools:add\n"
    )
    result = run_main("check", str(manifest))
    assert result.returncode == 2
    err = result.stderr
    assert f"{manifest}:3:25: server.session_idle_timeout: Input should be less than or equal to 604800" in err
    assert f"{manifest}:4:28: server.max_sessions_per_client: Input should be greater than or equal to 1" in err
