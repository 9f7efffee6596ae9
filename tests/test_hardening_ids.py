"""Issue 22, item 10: two requests with one JSON-RPC id in flight in one session.

Handshake era: the SDK keeps one answer stream per id in a session, so the second POST got
whichever answer came first and the first POST's stream never ended. The second is now refused
(409, a JSON-RPC error) and the first gets its own answer. The 2026-07-28 generation answers each
POST on its own stream and keeps no table of ids: the same id twice at once is two requests, each
answered with its own result.

Ordering, not clocks: the held tool writes a file when it starts and returns once the test writes
another; every wait is bounded.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.helpers import INITIALIZE, Issuer, JWKSServer, RunnerProcess

pytestmark = pytest.mark.anyio

TOOLS = """
import time
from pathlib import Path

HERE = Path(__file__).parent


def hold(name: str) -> str:
    (HERE / f"{name}.started").touch()
    deadline = time.monotonic() + 30
    while not (HERE / f"{name}.release").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return f"held {name}"


def echo(text: str) -> str:
    return text
"""

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}


class Served:
    def __init__(self, folder: Path, jwks: JWKSServer) -> None:
        self.folder = folder
        (folder / "ids_tools.py").write_text(TOOLS)
        self.runner = RunnerProcess(folder / "ids.yaml")
        (folder / "ids.yaml").write_text(
            textwrap.dedent(f"""
                name: ids
                signin:
                  app_id: {jwks.app_id}
                  base_url: {jwks.base_url}
                  resource: {self.runner.url}
                tools:
                  - function: ids_tools:hold
                  - function: ids_tools:echo
            """)
        )
        self.issuer = Issuer(jwks.base_url, self.runner.url, jwks.keys[0])

    async def until_started(self, name: str) -> None:
        with anyio.fail_after(30):
            while not (self.folder / f"{name}.started").exists():
                await anyio.sleep(0.02)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, jwks: JWKSServer) -> Iterator[Served]:
    s = Served(tmp_path_factory.mktemp("ids"), jwks)
    s.runner.start()
    yield s
    s.runner.stop()


def call(request_id: Any, name: str, arguments: dict[str, Any], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": arguments, **({"_meta": meta} if meta else {})}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def answer_of(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC answer in a JSON or SSE response body."""
    if response.headers["content-type"].startswith("application/json"):
        return json.loads(response.text)  # type: ignore[no-any-return]
    for line in response.text.splitlines():
        if line.startswith("data:") and line[5:].strip():
            message = json.loads(line[5:])
            if "result" in message or "error" in message:
                return message  # type: ignore[no-any-return]
    raise AssertionError(f"no JSON-RPC answer in {response.text!r}")


def result_text(answer: dict[str, Any]) -> str:
    return answer["result"]["content"][0]["text"]  # type: ignore[no-any-return]


async def open_session(http: httpx2.AsyncClient, url: str) -> dict[str, str]:
    """A handshake-era session (initialize, then initialized): the headers its requests carry."""
    opened = await http.post(url, json=INITIALIZE)
    session = {"Mcp-Session-Id": opened.headers["mcp-session-id"], "Mcp-Protocol-Version": "2025-06-18"}
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert (await http.post(url, json=initialized, headers=session)).status_code == 202
    return session


async def test_a_duplicate_in_flight_id_in_a_session_is_refused(served: Served) -> None:
    auth = {**ACCEPT, "Authorization": f"Bearer {served.issuer.token()}"}
    url = served.runner.url
    async with httpx2.AsyncClient(headers=auth, timeout=60) as http:
        session = await open_session(http, url)
        first: list[httpx2.Response] = []

        async def held() -> None:
            first.append(await http.post(url, json=call(7, "hold", {"name": "legacy"}), headers=session))

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(held)
                await served.until_started("legacy")  # id 7 is in flight
                for same in (7, "7"):  # the SDK keys its streams by str(id): 7 and "7" are one id to it
                    second = await http.post(url, json=call(same, "echo", {"text": "second"}), headers=session)
                    assert second.status_code == 409, second.text
                    error = second.json()["error"]
                    assert error["code"] == -32600 and "already in flight in this session" in error["message"]
                other = await http.post(url, json=call(8, "echo", {"text": "other id"}), headers=session)
                assert result_text(answer_of(other)) == "other id"  # other ids go on meanwhile
                (served.folder / "legacy.release").touch()
        assert first[0].status_code == 200
        assert answer_of(first[0])["id"] == 7 and result_text(answer_of(first[0])) == "held legacy"
        again = await http.post(url, json=call(7, "echo", {"text": "reused"}), headers=session)
        assert result_text(answer_of(again)) == "reused"  # answered: the id is free again


async def test_the_same_id_twice_at_once_in_2026_07_28_gets_two_answers(served: Served) -> None:
    token = served.issuer.token()
    answers: dict[str, dict[str, Any]] = {}

    async def post(key: str, body: dict[str, Any], name: str) -> None:
        headers = {**ACCEPT, "Authorization": f"Bearer {token}", "Mcp-Protocol-Version": MODERN}
        headers |= {"Mcp-Method": "tools/call", "Mcp-Name": name}
        async with httpx2.AsyncClient(timeout=60) as http:
            answers[key] = answer_of(await http.post(served.runner.url, json=body, headers=headers))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(post, "held", call(7, "hold", {"name": "modern"}, META), "hold")
            await served.until_started("modern")
            await post("quick", call(7, "echo", {"text": "second"}, META), "echo")
            (served.folder / "modern.release").touch()
    assert result_text(answers["quick"]) == "second"
    assert result_text(answers["held"]) == "held modern"


async def test_a_duplicate_id_spelt_with_json_escapes_is_refused(served: Served) -> None:
    """The keys `"\\u0069d"` and `"\\u006dethod"` are `id` and `method` to the SDK: the duplicate is one too."""
    auth = {**ACCEPT, "Authorization": f"Bearer {served.issuer.token()}"}
    url = served.runner.url
    async with httpx2.AsyncClient(headers=auth, timeout=60) as http:
        session = await open_session(http, url)
        first: list[httpx2.Response] = []

        async def held() -> None:
            first.append(await http.post(url, json=call(27, "hold", {"name": "escaped"}), headers=session))

        escaped = (
            '{"jsonrpc":"2.0","\\u0069d":27,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a"}}}',
            '{"jsonrpc":"2.0","id":27,"\\u006dethod":"tools/call","params":{"name":"echo","arguments":{"text":"b"}}}',
            '{"jsonrpc":"2.0","id":"\\u0032\\u0037","method":"tools/call","params":{"name":"echo","arguments":{}}}',
        )
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(held)
                await served.until_started("escaped")  # id 27 is in flight
                for body in escaped:
                    second = await http.post(url, content=body.encode(), headers=session)
                    assert second.status_code == 409, (body, second.text)
                    assert "already in flight in this session" in second.json()["error"]["message"]
                (served.folder / "escaped.release").touch()
        assert first[0].status_code == 200
        assert answer_of(first[0])["id"] == 27 and result_text(answer_of(first[0])) == "held escaped"
