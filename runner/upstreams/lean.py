"""A request to an HTTP upstream as one POST on a kept-alive connection: the call path, without the SDK's client.

Why: the SDK's streamable HTTP client spends about 1.7 ms of CPU on a `tools/call` (a task and memory
streams per request, its SSE parser, its dispatcher), a plain POST (runner/upstreams/wire.py) a fraction;
that difference was most of what a call through the runner added (docs/performance.md, "Upstreams").
So the SDK's `Client` keeps what it is good at (the handshake, listings, pings, `list_changed`), and
`tools/call`, `prompts/get` and `resources/read` go here, on the same session: the same headers the
SDK client sends (the manifest's `headers`, its `mcp-session-id` and `mcp-protocol-version`, never the
calling client's token), the answer read as JSON or as an SSE stream. On the stream, everything the
SDK client handled keeps working through forward.py: progress goes to the caller's progress, log
messages to forward.log, the upstream's questions (elicitation, sampling) to the client whose call it
is, the answer POSTed back as a JSON-RPC response.

Bounds: the caller wraps a request in the entry's `timeout`; one message of the answer (a JSON body,
an SSE event) is at most `MAX_MESSAGE_BYTES`, so an upstream cannot make the runner buffer unbounded
bytes; at most `CONNECTIONS` connections per upstream, as many as requests may be in flight to it
(runner/http/busy.py), so a request never waits for one. A 404 on the session means the upstream forgot
it (restarted, expired): `Expired`, and the connection reconnects.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp.shared.exceptions import MCPError

from runner.http.busy import MAX_CALLS
from runner.upstreams import forward
from runner.upstreams.wire import Pool, Response

MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # one JSON-RPC message of an upstream's answer, as the openapi: responses
# Per upstream: calls in flight at once, each on its own kept-alive connection, as many as may be in flight to it
# (runner/http/busy.py), so that a call never waits for one: with 8, one client's 8 slow calls made every other
# client's wait for the upstream's answers.
CONNECTIONS = MAX_CALLS
# What is read of a stream after its answer, to keep its connection: its end comes with the answer or right after
# it; the caller waits for it, so a server that holds the stream open costs 0.1 s and the connection, not more.
DRAIN_SECONDS, DRAIN_EVENTS = 0.1, 16
CANCEL_SECONDS = 2.0  # how long the runner tries to tell an upstream that it gave up on a request
KEEPALIVE_SECONDS = 4.0  # an idle connection is closed before uvicorn's 5 s would close it under a request

Progress = Callable[[float, float | None, str | None], Awaitable[None]]
_ids = itertools.count(1)


class Expired(Exception):
    """The upstream answered 404 to the session: it no longer knows it (restarted, or the session expired)."""


class Failed(Exception):
    """The upstream's answer cannot be used (status, type, size, shape); the message says why."""


@dataclass
class Lane:
    """One upstream session's call path: its URL, the headers every POST carries, and its connection pool."""

    url: str
    headers: list[tuple[str, str]]
    listed: Callable[[str], Awaitable[None]] = field(default=lambda method: _nothing())  # a list_changed seen
    pool: Pool = field(init=False)
    answers: Pool = field(init=False)  # its own: calls that all wait on an answer never hold every connection it needs

    def __post_init__(self) -> None:
        self.pool = Pool(self.url, self.headers, CONNECTIONS, KEEPALIVE_SECONDS)
        self.answers = Pool(self.url, self.headers, CONNECTIONS, KEEPALIVE_SECONDS)

    async def aclose(self) -> None:
        await self.pool.aclose()
        await self.answers.aclose()


def lane(url: str, manifest_headers: dict[str, str], session_id: str, version: str) -> Lane:
    """The lane of a session the SDK client opened: the headers it sends with each request, nothing else."""
    headers = {k.lower(): v for k, v in manifest_headers.items()}
    headers.update(
        {
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "mcp-session-id": session_id,
            "mcp-protocol-version": version,
        }
    )
    return Lane(url, list(headers.items()))


async def _nothing() -> None:
    return None


async def request(lane: Lane, method: str, params: dict[str, Any], progress: Progress | None = None) -> Any:
    """The upstream's result of `method`; its JSON-RPC error is raised as MCPError, as the SDK's client does."""
    ident = f"runner-{next(_ids)}"  # never one of the SDK client's integer ids on the same session
    if progress is not None:
        params = {**params, "_meta": {"progressToken": ident}}
    body = json.dumps({"jsonrpc": "2.0", "id": ident, "method": method, "params": params}).encode()
    try:
        return await _exchange(lane, body, ident, progress)
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_SECONDS):
            await _cancel(lane, ident)
        raise


