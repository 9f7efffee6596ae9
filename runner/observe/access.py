"""What the access log knows about a request beyond uvicorn's line: its duration and who made it.

uvicorn writes its access line from inside the app's `send` of the response
start, in the request's task. `RequestContext`, the outermost ASGI layer,
puts the request's scope and start time in a context variable there, so the
JSON formatter can add `duration_ms` (until the response started: for a
stream, its opening) and, once the bearer gate has set the user, `subject`
and `client_id`, to the very record uvicorn emits. Nothing else is logged,
so no line is added or lost whichever format is chosen.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.types import ASGIApp, Receive, Scope, Send

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
