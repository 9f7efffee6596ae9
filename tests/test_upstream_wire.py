"""The lean call path's HTTP/1.1 (runner/upstreams/wire.py, lean.py) against a loopback server sending raw bytes.

A real TCP server on 127.0.0.1, written here so that each test can send exactly the bytes a real
server may send: SSE with CRLF line ends in chunks cut anywhere, a kept connection closed by the
server before it answers, an oversized head. The behaviour with real MCP servers is in
tests/test_upstreams.py.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from runner.upstreams import lean
from runner.upstreams.wire import WireError

pytestmark = pytest.mark.anyio

Answer = Callable[[int, int, dict[str, object]], list[bytes] | None]  # (connection no., request no. on it, request)


@asynccontextmanager
async def raw_server(answer: Answer) -> AsyncIterator[tuple[str, list[int]]]:
    """Each request's answer as pieces written one by one (None: close without answering); yields (url, requests
    per connection)."""
    counts: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = len(counts)
        counts.append(0)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                fields = (line.partition(b":") for line in head.split(b"\r\n"))
                length = next(int(value) for name, _, value in fields if name == b"content-length")
                request = json.loads(await reader.readexactly(length))
                counts[number] += 1
                pieces = answer(number, counts[number], request)
                if pieces is None:
                    break
                for piece in pieces:
                    writer.write(piece)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/mcp", counts
    finally:
        server.close()


def sse(request: dict[str, object], result: object, pieces: int = 7) -> list[bytes]:
    """A chunked SSE answer with CRLF line ends, a progress notification first, cut into small chunks."""
    token = request["params"]["_meta"]["progressToken"]  # type: ignore[index]
    progress = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": 1}}
    final = {"jsonrpc": "2.0", "id": request["id"], "result": result}
    stream = b"".join(b"event: message\r\ndata: " + json.dumps(m).encode() + b"\r\n\r\n" for m in (progress, final))
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    cut = [stream[i : i + pieces] for i in range(0, len(stream), pieces)]
    return [head] + [f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in cut] + [b"0\r\n\r\n"]


async def test_chunked_sse_cut_anywhere_is_read_and_the_connection_kept() -> None:
    async with raw_server(lambda conn, n, request: sse(request, {"n": n})) as (url, counts):
        heard: list[float] = []

        async def progress(done: float, total: float | None, message: str | None) -> None:
            heard.append(done)

        async with opened(url, {"Authorization": "Bearer manifest"}) as lane:
            for n in (1, 2, 3):
                assert await lean.request(lane, "tools/call", {"name": "x"}, progress) == {"n": n}
        assert heard == [1, 1, 1] and counts == [3]  # one connection for the three


async def test_a_kept_connection_the_server_closed_is_retried_once_on_a_new_one() -> None:
    """The server answers the first request of each connection and closes the connection at the second one."""
    async with raw_server(lambda conn, n, request: sse(request, {"conn": conn}) if n == 1 else None) as (url, counts):
        async with opened(url) as lane:
            assert await lean.request(lane, "tools/call", {"name": "x"}, _no_progress) == {"conn": 0}
            assert await lean.request(lane, "tools/call", {"name": "x"}, _no_progress) == {"conn": 1}
        assert counts == [2, 1]


async def test_an_oversized_head_or_a_header_that_could_split_one_is_refused() -> None:
    huge = [b"HTTP/1.1 200 OK\r\nx-pad: " + b"a" * (70 * 1024) + b"\r\n\r\n"]
    async with raw_server(lambda conn, n, request: huge) as (url, _):
        async with opened(url) as lane:
            with pytest.raises(WireError, match="over 64 KiB"):
                await lean.request(lane, "tools/call", {"name": "x"})
    with pytest.raises(ValueError, match="cannot be sent"):
        lean.lane(url, {"X-Token": "a\r\nHost: elsewhere"}, "s1", "2025-11-25")


@asynccontextmanager
async def opened(url: str, headers: dict[str, str] | None = None) -> AsyncIterator[lean.Lane]:
    """A lane to `url` on session s1, closed after the `with`."""
    lane = lean.lane(url, headers or {}, "s1", "2025-11-25")
    try:
        yield lane
    finally:
        await lane.aclose()


async def _no_progress(done: float, total: float | None, message: str | None) -> None:
    return None


async def test_a_stream_held_open_after_its_answer_is_left_with_its_connection() -> None:
    """The answer is returned once the stream's end does not come at once; that connection is not reused."""
    async with raw_server(lambda conn, n, request: sse(request, {"conn": conn})[:-1]) as (url, counts):  # no end
        async with opened(url) as lane:
            assert await lean.request(lane, "tools/call", {"name": "x"}, _no_progress) == {"conn": 0}
            assert await lean.request(lane, "tools/call", {"name": "x"}, _no_progress) == {"conn": 1}
        assert counts == [1, 1]


async def test_an_answer_whose_length_is_ambiguous_is_refused_with_the_reason() -> None:
    """Two content-lengths, a content-length with chunked, or one that is not a plain number: the body's end is not
    certain, so the answer is refused with llhttp's reason (the hand-written parser took one guess or the other)."""
    body = b'{"jsonrpc": "2.0", "id": 1, "result": {}}'
    length = str(len(body)).encode()
    answers = {
        b"content-length: 2\r\ncontent-length: " + length: "Duplicate Content-Length",
        b"content-length: " + length + b"\r\ntransfer-encoding: chunked": "Transfer-Encoding can't be present",
        b"content-length: +" + length: "Invalid character in Content-Length",
    }
    for fields, reason in answers.items():
        answer = [b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n" + fields + b"\r\n\r\n" + body]
        async with raw_server(lambda conn, n, request, answer=answer: answer) as (url, _):
            async with opened(url) as lane:
                with pytest.raises(WireError, match=f"not HTTP/1.1 the runner can read: {reason}"):
                    await lean.request(lane, "tools/call", {"name": "x"})


async def test_bytes_after_an_answer_leave_its_connection_and_a_1xx_before_it_is_skipped() -> None:
    """A 103 comes first, and stray bytes after the sized JSON answer: the answer stands, its connection is not
    reused (the hand-written parser kept it, and the next call read the stray bytes as its answer)."""

    def answer(conn: int, n: int, request: dict[str, object]) -> list[bytes]:
        body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": {"conn": conn}}).encode()
        head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        return [b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n" + head + body + b"HTTP/1.1 200 OK\r\n\r\n"]

    async with raw_server(answer) as (url, counts):
        async with opened(url) as lane:
            assert await lean.request(lane, "tools/call", {"name": "x"}) == {"conn": 0}
            assert await lean.request(lane, "tools/call", {"name": "x"}) == {"conn": 1}
        assert counts == [1, 1]


async def test_without_httptools_a_call_fails_saying_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a platform without its build the runner serves (`--http h11`), but a call to an HTTP upstream needs it."""
    monkeypatch.setitem(sys.modules, "httptools", None)  # `import httptools` raises ImportError, as without a build
    async with raw_server(lambda conn, n, request: sse(request, {})) as (url, _):
        async with opened(url) as lane:
            with pytest.raises(WireError, match="calls to HTTP upstreams need httptools, which cannot be imported"):
                await lean.request(lane, "tools/call", {"name": "x"})
