"""Who owns a task: the principal the HTTP layer counts sessions and streams by (runner/http/sessions.py).

That is the token's (issuer, subject, client id), or the client's address when the server has no
auth; over stdio, the one client that started the process. Kept as a string, so that the Redis
store holds the same value and a task created on one replica is owned the same way on another.
"""

from __future__ import annotations

import json
from typing import Any

from mcp.server.context import ServerRequestContext

from runner.http.sessions import principal


def owner_of(ctx: ServerRequestContext[Any, Any]) -> str:
    scope = getattr(ctx.request, "scope", None)
    if not isinstance(scope, dict):
        return '["stdio"]'
    return json.dumps(list(principal(scope)), separators=(",", ":"))
