"""Calls in flight to an upstream, bounded per client and in all: one client never locks the others out.

An HTTP upstream's calls share one connection pool (each call holds a connection for its response
stream) with its liveness ping: 110 calls of one client to a slow upstream tool made every other
client's call wait, then the ping found no connection, and the upstream was marked down for every
client. So one client (runner/http/sessions.py `principal`: the token's issuer, subject and client
id, or the address without auth) may have `server.max_upstream_calls_per_client` calls in flight to
one upstream, and all clients together `MAX_CALLS`, well below the pool's 100 connections, so that
the ping always finds one: a busy upstream is never taken for a dead one. A call beyond either is
refused at once with a tool error saying the server is busy, as a full tool pool does
(runner/build/pool.py): nothing waits, so memory and waiting stay bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError

from runner.http.sessions import principal

MAX_CALLS = 64  # in flight to one upstream, all clients together
_ALL = "*"
_inflight: dict[tuple[str, str], int] = {}  # (upstream, client) -> calls in flight; (upstream, _ALL): all clients


class UpstreamBusy(ToolError):
    """The client, or all clients together, have as many calls in flight to the upstream as allowed."""


def caller(context: Any) -> str:
    """Who makes the call, as the HTTP layer counts clients; "stdio" for the one client of a stdio server."""
    request = getattr(getattr(context, "request_context", None), "request", None)
    scope = getattr(request, "scope", None)
    return repr(principal(scope)) if isinstance(scope, dict) else "stdio"


@contextmanager
def slot(upstream: str, who: str, per_client: int) -> Iterator[None]:
    """One call in flight to `upstream` for `who`, or UpstreamBusy at once."""
    mine, everyone = (upstream, who), (upstream, _ALL)
    if _inflight.get(mine, 0) >= per_client:
        raise UpstreamBusy(
            f"server busy: this client has {per_client} calls in flight to upstream {upstream!r} already "
            "(server.max_upstream_calls_per_client); try again when one has finished"
        )
    if _inflight.get(everyone, 0) >= MAX_CALLS:
        raise UpstreamBusy(f"server busy: {MAX_CALLS} calls are in flight to upstream {upstream!r}; try again later")
    for key in (mine, everyone):
        _inflight[key] = _inflight.get(key, 0) + 1
    try:
        yield
    finally:
        for key in (mine, everyone):
            left = _inflight[key] - 1
            if left:
                _inflight[key] = left
            else:
                del _inflight[key]  # memory follows the calls in flight, not the clients ever seen
