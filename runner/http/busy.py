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
subject and client id, or the address without auth), as for sessions and standing streams; and as there,
a token's subject is also counted over all its client ids, at most `MAX_CALLS_PER_SUBJECT`, half of
`MAX_CALLS`: dynamic client registration hands out client ids freely, and one user with four of them
would otherwise hold all 64 at the default of 16 each.

A request the runner gives up on (the client cancelled it) keeps its slot until the entry's `timeout`
passes: the server it went to may still be running it, and a freed slot let one client, calling and
cancelling 16 at a time, have 192 running at an upstream. The runner no longer hears that answer, so the
slot is held until the deadline (released lazily, at the next request's `slot`: counts are only read there).

Without auth a client is its address, and one host has many (127.0.0.2, .3, ... to any local process; a
whole IPv6 /64): addresses are also counted by network (`network`), under the subject's cap. And since two
users at 32 would hold all 64, beyond `SHARED` in all a user takes a slot only while it holds fewer than
`SHARE`, so one holding none is still served (docs/security.md, "Requests to upstreams and APIs").

It lives here, beside the other per-client bounds of the HTTP layer, so that both feature packages use
it without importing each other (features attach through runner/attach.py, docs/architecture.md); the
counts are the process's and kept by the server a request reaches, so they carry across reloads (even one
that renames the entry) as the requests they count do.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
from mcp.server.mcpserver.exceptions import ToolError

from runner.http.security import is_loopback_address
from runner.http.sessions import WHO, Principal, counted, principal, subject_of

MAX_CALLS = 64  # in flight to one upstream or API, all clients together
MAX_CALLS_PER_SUBJECT = MAX_CALLS // 2  # of one token subject, over all its client ids: never all of them
STDIO: Principal = ("stdio",)  # the one client of a stdio server (or a call from inside the process)
_ALL: Principal = ("*",)
SHARED = MAX_CALLS * 3 // 4  # in flight in all beyond which a user (subject, or network without auth) may
SHARE = MAX_CALLS // 16  # take a slot only while it holds fewer than this: the last 16 are kept for the others
_SETTING = {
    "client": "server.max_upstream_calls_per_client",
    "subject": f"half of the {MAX_CALLS} allowed in all",
    "network": f"half of the {MAX_CALLS} allowed in all",
}
_WHO = {**WHO, "network": "this client's network (all loopback addresses, or its IPv4 /24 or IPv6 /64)"}
# (kind, server, who) -> requests in flight. kind: "upstream" or "API"; server: what it reaches (see slot);
# who: a principal, a subject, a network or _ALL.
_inflight: dict[tuple[str, str, Principal], int] = {}
# Requests the runner gave up on (cancelled) that still count: (until, order, their keys), soonest first.
_lingering: list[tuple[float, int, list[tuple[str, str, Principal]]]] = []
_order = itertools.count()


class Busy(ToolError):
    """The client, its user or all clients together have as many requests in flight to the server as allowed."""


def caller(context: Any) -> Principal:
    """Who makes the request (an SDK Context), as the HTTP layer counts clients."""
    try:
        request = getattr(getattr(context, "request_context", None), "request", None)
    except ValueError:  # the SDK's Context outside of a request
        request = None
    scope = getattr(request, "scope", None)
    return principal(scope) if isinstance(scope, dict) else STDIO


def network(address: Any) -> Principal:
    """The group an address without auth is counted in: all of loopback as one (one process can use 127.0.0.2,
    .3, ...), else its IPv4 /24 or IPv6 /64 (one host has a whole /64)."""
    if not isinstance(address, str):
        return ("network", None)
    if is_loopback_address(address):
        return ("network", "loopback")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ("network", address)  # not an address (a unix socket's path): itself
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 64
    return ("network", str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False)))


def _group(who: Principal) -> Principal:
    """The user whose share of the last slots a request takes: a token's subject, an address's network."""
    if (subject := subject_of(who)) is not None:
        return subject
    return network(who[1]) if who[0] == "address" else who


def _sweep(now: float) -> None:
    """Stop counting the given-up requests whose grace has passed (lazily: counts are only read here)."""
    while _lingering and _lingering[0][0] <= now:
        _, _, keys = heapq.heappop(_lingering)
        _release(keys)


def _release(keys: list[tuple[str, str, Principal]]) -> None:
    for key in keys:
        left = _inflight[key] - 1
        if left:
            _inflight[key] = left
        else:
            del _inflight[key]  # memory follows the calls in flight, not the clients ever seen


@contextmanager
def slot(
    kind: str, name: str, who: Principal, per_client: int, grace: float = 0.0, reach: str | None = None
) -> Iterator[None]:
    """One request in flight to the `kind` (upstream, API) named `name` for `who`, or Busy at once.

    The counts are kept by `reach`, the server the request goes to (an upstream's URL or command, an API's
    base URL), not by the entry's name: a reload that renames an entry, or two entries naming one server,
    count against the same bound (before, each new name started at 0 while the old calls still ran).

    `grace` is the entry's `timeout`: a request the runner gives up on (the client cancelled it, or went away)
    stays counted until `grace` seconds after it started, since the server it went to may still be running it."""
    started = time.monotonic()
    _sweep(started)
    keys = []
    server = reach or name
    caps = counted(who, min(per_client, MAX_CALLS_PER_SUBJECT), MAX_CALLS_PER_SUBJECT)
    if who[0] == "address":  # without auth: an address's network, as a token's subject over its client ids
        caps.append((network(who[1]), MAX_CALLS_PER_SUBJECT, "network"))
    for key, limit, counts in caps:
        keys.append((kind, server, key))
        if _inflight.get(keys[-1], 0) >= limit:
            raise Busy(
                f"server busy: {_WHO[counts]} has {limit} calls in flight to {kind} {name!r} already "
                f"({_SETTING[counts]}); try again when one has finished"
            )
    everyone = (kind, server, _ALL)
    total = _inflight.get(everyone, 0)
    if total >= MAX_CALLS:
        raise Busy(f"server busy: {MAX_CALLS} calls are in flight to {kind} {name!r}; try again later")
    if total >= SHARED and _inflight.get((kind, server, _group(who)), 0) >= SHARE:
        raise Busy(
            f"server busy: {total} calls are in flight to {kind} {name!r}, and the last {MAX_CALLS - SHARED} of "
            f"{MAX_CALLS} are kept for users with fewer than {SHARE}; try again when one has finished"
        )
    keys.append(everyone)
    for key in keys:
        _inflight[key] = _inflight.get(key, 0) + 1
    try:
        yield
    except anyio.get_cancelled_exc_class():
        deadline = started + grace
        if deadline > time.monotonic():
            heapq.heappush(_lingering, (deadline, next(_order), keys))  # released by a later _sweep
            keys = []
        raise
    finally:
        _release(keys)
