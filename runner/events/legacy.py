"""Events for handshake-era sessions: list_changed to all of them, resource updates to their subscribers.

Handshake-era clients hear server events as notifications on their session's
standing GET stream, and subscribe to a resource with `resources/subscribe`.
The SDK keeps no list of sessions and no subscriptions, so this module does:
it sees each session's `Connection` pass through server middleware (weakly held:
a closed session is forgotten with it) and records what each one subscribed to.

Sending is per session, in a task of its own, so one session whose stream is
not read never holds up the others. What waits to be sent is bounded per
session: events are level triggers ("this changed, read it again"), so a
repeat of one already waiting is dropped, and a session can wait for at most
its subscriptions plus the three list kinds.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
from mcp.server.connection import Connection
from mcp.shared.subscriptions import PromptsListChanged, ResourcesListChanged, ServerEvent, ToolsListChanged
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from runner.events.sdk import connection_of

logger = logging.getLogger("runner.events")

MAX_SUBSCRIPTIONS_PER_SESSION = 100  # resource URIs one session (or one listen stream) may watch
SEND_TIMEOUT = 30.0  # seconds one notification may wait on a session's stream before it is dropped


class SubscriptionLimit(Exception):
    """A session asked to watch more resources than MAX_SUBSCRIPTIONS_PER_SESSION."""


class LegacySessions:
    """The live handshake-era sessions, what each subscribed to, and delivery to them."""

    def __init__(self) -> None:
        self._sessions: weakref.WeakSet[Connection] = weakref.WeakSet()
        self._subscriptions: weakref.WeakKeyDictionary[Connection, set[str]] = weakref.WeakKeyDictionary()
        self._pending: dict[Connection, dict[ServerEvent, None]] = {}
        self._tasks: anyio.abc.TaskGroup | None = None

    async def track(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        """Server middleware: remember every handshake-era session whose requests pass."""
        try:
            connection = connection_of(ctx)
        except RuntimeError:  # an SDK change never fails a request; subscribing says what broke
            return await call_next(ctx)
        if connection.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            self._sessions.add(connection)
        return await call_next(ctx)

    def __len__(self) -> int:
        return len(self._sessions)

    # -- subscriptions ------------------------------------------------------------------------

    def subscribe(self, connection: Connection, uri: str) -> None:
        watched = self._subscriptions.setdefault(connection, set())
        if uri not in watched and len(watched) >= MAX_SUBSCRIPTIONS_PER_SESSION:
            raise SubscriptionLimit(
                f"subscription limit reached: a session may watch at most {MAX_SUBSCRIPTIONS_PER_SESSION} resources"
            )
        watched.add(uri)
        self._sessions.add(connection)

    def unsubscribe(self, connection: Connection, uri: str) -> None:
        self._subscriptions.get(connection, set()).discard(uri)

    def watched(self) -> set[str]:
        """Every URI some handshake-era session watches now."""
        return set().union(*self._subscriptions.values()) if len(self._subscriptions) else set()

    # -- delivery -----------------------------------------------------------------------------

    def deliver(self, event: ServerEvent) -> None:
        """A bus listener (synchronous, on the loop): queue `event` for every session it concerns."""
        if isinstance(event, ToolsListChanged | PromptsListChanged | ResourcesListChanged):
            targets = [c for c in self._sessions if c.protocol_version not in MODERN_PROTOCOL_VERSIONS]
        else:
            targets = [c for c, uris in self._subscriptions.items() if event.uri in uris]
        for connection in targets:
            self._queue(connection, event)

    def _queue(self, connection: Connection, event: ServerEvent) -> None:
        if self._tasks is None:
            logger.debug("no event delivery running; dropped %r for a session", event)
            return
        pending = self._pending.get(connection)
        if pending is not None:
            pending[event] = None  # a sender is running for this session and will pick it up
            return
        self._pending[connection] = {event: None}
        self._tasks.start_soon(self._drain, connection)

    async def _drain(self, connection: Connection) -> None:
        pending = self._pending[connection]
        try:
            while pending:
                event = next(iter(pending))
                del pending[event]
                with anyio.move_on_after(SEND_TIMEOUT):
                    await _send(connection, event)
        finally:
            del self._pending[connection]

    async def run(self) -> None:
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            try:
                await anyio.sleep_forever()
            finally:
                self._tasks = None


async def _send(connection: Connection, event: ServerEvent) -> None:
    """The handshake-era notification for `event` (best effort: a closed stream drops it)."""
    if isinstance(event, ToolsListChanged):
        await connection.send_tool_list_changed()
    elif isinstance(event, PromptsListChanged):
        await connection.send_prompt_list_changed()
    elif isinstance(event, ResourcesListChanged):
        await connection.send_resource_list_changed()
    else:
        await connection.send_resource_updated(event.uri)
