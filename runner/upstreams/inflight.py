"""Which call a stdio upstream's log message or question belongs to: the one call in flight, or none.

Over stdio every message of the upstream arrives on one pipe, and nothing in it names the request it
belongs to: the SDK's server keeps `related_request_id` in its own metadata, which only its HTTP
transport uses, and sends no `_meta` that says it. But the pipe is ordered, and a server sends a
request's log messages and questions before that request's response. So a message read while exactly
one of the runner's requests is in flight on that upstream belongs to it: `Flights` keeps the requests
in flight, and `attributed` reads the pipe and hands the SDK's dispatcher, with each message, a
`contextvars` context in which `forward.CALLER` is that one call's Context (or None when zero or several
are in flight, or when the one in flight is the runner's own: a prompt get, a resource read, a list).
forward.py then delivers it, or drops a log line and refuses a question, as for any message of no call.

The decision is taken when the message is read, in pipe order, not when its handler runs (the SDK spawns
handlers as tasks; by then the call may have ended and another begun). A request the runner gave up on
(a timeout, a cancelled call) keeps counting as in flight for the upstream's `timeout` afterwards, because
the upstream may still be running it: its late messages are never taken for a newer call's.

Private hook, confined here: the SDK's dispatcher reads `last_context` from its read stream (duck-typed,
mcp/shared/jsonrpc_dispatcher.py, for its own context streams) and spawns each message's handler in it.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
from mcp.shared.exceptions import MCPError

from runner.upstreams import forward


class Flights:
    """The runner's requests in flight on one stdio upstream, each with its caller (None: the runner's own)."""

    def __init__(self, grace: float) -> None:
        self.grace = grace  # how long a request the runner gave up on may still send messages
        self._held: dict[int, Any] = {}
        self._abandoned: dict[int, float] = {}  # key -> monotonic deadline
        self._next = 0

    @contextmanager
    def hold(self, caller: Any) -> Iterator[None]:
        """Counts a request in flight while it runs; one that ends without its answer stays counted a while."""
        self._next += 1
        key = self._next
        self._held[key] = caller
        answered = False
        try:
            yield
            answered = True
        except MCPError:
            answered = True  # the upstream's error answer: it is done with the request
            raise
        finally:
            del self._held[key]
            if not answered:
                self._abandoned[key] = time.monotonic() + self.grace

    def sole(self) -> tuple[Any, int]:
        """The caller of the only request in flight (None when there is not exactly one), and how many there are."""
        now = time.monotonic()
        for key, deadline in list(self._abandoned.items()):
            if deadline <= now:
                del self._abandoned[key]
        count = len(self._held) + len(self._abandoned)
        if count == 1 and self._held:
            return next(iter(self._held.values())), count
        return None, count


class _Attributed:
    """The transport's read stream, each message tagged with the context of the call it belongs to."""

    def __init__(self, inner: Any, flights: Flights, name: str) -> None:
        self._inner, self._flights, self._name = inner, flights, name
        self.last_context: contextvars.Context | None = None

    async def receive(self) -> Any:
        item = await self._inner.receive()
        caller, count = self._flights.sole()
        context = contextvars.copy_context()
        context.run(forward.CALLER.set, caller)
        context.run(forward.UNTIED.set, f"upstream {self._name!r} (stdio, {count} requests in flight)")
        self.last_context = context
        return item

    def __aiter__(self) -> _Attributed:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def close(self) -> None:
        self._inner.close()

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _Attributed:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


@asynccontextmanager
async def attributed(transport: Any, flights: Flights, name: str) -> AsyncIterator[tuple[Any, Any]]:
    """A stdio transport whose messages reach forward.py with the call they belong to, when that is certain."""
    async with transport as (read, write):
        yield _Attributed(read, flights, name), write
