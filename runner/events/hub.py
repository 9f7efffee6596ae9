"""One server's event fan-out: the `SubscriptionBus` it serves with, and everything that delivers from it.

Why a bus of our own rather than the SDK's `InMemorySubscriptionBus`:
- the SDK's bus reaches only 2026-07-28 `subscriptions/listen` streams; ours also
  feeds handshake-era sessions (`runner.events.legacy`), so `ctx.notify_*` in a
  tool reaches both protocol generations;
- events can come from outside any request (a user's thread: `resource_updated`),
  so local delivery is synchronous and can be scheduled onto the loop from any thread;
- events can come from other replicas (`runner.events.redis_bus`): the hub tells
  apart *publishing* (local listeners, then the backend) from *delivering* an event
  that arrived from the backend or from a reload (local listeners only), so no
  replica delivers its own event twice.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import anyio.lowlevel
from mcp.shared.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)

from runner.events.legacy import LegacySessions

logger = logging.getLogger("runner.events")

Listener = Callable[[ServerEvent], None]
LIST_EVENTS: dict[str, ServerEvent] = {
    "tools": ToolsListChanged(),
    "resources": ResourcesListChanged(),
    "prompts": PromptsListChanged(),
}


class Backend(Protocol):
    """Fan-out beyond this process (Redis): `forward` must not block; `run` delivers what other replicas publish."""

    def forward(self, event: ServerEvent) -> None: ...

    async def run(self, deliver: Listener, resync: Callable[[], None]) -> None: ...

    def state(self) -> dict[str, Any]: ...


class EventHub:
    """A `SubscriptionBus` (the SDK's Protocol) plus delivery to handshake-era sessions and other replicas."""

    def __init__(self) -> None:
        self._listeners: dict[object, Listener] = {}
        self.legacy = LegacySessions()
        self.subscribe(self.legacy.deliver)
        self.backend: Backend | None = None
        self._listening: Counter[str] = Counter()  # URI -> open listen streams watching it
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the SubscriptionBus Protocol (mcp.server.subscriptions) ------------------------------

    async def publish(self, event: ServerEvent) -> None:
        """What `ctx.notify_*` calls: every local listener, then every other replica."""
        self.emit(event)
        await anyio.lowlevel.checkpoint()  # let listen streams drain between a burst of publishes

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        token = object()
        self._listeners[token] = listener

        def unsubscribe() -> None:
            self._listeners.pop(token, None)

        return unsubscribe

    # -- delivery -----------------------------------------------------------------------------

    def emit(self, event: ServerEvent) -> None:
        """Publish from this process: deliver here, and forward to the backend (which never echoes it back here)."""
        self.deliver(event)
        if self.backend is not None:
            self.backend.forward(event)

    def deliver(self, event: ServerEvent) -> None:
        """Deliver to this process's listeners only: events from other replicas, and a reload's own news."""
        for listener in list(self._listeners.values()):
            try:
                listener(event)
            except Exception:  # one bad listener must not starve the others or fail the publisher
                logger.exception("event listener raised; continuing")

    def emit_threadsafe(self, event: ServerEvent) -> bool:
        """`emit` from any thread (the loop's own included); False when this hub is not serving."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return False
        try:
            loop.call_soon_threadsafe(self.emit, event)
        except RuntimeError:  # the loop closed in between
            return False
        return True

    def list_changed(self, kind: str) -> bool:
        """A list of this server changed at run time (its `add_tool`...): tell every listener, from any thread."""
        return self.emit_threadsafe(LIST_EVENTS[kind])

    async def run(self) -> None:
        """While the server serves: hand events to handshake-era sessions, and run the backend if any."""
        self._loop = asyncio.get_running_loop()
        with _running_lock:
            _running.add(self)
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self.legacy.run)
                if self.backend is not None:
                    tasks.start_soon(self._run_backend, self.backend)
        finally:
            with _running_lock:
                _running.discard(self)
            self._loop = None

    async def _run_backend(self, backend: Backend) -> None:
        """The backend reconnects by itself; should it ever raise, this process keeps serving without it."""
        try:
            await backend.run(self.deliver, self.resync)
        except Exception:
            logger.exception("event bus stopped; events now reach this process's clients only")

    # -- who watches what (for a reload's resource updates) ---------------------------------------

    def listen_started(self, uris: list[str]) -> None:
        self._listening.update(uris)

    def listen_ended(self, uris: list[str]) -> None:
        self._listening.subtract(uris)
        for uri in uris:
            if self._listening[uri] <= 0:
                self._listening.pop(uri, None)

    def watched(self) -> set[str]:
        """Every resource URI a session or listen stream of this process watches now."""
        return self.legacy.watched() | set(self._listening)

    def resync(self) -> None:
        """After the backend was unreachable: tell this process's clients that anything they watch may have changed.

        Events are level triggers, so a spurious one costs a client a refetch; a lost one, a stale view.
        """
        for event in (ToolsListChanged(), PromptsListChanged(), ResourcesListChanged()):
            self.deliver(event)
        for uri in sorted(self.watched()):
            self.deliver(ResourceUpdated(uri=uri))

    def state(self) -> dict[str, Any]:
        """For /healthz: the bus in use and whether it is connected."""
        if self.backend is None:
            return {"kind": "in-process"}
        return self.backend.state()


_running: set[EventHub] = set()
_running_lock = threading.Lock()


def running_hubs() -> list[EventHub]:
    """The hubs of every server this process serves now (normally one)."""
    with _running_lock:
        return list(_running)
