"""Session ids that name their replica: `<replica>.<sdk id>`, so a load balancer can route on them.

The SDK makes a session id with `uuid4().hex` inside a private method
(`StreamableHTTPSessionManager._admit_session`) and offers no way to choose it. Rather than
override that method, this ASGI layer works on the one public surface, the HTTP header:

- a response's `Mcp-Session-Id: <id>` goes out as `<replica>.<id>`;
- a request's `Mcp-Session-Id: <replica>.<id>` comes in as `<id>`, so the SDK sees its own ids;
- a request for a session id without this replica's prefix (another replica's session, reaching
  this one because its own replica is gone) is answered `404 Session not found`, exactly as the
  SDK answers an unknown session, which tells a handshake-era client to initialize again.

Clients treat the id as opaque (the spec only asks for visible ASCII), so they notice nothing.
"""

from __future__ import annotations

import logging

from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp_types import INVALID_REQUEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner.deploy.identity import session_prefix

logger = logging.getLogger("runner.deploy")
_HEADER = MCP_SESSION_ID_HEADER.lower().encode("ascii")
_GONE = (
    b'{"jsonrpc":"2.0","id":null,"error":{"code":' + str(INVALID_REQUEST).encode() + b',"message":"Session not found"}}'
)


class SessionAffinity:
    """ASGI middleware: prefix issued session ids with the replica id; strip it from incoming ones."""

    def __init__(self, app: ASGIApp, replica_id: str) -> None:
        self.app = app
        self.prefix = session_prefix(replica_id).encode("ascii")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        for index, (name, value) in enumerate(headers):
            if name != _HEADER:
                continue
            if not value.startswith(self.prefix):
                logger.info("session id %r belongs to another replica (or none): 404", value[:80].decode("latin-1"))
                await _not_found(send)
                return
            headers = [*headers[:index], (name, value[len(self.prefix) :]), *headers[index + 1 :]]
            scope = {**scope, "headers": headers}
            break

        async def outgoing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [self._issued(n, v) for n, v in message.get("headers", [])]}
            await send(message)

        await self.app(scope, receive, outgoing)

    def _issued(self, name: bytes, value: bytes) -> tuple[bytes, bytes]:
        return (name, self.prefix + value) if name == _HEADER else (name, value)


async def _not_found(send: Send) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(_GONE)).encode())]
    await send({"type": "http.response.start", "status": 404, "headers": headers})
    await send({"type": "http.response.body", "body": _GONE})
