"""Stateless mode's GET: 405, as the spec allows, instead of a stream that can never carry anything.

In stateless mode (`server.stateless`) the SDK still answers a handshake-era GET with an SSE
stream, but with no session nothing is ever routed to it: it only holds a connection (and a
balancer's connection) open until a timeout, and keeps a draining replica waiting. The spec lets
a server without a standing stream answer `405 Method Not Allowed`, which clients expect.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

BODY = (
    b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,'
    b'"message":"Method Not Allowed: stateless server, no GET stream"}}'
)


class NoStandingStream:
    """ASGI middleware: GET on the MCP endpoint is 405 (Allow: POST)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        headers = [(b"content-type", b"application/json"), (b"allow", b"POST"), (b"content-length", b"%d" % len(BODY))]
        await send({"type": "http.response.start", "status": 405, "headers": headers})
        await send({"type": "http.response.body", "body": BODY})
