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


def subject_of_owner(owner: str) -> str | None:
    """The token subject (issuer, subject) an owner belongs to, whatever its client id, as a string;
    None for an owner known by its address (no auth) or stdio. Tasks are bounded per subject too
    (`server.max_tasks_per_subject`), as sessions and streams are (runner/http/sessions.py)."""
    try:
        who = json.loads(owner)
    except ValueError:
        return None
    if not isinstance(who, list) or len(who) != 4 or who[0] != "token":
        return None
    return json.dumps(["subject", who[1], who[2]], separators=(",", ":"))
