"""Calls in flight to another server, bounded per client and in all: one client never locks the others out.

One bound, for both kinds of outside server the manifest names: an upstream MCP server (`upstreams:`,
runner/upstreams) and an HTTP API (`openapi:`, runner/openapi). Every request that waits on one counts:
a tool call, a prompt get, a resource read (a template's too). Why a bound: such requests share a
connection pool (an HTTP upstream's calls and its liveness ping, an API's calls), and a slow server
holds each connection until it answers. 110 tool calls of one client to a slow upstream made every
other client's call wait, then the ping found no connection and the upstream was marked down for
every client; prompt gets and resource reads did the same before they were counted.

So one client may have `server.max_upstream_calls_per_client` requests in flight to one upstream or
API, and all clients together `MAX_CALLS`, no more than the runner's pool for it holds (the lean
lane's connections, runner/upstreams/lean.py; the SDK client's and an API's 100): a counted request
never waits for a connection, and the ping always finds one. A request beyond either bound is
refused at once with an error saying the server is busy, as a full tool pool does
(runner/build/pool.py): nothing waits, so memory and waiting stay bounded.

A client is who the HTTP layer counts as one (runner/http/sessions.py `principal`: the token's issuer,
subject and client id, or the address without auth), as for sessions and standing streams.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError

from runner.http.sessions import principal

MAX_CALLS = 64  # in flight to one upstream or API, all clients together
_ALL = "*"
# (kind, name, client) -> requests in flight; (kind, name, _ALL): all clients. kind: "upstream" or "API".
_inflight: dict[tuple[str, str, str], int] = {}


class Busy(ToolError):
    """The client, or all clients together, have as many requests in flight to the server as allowed."""


def caller(context: Any) -> str:
    """Who makes the request, as the HTTP layer counts clients; "stdio" for the one client of a stdio server
    (or a call from inside the process, which has no request)."""
    try:
        request = getattr(getattr(context, "request_context", None), "request", None)
    except ValueError:  # the SDK's Context outside of a request
        request = None
    scope = getattr(request, "scope", None)
    return repr(principal(scope)) if isinstance(scope, dict) else "stdio"


@contextmanager
def slot(kind: str, name: str, who: str, per_client: int) -> Iterator[None]:
    """One request in flight to the `kind` (upstream, API) named `name` for `who`, or Busy at once."""
    mine, everyone = (kind, name, who), (kind, name, _ALL)
    if _inflight.get(mine, 0) >= per_client:
        raise Busy(
            f"server busy: this client has {per_client} calls in flight to {kind} {name!r} already "
            "(server.max_upstream_calls_per_client); try again when one has finished"
        )
    if _inflight.get(everyone, 0) >= MAX_CALLS:
        raise Busy(f"server busy: {MAX_CALLS} calls are in flight to {kind} {name!r}; try again later")
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
