"""The four list methods answered from the wire form of the last identical answer.

Why: the SDK shapes every result twice on its way out: a model dump of what the
handler returned, then a validation and a dump against the protocol version's
surface (`ServerRunner._serialize`, then `serialize_server_result`). For a list
of 1,000 tools that was over 80% of the server's time per list, the same work
each time for the same answer.

What an answer depends on, all of it in the key or behind `clear()`:
- the catalog, the policy, the page size and the server info: they change only
  when a reload swaps them (`FastMCPSignInWrapper.adopt`) or when code adds or
  removes an entry through the server's public methods; both clear the cache;
- the caller: the list is filtered by its token's scopes (no token: unfiltered);
- the request: the method, the protocol version (the surface differs), the cursor.

A hit still goes through what the SDK checks before a handler runs: the request's
surface validation, and on a handshake-era connection, that `initialize` came
first. Only answers the SDK's own pipeline produced are kept; errors never are.
A hit hands out a copy of the kept dict's top level, as the SDK copies what a handler
returns. Below it the kept answer is shared: the runner's own middleware and the SDK only
read it. Middleware of the user's (`add_middleware`) may edit a result in place, as the SDK
lets it; once there is some, the cache keeps each answer pickled and hands out a new copy
of all of it per hit (`pickle.loads`: 4 ms for 1,000 tools, half of what `json.dumps` of the
same takes, and no outside bytes ever reach it), so one answer's edits never show in the next.
Only while the cache is the innermost middleware: one appended to `server.middleware` after
it (as the SDK's guide says) may shape each answer for its caller, so then every list request
goes down the SDK's path, as without the cache.
A change from a tool's worker thread (`ctx.mcp_server.add_tool`) is safe too: an answer
computed while the lists changed lands in the store `clear()` has just replaced.

Bounded, least recently used out first: at most `ENTRIES` answers holding `ITEMS` list
items in all (a tool with a small schema is about 2.3 kB kept: 1,000 tools, 2.3 MB).
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp_types.methods import validate_client_request
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

METHODS = frozenset({"tools/list", "prompts/list", "resources/list", "resources/templates/list"})
ENTRIES = 64
ITEMS = 8_000


class ListCache:
    """Server middleware; innermost, so the observers around it see every request."""

    def __init__(self, chain: list[Any]) -> None:
        # The server's middleware list. Middleware appended to it after the cache (the SDK's guide
        # says to append) runs inside it and may decide each answer, per caller: then nothing is kept.
        self._chain = chain
        self._copies = False
        self._store = _Store(self._copies)
        # Set by a stateless app: the SDK serves its handshake-era requests born ready, without
        # `initialize` (and so without client params) on their one-request connections.
        self.born_ready = False

    def copy_answers(self) -> None:
        """From now on, keep and hand out whole copies: middleware outside may edit a result in place."""
        self._copies = True
        self.clear()  # what was kept before may be handed out already

    def clear(self) -> None:
        # A new store rather than emptying this one: a list computed while the lists changed
        # (in this thread or, from a tool's worker thread, in another) lands in the old one.
        self._store = _Store(self._copies)

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        key = _key(ctx)
        if key is None or self._chain[-1] is not self:
            return await call_next(ctx)
        store = self._store
        if key in store and _admitted(ctx, self.born_ready):
            return store.get(key)
        answer = await call_next(ctx)
        if isinstance(answer, dict):
            store.keep(key, answer)
        return answer


class _Store:
    """The kept answers, each a dict or (`copies`) its pickle; `get` hands out the caller's own."""

    def __init__(self, copies: bool) -> None:
        self.copies = copies
        self._answers: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._items = 0

    def __contains__(self, key: Hashable) -> bool:
        return key in self._answers

    def get(self, key: Hashable) -> dict[str, Any]:
        """The kept answer for `key` (there is one: see `__contains__`), now the most recently used."""
        kept = self._answers[key]
        self._answers.move_to_end(key)
        # The top level is the caller's, as the SDK does with what a handler returns; all of it
        # when middleware outside may edit it.
        answer: dict[str, Any] = pickle.loads(kept[0]) if self.copies else dict(kept[0])
        return answer

    def keep(self, key: Hashable, answer: dict[str, Any]) -> None:
        items = sum(len(value) for value in answer.values() if isinstance(value, list))
        if items > ITEMS or key in self._answers:
            return
        # Taken now, before the middleware outside sees `answer`: its edits stay the first caller's.
        self._answers[key] = (pickle.dumps(answer, pickle.HIGHEST_PROTOCOL) if self.copies else dict(answer), items)
        self._items += items
        while len(self._answers) > ENTRIES or self._items > ITEMS:
            _, (_, dropped) = self._answers.popitem(last=False)
            self._items -= dropped


def _key(ctx: Any) -> Hashable | None:
    """What the answer to this request depends on, or None when it is not a list request worth keeping."""
    if ctx.method not in METHODS:
        return None
    params = ctx.params or {}
    cursor = params.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        return None  # the SDK refuses it; let it
    token = get_access_token()
    scopes = None if token is None else frozenset(token.scopes)
    return (ctx.method, ctx.protocol_version, cursor, scopes)


def _admitted(ctx: Any, born_ready: bool) -> bool:
    """What the SDK checks before any handler runs, for a request answered without one."""
    if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS and ctx.session.client_params is None and not born_ready:
        return False  # no `initialize` yet on this connection: the SDK's answer is its own
    try:
        validate_client_request(ctx.method, ctx.protocol_version, ctx.params)
    except (KeyError, ValueError, ValidationError):
        return False
    return True
