"""The one reach into an SDK private attribute that events need, kept here so it is easy to find.

Why: a handshake-era session is one `Connection`, and that is what carries its
standing GET stream (`send_resource_updated`, `send_tool_list_changed`...). Lowlevel
request handlers and server middleware get a `ServerRequestContext`, whose
`session` is built anew for every request and exposes the connection only as
`_connection` (mcp 2.3; the public `Context.connection` is not what the runner
hands handlers). If the SDK renames it, `connection_of` raises, and the
subscription tests (tests/test_events.py) fail on their first subscribe.
"""

from __future__ import annotations

from typing import Any

from mcp.server.connection import Connection


def connection_of(ctx: Any) -> Connection:
    """The `Connection` behind a request's context."""
    connection = getattr(ctx.session, "_connection", None)
    if not isinstance(connection, Connection):
        raise RuntimeError("mcp SDK changed: ServerSession._connection is gone; update runner/events/sdk.py")
    return connection