async def _cancel(lane: Lane, ident: str) -> None:
    """Tell the upstream the runner gave up on request `ident` (the client cancelled it, went away, or it timed
    out): the MCP spec has a proxy propagate cancellation, so a well-behaved upstream stops working on it. Best
    effort: a failure to say so changes nothing (the caller's slot stays counted anyway, runner/http/busy.py)."""
    params = {"requestId": ident, "reason": "the runner's client gave up on the request"}
    try:
        await _post(lane, {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": params})
    except Exception:  # noqa: BLE001 - best effort, see above
        return


async def _exchange(lane: Lane, body: bytes, ident: str, progress: Progress | None) -> Any:
    async with lane.pool.post(body) as response:
        kind = _content_type(response)
        if response.status == 404:
            raise Expired("the upstream no longer knows the session")
        if response.status >= 400:
            raise _refused(response.status, await _read(response) if kind == "application/json" else b"")
        if response.status != 200:
            raise Failed(f"the upstream answered HTTP {response.status}")
        if kind == "application/json":
            return _outcome(_parse(await _read(response)), ident)
        if kind != "text/event-stream":
            raise Failed(f"the upstream answered with content type {kind or 'none'!r}")
        events = _events(response)
        async for message in events:
            if message.get("id") == ident and ("result" in message or "error" in message):
                await _drain(events)
                return _outcome(message, ident)
            await _on_message(lane, message, ident, progress)
    raise Failed("the upstream's stream ended without an answer")


async def _drain(events: AsyncIterator[dict[str, Any]]) -> None:
    """The stream after the answer, to its end (the servers end it at once): wire.py keeps only a connection whose
    response was read to its end, else each call would pay a new TCP connection (as runner/upstreams/keepalive.py
    explains for the SDK's client). Bounded: a stream that goes on is closed, and its connection with it."""
    with anyio.move_on_after(DRAIN_SECONDS):
        for _ in range(DRAIN_EVENTS):
            if await anext(events, None) is None:
                return


async def _on_message(lane: Lane, message: dict[str, Any], ident: str, progress: Progress | None) -> None:
    """A message on the call's stream before its answer: a notification, or a question to answer."""
    method, params = message.get("method"), message.get("params") or {}
    if not isinstance(method, str) or not isinstance(params, dict):
        return
    if "id" in message:  # the upstream asks something (elicitation, sampling, ping): answered on a POST of its own
        answer = await forward.answer(method, params)
        await _post(lane, {"jsonrpc": "2.0", "id": message["id"], **answer})
    elif method == "notifications/progress" and progress is not None and params.get("progressToken") == ident:
        await progress(params.get("progress", 0), params.get("total"), params.get("message"))
    elif method == "notifications/message":
        await forward.log_message(params)
    elif method.endswith("/list_changed"):
        await lane.listed(method)


async def _post(lane: Lane, message: dict[str, Any]) -> None:
    """A response to the upstream's question; the upstream answers 202, and nothing more is read."""
    body = json.dumps(message).encode()
    async with lane.answers.post(body) as response:
        await _read(response)


def _content_type(response: Response) -> str:
    for name, value in response.headers:
        if name == b"content-type":
            return value.decode("latin-1").partition(";")[0].strip().lower()
    return ""


async def _read(response: Response) -> bytes:
    """The whole body, up to MAX_MESSAGE_BYTES."""
    chunks, size = [], 0
    async for chunk in response.aiter_stream():
        size += len(chunk)
        if size > MAX_MESSAGE_BYTES:
            raise Failed(too_large())
        chunks.append(chunk)
    return b"".join(chunks)


def too_large() -> str:
    return f"the upstream's answer is larger than {MAX_MESSAGE_BYTES // (1024 * 1024)} MiB"


async def _events(response: Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON-RPC messages of an SSE stream (`data:` of `message` events); each event at most MAX_MESSAGE_BYTES."""
    buffer = b""
    async for chunk in response.aiter_stream():
        buffer += chunk
        if b"\r" in buffer:  # CRLF or CR line ends (sse-starlette writes CRLF); a CR at the end may be half a CRLF
            held = buffer.endswith(b"\r")
            buffer = buffer[:-1] if held else buffer
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + (b"\r" if held else b"")
        *events, buffer = buffer.split(b"\n\n")
        if len(buffer) > MAX_MESSAGE_BYTES:
            raise Failed(too_large())
        for event in events:
            message = _event(event)
            if message is not None:
                yield message


def _event(event: bytes) -> dict[str, Any] | None:
    kind, data = "message", []
    for line in event.split(b"\n"):
        name, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if name == b"data":
            data.append(value)
        elif name == b"event":
            kind = value.decode("utf-8", "replace")
    if kind != "message" or not data:
        return None  # a comment, a priming event (an id, no data), or an event type that is not a message
    return _parse(b"\n".join(data))


def _parse(data: bytes) -> dict[str, Any]:
    try:
        message = json.loads(data)
    except ValueError:
        raise Failed("the upstream's answer is not JSON") from None
    if not isinstance(message, dict):
        raise Failed("the upstream's answer is not a JSON-RPC message")
    return message


def _outcome(message: dict[str, Any], ident: str) -> Any:
    error = message.get("error")
    if isinstance(error, dict) and isinstance(error.get("code"), int):
        raise MCPError(code=error["code"], message=str(error.get("message", "")), data=error.get("data"))
    if message.get("id") != ident or "result" not in message:
        raise Failed("the upstream's answer is not the response to the request")
    return message["result"]


def _refused(status: int, body: bytes) -> Exception:
    """A non-2xx status: the JSON-RPC error in its body when there is one (a spec-correct server's), else the status."""
    try:
        error = json.loads(body).get("error") if body else None
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and isinstance(error.get("code"), int):
        return MCPError(code=error["code"], message=str(error.get("message", "")), data=error.get("data"))
    return Failed(f"the upstream answered HTTP {status}")
