"""At most one request per JSON-RPC id in flight in a session.

The SDK's handshake-era transport keeps one answer stream per request id (as text) in a
session: a second POST reusing an id still in flight replaced the first's stream, so the
second POST got whichever of the two answers came first and the first POST's stream never
ended (issue 22). JSON-RPC says an id identifies one request; reusing it while the first is
unanswered is the client's error, so the second POST is refused here: 409 with a JSON-RPC
error, before the SDK sees it, and the first goes on untouched.

The sessionless 2026-07-28 generation answers every POST on its own stream and keeps no
table of ids, so its requests pass untouched, as do requests without a session id (an
`initialize` opens a new session: nothing of it can be in flight yet).
"""

from __future__ import annotations

import json

import pydantic_core
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from mcp_types import INVALID_REQUEST, JSONRPCRequest, jsonrpc_message_adapter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner.http.era import sessionless

_SESSION = MCP_SESSION_ID_HEADER.lower().encode("ascii")
MAX_SHOWN_ID = 64  # characters of a refused id quoted back


class UniqueRequestIds:
    """ASGI middleware in front of the SDK's session manager: a duplicate in-flight id gets 409."""

    def __init__(self, app: ASGIApp, max_body: int = DEFAULT_MAX_REQUEST_BODY_SIZE) -> None:
        self.app = app
        self.max_body = max_body
        self._in_flight: set[tuple[bytes, str]] = set()  # (session id, request id as the SDK keys it)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or sessionless(scope["headers"]):
            await self.app(scope, receive, send)
            return
        session = next((value for name, value in scope["headers"] if name == _SESSION), None)
        if session is None:
            await self.app(scope, receive, send)
            return
        head, complete = await _read(receive, self.max_body)
        receive = _replay(head, complete, receive)
        request_id = _request_id(head) if complete else None  # an oversized body is the SDK's to refuse
        if request_id is None:
            await self.app(scope, receive, send)
            return
        key = (session, request_id)
        if key in self._in_flight:
            await _refuse(send, request_id)
            return
        self._in_flight.add(key)

        async def send_and_free(message: Message) -> None:
            # The id is free once its answer is complete, before the client can read the end of it: a
            # client that reuses an id as soon as its answer arrives must never meet its own old request.
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self._in_flight.discard(key)
            await send(message)

        try:
            await self.app(scope, receive, send_and_free)
        finally:
            self._in_flight.discard(key)


def _request_id(body: bytes) -> str | None:
    """The id of the JSON-RPC request in `body`, as the SDK keys its streams (`str(id)`); None if no request.

    Parsed and validated as the SDK does (`pydantic_core.from_json`, then the SDK's own message adapter),
    so an id is seen here exactly when the SDK will see it: a key written with JSON escapes (`"\\u0069d"`)
    or an id the SDK reads differently never slips past (issue 22). The byte test only skips bodies
    that cannot hold a request: without a backslash a key can only be spelt literally.
    """
    if b"\\" not in body and (b'"id"' not in body or b'"method"' not in body):
        return None  # notifications and responses: nothing to answer
    try:
        message = jsonrpc_message_adapter.validate_python(pydantic_core.from_json(body), by_name=False)
    except (ValueError, RecursionError):  # the SDK answers a parse or validation error itself
        return None
    if not isinstance(message, JSONRPCRequest):
        return None
    return str(message.id)


async def _read(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The body, or its first `limit` bytes and False when there is more (or the client left)."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return bytes(body), False
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return bytes(body), True
        if len(body) > limit:
            return bytes(body), False


def _replay(head: bytes, complete: bool, receive: Receive) -> Receive:
    """Hand on what was read, then the rest of the stream."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": head, "more_body": not complete}
        return await receive()

    return replay


async def _refuse(send: Send, request_id: str) -> None:
    shown = request_id if len(request_id) <= MAX_SHOWN_ID else request_id[:MAX_SHOWN_ID] + "..."
    message = (
        f"Request id {json.dumps(shown)} is already in flight in this session: "
        "use a new id for each request until its answer arrives"
    )
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": INVALID_REQUEST, "message": message}})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 409, "headers": headers})
    await send({"type": "http.response.body", "body": body.encode()})
