"""Events across replicas over Redis pub/sub (`server.bus: redis://host:port/db`).

Each replica publishes what its code signals (`ctx.notify_*`, `resource_updated`)
to one channel and delivers what the others published to its own clients. A
message names the replica that sent it, and a replica skips its own: it already
delivered those locally when it published them, so nobody hears an event twice.

Redis is an optimisation of delivery, never a dependency of serving:
- publishing never waits for Redis: events queue in a bounded outbox (deduplicated,
  since every event means "this changed, read it again") that a writer task drains;
- on any error the connection is dropped, logged once per outage with the URL's
  password redacted, and opened again with exponential backoff (0.1 s doubling to
  5 s, with jitter); requests are served throughout;
- on reconnecting, the replica tells its own clients that everything they watch may
  have changed (events published elsewhere during the outage were lost: Redis
  pub/sub keeps nothing), and sends what queued up meanwhile;
- the state (`connected`, `connecting`, `disconnected`, since when, the last error's
  kind, outages) is in `/healthz` under `bus`.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import redis.asyncio as redis
from mcp.shared.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger("runner.events")

OUTBOX = 1024  # distinct events waiting for Redis at most; older ones give way
MAX_MESSAGE = 16384  # bytes: anything longer on the channel is not ours
DROP_LOG_INTERVAL = 60.0  # seconds between two log lines about dropped messages
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 5.0
SCHEMES = ("redis://", "rediss://", "unix://")

_KINDS: dict[str, ServerEvent] = {
    "tools": ToolsListChanged(),
    "prompts": PromptsListChanged(),
    "resources": ResourcesListChanged(),
}


def redact(url: str) -> str:
    """The URL with its password (if any) replaced by `***`, for logs and /healthz."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def encode(origin: str, event: ServerEvent) -> str:
    if isinstance(event, ResourceUpdated):
        return json.dumps({"origin": origin, "kind": "resource", "uri": event.uri})
    kind = next(k for k, v in _KINDS.items() if v == event)
    return json.dumps({"origin": origin, "kind": kind})


def decode(data: bytes | str) -> tuple[str, ServerEvent] | None:
    """(origin, event) from a channel message; None for anything that is not a well-formed event.

    Anyone who can publish on the channel can send anything: whatever a message holds (deeply
    nested JSON raises RecursionError, not ValueError), it is a message to drop, never an error
    that reaches `run`, which would take it for a Redis outage and disconnect the replica.
    """
    if len(data) > MAX_MESSAGE:
        return None
    try:
        return _event(json.loads(data))
    except Exception:
        return None


def _event(message: Any) -> tuple[str, ServerEvent] | None:
    if not isinstance(message, dict):
        return None
    origin, kind = message.get("origin"), message.get("kind")
    if not isinstance(origin, str):
        return None
    if kind == "resource":
        uri = message.get("uri")
        return (origin, ResourceUpdated(uri=uri)) if isinstance(uri, str) else None
    event = _KINDS.get(kind) if isinstance(kind, str) else None
    return None if event is None else (origin, event)


class RedisBackend:
    """The `Backend` of an `EventHub` (runner/events/hub.py) over one Redis pub/sub channel."""

    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel
        self.origin = uuid.uuid4().hex  # this process, for skipping our own messages
        self._outbox: dict[ServerEvent, None] = {}
        self._wake = anyio.Event()
        self._state = "connecting"
        self._since = time.time()
        self._error: str | None = None
        self.outages = 0
        self.dropped = 0  # malformed messages seen on the channel and dropped
        self._dropped_logged = (0, float("-inf"))  # (count, when) at the last log line about them

    def forward(self, event: ServerEvent) -> None:
        self._outbox.pop(event, None)  # a repeat moves to the back
        self._outbox[event] = None
        while len(self._outbox) > OUTBOX:
            del self._outbox[next(iter(self._outbox))]
        self._wake.set()

    def state(self) -> dict[str, Any]:
        return {
            "kind": "redis",
            "url": redact(self.url),
            "state": self._state,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._since)),
            "error": self._error,
            "outages": self.outages,
            "dropped": self.dropped,
            "waiting": len(self._outbox),
        }

    async def run(self, deliver: Callable[[ServerEvent], None], resync: Callable[[], None]) -> None:
        """Forever: connect, relay both ways, and on failure back off and connect again."""
        delay = BACKOFF_FIRST
        while True:
            try:
                await self._session(deliver, resync)
            except Exception as exc:  # whatever Redis or the network does, serving goes on
                if self._state == "connected":  # it worked until now: the first retry comes quickly
                    delay = BACKOFF_FIRST
                self._down(_leaf(exc))
            await anyio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, BACKOFF_MAX)

    async def _session(self, deliver: Callable[[ServerEvent], None], resync: Callable[[], None]) -> None:
        client = redis.Redis.from_url(
            self.url,
            socket_connect_timeout=2,
            socket_timeout=5,
            health_check_interval=5,
            retry=Retry(NoBackoff(), 0),  # this loop does the reconnecting, with backoff
        )
        try:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                await client.ping()
                if self._state != "connected":
                    if self.outages:
                        logger.warning("event bus %s reconnected", redact(self.url))
                        resync()  # whatever other replicas published meanwhile was lost
                    else:
                        logger.info("event bus %s connected", redact(self.url))
                    self._state, self._since, self._error = "connected", time.time(), None
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(self._write, client)
                    await self._read(pubsub, deliver)
            finally:
                with anyio.CancelScope(shield=True):
                    await pubsub.aclose()
        finally:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    async def _read(self, pubsub: Any, deliver: Callable[[ServerEvent], None]) -> None:
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is None or message.get("type") != "message":
                continue
            decoded = decode(message["data"])
            if decoded is None:
                self._drop()
                continue
            origin, event = decoded
            if origin != self.origin:
                deliver(event)

    async def _write(self, client: Any) -> None:
        while True:
            while self._outbox:
                event = next(iter(self._outbox))
                await client.publish(self.channel, encode(self.origin, event))
                self._outbox.pop(event, None)  # only once sent: a failed send is retried after reconnecting
            self._wake = anyio.Event()
            if not self._outbox:
                await self._wake.wait()

    def _drop(self) -> None:
        """Count a malformed message; log the first, then at most once a minute (a flood writes no flood of lines)."""
        self.dropped += 1
        logged, at = self._dropped_logged
        now = time.monotonic()
        if now - at >= DROP_LOG_INTERVAL:
            logger.warning(
                "event bus: dropped %d malformed message(s) on channel %r (not sent by a replica; %d in all)",
                self.dropped - logged,
                self.channel,
                self.dropped,
            )
            self._dropped_logged = (self.dropped, now)

    def _down(self, exc: BaseException) -> None:
        kind = type(exc).__name__
        if self._state != "disconnected":
            self.outages += 1
            self._state, self._since = "disconnected", time.time()
            logger.error(
                "event bus %s unreachable (%s); serving on, events reach this replica's clients only "
                "until it is back; reconnecting with backoff",
                redact(self.url),
                _scrub(str(exc) or kind, self.url),
            )
        self._error = kind


def _leaf(exc: BaseException) -> BaseException:
    """The first underlying error of a task group's exception group (the reader's or the writer's)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _scrub(text: str, url: str) -> str:
    """An error message with the URL's password taken out, should a library ever echo it."""
    password = urlsplit(url).password
    return text.replace(password, "***") if password else text
