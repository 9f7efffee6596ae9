"""The access log: one line per HTTP response, and what it knows beyond the line (duration, who).

`mcp-runner serve` writes the line itself, from `AccessLog`, the outermost ASGI
layer, instead of letting uvicorn write it (uvicorn's is turned off with its
`access_log=False`): the same record on the same logger name, `uvicorn.access`,
with the same message and arguments (`'%s - "%s %s HTTP/%s" %d'`: client, method,
path, HTTP version, status), so the text and JSON formats and the token filter
see exactly what they saw, for a third of the CPU. uvicorn's call quoted the path,
built the query string the token filter then cut off, and looked up its caller's
source line through the logging machinery for every request
(`bench/throughput.py`: "runner, no access log" is the comparison; the README's
Performance section has the figures).

`RequestContext` and `AccessLog` put the request's scope and start time in a
context variable, so the JSON formatter can add `duration_ms` (until the response
started: for a stream, its opening) and, once the bearer gate has set the user,
`subject` and `client_id`, to the access record. The Python API
(`FastMCPSignInWrapper.run()`) runs as the SDK does, with uvicorn's own access
line and `RequestContext` alone. Nothing else is logged, so no line is added or
lost whichever format is chosen.
"""

from __future__ import annotations

import logging
import re
import time
from contextvars import ContextVar
from typing import Any
from urllib.parse import quote

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner.http.redact import ACCESS_LOGGER  # uvicorn's logger name, kept: log readers know it
from runner.observe import lines

ACCESS_MESSAGE = '%s - "%s %s HTTP/%s" %d'  # uvicorn's message: client, method, path, HTTP version, status
_UNQUOTED = re.compile(r"[A-Za-z0-9_.~/-]*")  # what urllib.parse.quote leaves as it is

_REQUEST: ContextVar[tuple[Scope, float] | None] = ContextVar("mcp_runner_request", default=None)


class RequestContext:
    """ASGI middleware: remember the current request for the access log (no I/O, no allocation but a tuple)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        reset = _REQUEST.set((scope, time.perf_counter()))
        try:
            await self.app(scope, receive, send)
        finally:
            _REQUEST.reset(reset)


def request_fields() -> dict[str, Any]:
    """duration_ms, subject and client_id of the request being answered, as far as they are known."""
    current = _REQUEST.get()
    if current is None:
        return {}
    scope, started = current
    fields: dict[str, Any] = {"duration_ms": round((time.perf_counter() - started) * 1000, 3)}
    user = scope.get("user")
    if isinstance(user, AuthenticatedUser):
        fields["subject"] = user.access_token.subject
        fields["client_id"] = user.access_token.client_id
    return fields


class AccessLog:
    """ASGI middleware, outermost: the access line of each HTTP response, written as its head is sent.

    The query string is left out: MCP never uses one, and it is where a misconfigured
    client puts `?access_token=` (runner/http/redact.py cut it from uvicorn's line).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.logger = logging.getLogger(ACCESS_LOGGER)
        self.root = logging.getLogger()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return

        async def logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._write(scope, message["status"])
            await send(message)

        reset = _REQUEST.set((scope, time.perf_counter()))
        try:
            await self.app(scope, receive, logged)
        finally:
            _REQUEST.reset(reset)

    def _write(self, scope: Scope, status: int) -> None:
        client = scope.get("client")
        path = scope["path"]
        if not _UNQUOTED.fullmatch(path):
            path = quote(path)
        address = f"{client[0]}:{client[1]}" if client else ""
        args = (address, scope["method"], path, scope["http_version"], status)
        if lines.write(self.root, ACCESS_LOGGER, ACCESS_MESSAGE, args):
            return
        record = self.logger.makeRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, ACCESS_MESSAGE, args, None)
        # uvicorn's `access_log=False` took the logger's handlers and propagation away: the root's handlers
        # (the CLI's stderr handler with its format and token filter) get the record directly.
        self.root.handle(record)
