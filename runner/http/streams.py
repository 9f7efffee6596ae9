"""Standing streams bounded per client, per subject and in all, so that requests always find a connection.

A standing stream (a handshake-era GET stream, a 2026-07-28 `subscriptions/listen`
stream) holds its connection for as long as the client likes, and a connection
serving one is never evicted (runner/http/limits.py). Uncounted, one valid token
opened 1,000 listen streams and every other client got `503 Too many connections`
for as long as they stayed open; nginx in front does not help, each stream holds an
upstream connection. So this ASGI layer, on the MCP endpoint behind the bearer gate,
counts them:

- per principal (runner/http/sessions.py: the token's issuer, subject and client
  id, or the client's address without auth): at most `per_client`;
- per token subject over all its client ids: at most `per_subject`;
- in all: at most `total`, below the connection limit, so that plain requests (a
  tools/call, a new session, a token refresh) keep some connections whatever the
  streams do.

Over a per-client or per-subject cap a request gets 429, over the total 503 with
`Retry-After`, each with a JSON-RPC error that names the setting. Which requests
stand is decided from the head (runner/http/era.py): a GET, or a 2026-07-28 POST
naming `subscriptions/listen`; a stream leaves the count when its response ends.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter

from mcp_types import INVALID_REQUEST
from starlette.types import ASGIApp, Receive, Scope, Send

from runner.http.era import listen_request
from runner.http.sessions import WHO, counted, principal

logger = logging.getLogger("runner.http")

# Defaults (the manifest's server.max_streams_per_client, server.max_streams_per_subject); server.max_streams
# defaults to STREAM_SHARE of the connection limit.
MAX_STREAMS_PER_CLIENT = 32  # as many as sessions: each handshake-era session may hold one GET stream
MAX_STREAMS_PER_SUBJECT = 128
STREAM_SHARE = 0.75


def default_total(max_connections: int) -> int:
    """Standing streams at most when `server.max_streams` is not set: three quarters of the connections."""
    return max(1, int(max_connections * STREAM_SHARE))


def standing(scope: Scope) -> bool:
    """A request that may hold its connection open indefinitely."""
    method = scope["method"]
    return method == "GET" or (method == "POST" and listen_request(scope["headers"]))


class StreamCap:
    """ASGI middleware: bounded standing streams per principal, per subject and in all."""

    def __init__(self, app: ASGIApp, per_client: int | None, per_subject: int | None, total: int | None) -> None:
        self.app = app
        self.per_client = per_client
        self.per_subject = per_subject
        self.total = total
        self.open: Counter[tuple[object, ...]] = Counter()
        self.streams = 0
        self._reported = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not standing(scope):
            await self.app(scope, receive, send)
            return
        caps = counted(principal(scope), self.per_client, self.per_subject)
        if self.total is not None and self.streams >= self.total:
            self._report()
            message = f"Too many open streams on this server: at most {self.total} (server.max_streams); retry later."
            await _refuse(send, 503, message)
            return
        for key, limit, kind in caps:
            if self.open[key] >= limit:
                message = (
                    f"Too many open streams for {WHO[kind]}: at most {limit} (server.max_streams_per_{kind}). "
                    "Close one first."
                )
                await _refuse(send, 429, message)
                return
        keys = [key for key, _, _ in caps]
        self.streams += 1
        self.open.update(keys)
        try:
            await self.app(scope, receive, send)
        finally:
            self.streams -= 1
            self.open.subtract(keys)
            for key in keys:
                if self.open[key] <= 0:
                    del self.open[key]

    def _report(self) -> None:
        now = time.monotonic()
        if now - self._reported >= 10:  # one line per 10 s, however hard the bound is hit
            self._reported = now
            logger.warning("stream limit (%d, server.max_streams) reached: refused a stream", self.total)


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": INVALID_REQUEST, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
