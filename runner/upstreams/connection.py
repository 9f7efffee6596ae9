"""One upstream MCP server: a connection opened once and reused, reopened with backoff when it fails.

`Connection.run` keeps a `mcp.client.Client` open for as long as the entry is served: it connects
(a stdio command is started by runner/upstreams/stdio.py, an HTTP upstream gets only the
manifest's `headers`: a client's bearer token is never sent upstream), lists the upstream's tools,
prompts, resources and templates, and then pings it every few seconds. A failed connect, a dead
process or a failed ping marks it down (calls then fail naming it), and it is connected again after
a backoff that doubles up to `MAX_BACKOFF`; a stdio upstream is started again the same way. A failure that
repeats is logged in full once, then in one short line a retry (runner/upstreams/retries.py).

Over HTTP the connection also has a `lane` (runner/upstreams/lean.py): the calls' own path on the
same session. When the upstream answers a call 404 (it forgot the session), `renewed` has the
connection opened again at once, keeping its listing, and hands the caller the new session's lane.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp.client import Client
from mcp.client.session import IncomingMessage, MessageHandlerFnT
from mcp.client.streamable_http import streamable_http_client

from runner.manifest.model import UpstreamEntry
from runner.paging import every_page
from runner.upstreams import forward, lean, wire
from runner.upstreams.inflight import Flights, attributed
from runner.upstreams.keepalive import KeepAlive
from runner.upstreams.retries import Retries
from runner.upstreams.stdio import MAX_MESSAGE_BYTES, Stderr, stdio_transport

logger = logging.getLogger("runner")

PING_INTERVAL = 2.0  # seconds between liveness pings: how soon a dead upstream is noticed
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
# An upstream's list changes are listed again at most once per this many seconds (its notifications in between are
# one), and clients hear of a change only when the listing differs: a storm of list_changed is not passed on.
RELIST_INTERVAL = 1.0
# One kind's listing, every page together, is what every client's tools/list (say) carries and costs: past either
# bound the listing fails (at connect the upstream is down; later the last listing stays), the reason logged.
MAX_LISTING_BYTES = MAX_MESSAGE_BYTES
MAX_LISTING_ITEMS = 2000
# The initialize handshake, which every MCP server speaks (2026-07-28 servers too): it keeps `ping` for liveness,
# and the upstream's notifications and requests (list changes, progress, elicitation) on the connection.
MODE = "legacy"


def identity(entry: UpstreamEntry) -> str:
    """What the connection depends on: a reload that changes none of it keeps the connection (and its process)."""
    return entry.model_dump_json(include={"command", "env", "url", "headers", "timeout"}) + str(entry.folder)


@dataclass
class Listing:
    """What the upstream serves, as it last said."""

    tools: list[types.Tool] = field(default_factory=list)
    prompts: list[types.Prompt] = field(default_factory=list)
    resources: list[types.Resource] = field(default_factory=list)
    templates: list[types.ResourceTemplate] = field(default_factory=list)


class Unavailable(Exception):
    """The upstream cannot be reached now; the message names it and says why."""


class Connection:
    def __init__(self, entry: UpstreamEntry, changed: Callable[[str], None]) -> None:
        self.entry = entry
        self.key = identity(entry)
        self.state = "connecting"  # connecting | connected | down
        self.error: str | None = None
        self.since = time.time()
        self.connects = 0
        self.listing = Listing()
        self.client: Client | None = None
        self.flights = Flights(entry.timeout)  # stdio: which call a message belongs to (inflight.py)
        self.lane: lean.Lane | None = None  # HTTP: the session's lean call path (runner/upstreams/lean.py)
        self.retries = Retries(entry.name, Stderr(entry.name) if entry.command else None)  # what a failure logs
        self._renew = anyio.Event()  # set: the session expired, connect again
        self._laned = anyio.Event()  # set when a new lane is ready; replaced by the next renewal
        self._changed = changed  # "tools" | "prompts" | "resources": what the served lists must forget
        self._dirty: set[str] = set()  # kinds the upstream said changed, not listed again yet
        self._wake: anyio.Event | None = None  # set when `_dirty` gets a kind; made per connection, in the loop

    @property
    def name(self) -> str:
        return self.entry.name

    def public(self) -> dict[str, Any]:
        """For /healthz: state and counts, never a header or an argument."""
        return {
            "state": self.state,
            "transport": "stdio" if self.entry.command else "http",
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since)),
            "connects": self.connects,
            # The kind of failure only: /healthz answers without a token, and a message can name internal hosts.
            "error": _kind(self.error),
            "tools": len(self.listing.tools),
            "prompts": len(self.listing.prompts),
            "resources": len(self.listing.resources) + len(self.listing.templates),
        }

    def _mark(self, state: str, error: str | None = None, note: str = "") -> None:
        """Log a change of state (but `down`: `retries` logs each failure); `note` is said with it."""
        if state != self.state:
            self.since = time.time()
        if state != "down" and (state != self.state or _kind(error) != _kind(self.error)):
            log = logger.info if state == "connected" else logger.warning
            said = error or note
            log("upstream %r: %s%s", self.name, state, f" ({said})" if said else "")
        self.state, self.error = state, error

    def client_or_raise(self) -> Client:
        if self.client is None or self.state != "connected":
            why = f": {self.error}" if self.error else ""
            raise Unavailable(f"upstream {self.name!r} is unavailable ({self.state}{why})")
        return self.client

    async def run(self) -> None:
        """Until cancelled: connect, serve, and connect again after a failure."""
        backoff = FIRST_BACKOFF
        while True:
            started = time.monotonic()
            failure = None
            try:
                await self._connected()  # returns when the upstream no longer knows the session (lean.Expired)
                self._renew = anyio.Event()
                self._mark("connecting", "the session expired")
                continue  # connect again at once; its tools stay listed while the new session opens
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:  # any failure of the upstream is its state, never the runner's
                failure = reason(exc)
                self._mark("down", failure)
                self._laned.set()  # a call waiting for a new session hears that there is none
            finally:
                self.client, self.lane = None, None
            self._forget()
            if time.monotonic() - started > MAX_BACKOFF:
                backoff = FIRST_BACKOFF  # it served a while: try again soon
            if failure is not None:
                self.retries.failed(failure, backoff)
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _forget(self) -> None:
        had = self.listing
        self.listing = Listing()
        for kind, count in (("tools", len(had.tools)), ("prompts", len(had.prompts))):
            if count:
                self._changed(kind)
        if had.resources or had.templates:
            self._changed("resources")

    async def _connected(self) -> None:
        entry = self.entry
        self.retries.starting()
        opened = transport_client(entry, self._on_message, self.flights, self.retries.stderr)
        async with opened as client:
            self.client = client
            self.connects += 1
            self._dirty, self._wake = set(), anyio.Event()
            await self.refresh(client)
            self.lane = opened.lane(self._listed) if isinstance(opened, _http_client) else None
            self._laned.set()
            # The served lists show a connection's listing from now on (served.py `_each`).
            self._mark("connected", note=self.retries.connected())
            listing = self.listing
            for kind, items in (("tools", listing.tools), ("prompts", listing.prompts)):
                if items:
                    self._changed(kind)
            if listing.resources or listing.templates:
                self._changed("resources")
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._relist, client)
                while True:
                    with anyio.move_on_after(PING_INTERVAL):
                        await self._renew.wait()
                    if self._renew.is_set():
                        logger.info("upstream %r: the session expired, connecting again", self.name)
                        tasks.cancel_scope.cancel()
                        return
                    with anyio.fail_after(entry.timeout):
                        await client.session.send_ping()  # the session's: a handshake-era connection has ping

    async def refresh(self, client: Client, kinds: tuple[str, ...] = ("tools", "prompts", "resources")) -> None:
        """List what the upstream serves (every page), for the kinds it has."""
        caps = client.server_capabilities
        with self.flights.hold(None), anyio.fail_after(self.entry.timeout):  # messages meanwhile go to no caller
            if "tools" in kinds and caps.tools is not None:
                self._update("tools", tools=await _all(client.session.list_tools, "tools"))
            if "prompts" in kinds and caps.prompts is not None:
                self._update("prompts", prompts=await _all(client.session.list_prompts, "prompts"))
            if "resources" in kinds and caps.resources is not None:
                resources = await _all(client.session.list_resources, "resources")
                templates = await _all(client.session.list_resource_templates, "resource_templates")
                self._update("resources", resources=resources, templates=templates)

    def _update(self, kind: str, **lists: list[Any]) -> None:
        """The listing as the upstream says it now; the served lists forget theirs only when it differs (and it is
        served: while connecting, `_connected` says so once connected)."""
        if any(getattr(self.listing, key) != value for key, value in lists.items()):
            for key, value in lists.items():
                setattr(self.listing, key, value)
            if self.state == "connected":
                self._changed(kind)

    async def _relist(self, client: Client) -> None:
        """List again what the upstream said changed: at most once per `RELIST_INTERVAL`, however often it says so."""
        while True:
            assert self._wake is not None
            await self._wake.wait()
            self._wake = anyio.Event()
            kinds, self._dirty = tuple(self._dirty), set()
            try:
                await self.refresh(client, kinds)
            except Exception as exc:  # the next ping decides whether it is down
                logger.warning("upstream %r: cannot list %s again (%s)", self.name, ", ".join(kinds), reason(exc))
            await anyio.sleep(RELIST_INTERVAL)

    async def renewed(self, stale: lean.Lane) -> lean.Lane:
        """A lane on a new session, once the upstream said it no longer knows `stale`'s (the caller bounds the wait)."""
        if self.lane is stale and not self._renew.is_set():  # the first to hear it asks; the others wait too
            self._laned = anyio.Event()
            self._renew.set()
        while self.lane is None or self.lane is stale:
            await self._laned.wait()
            if self.lane is None or self.lane is stale:
                raise Unavailable(f"upstream {self.name!r} is unavailable ({self.state})")
        return self.lane

    async def _on_message(self, message: IncomingMessage) -> None:
        """An upstream's list change: that kind is listed again soon (`_relist`); the served lists change with it."""
        await self._listed(str(getattr(message, "method", None)))

    async def _listed(self, method: str) -> None:
        """A list change, from the connection's own stream or a call's (runner/upstreams/lean.py): coalesced."""
        kinds = {
            "notifications/tools/list_changed": "tools",
            "notifications/prompts/list_changed": "prompts",
            "notifications/resources/list_changed": "resources",
        }
        kind = kinds.get(method)
        if kind is not None and self._wake is not None:
            self._dirty.add(kind)
            self._wake.set()


def _kind(error: str | None) -> str | None:
    """The kind of a failure (`ConnectError`, `timed out`): its reason without the message."""
    return error.partition(":")[0] if error else None


async def _all(method: Callable[..., Awaitable[Any]], attribute: str) -> list[Any]:
    """Every page of a session's list method (runner/paging.py), `MAX_LISTING_BYTES` and `MAX_LISTING_ITEMS` at most
    together: past either, `ListingTooLarge` (the upstream lists more than the runner keeps and serves to everyone)."""

    async def page(cursor: str | None) -> Any:
        return await method(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)

    return await every_page(page, attribute, max_items=MAX_LISTING_ITEMS, max_bytes=MAX_LISTING_BYTES)


def transport_client(
    entry: UpstreamEntry, on_message: MessageHandlerFnT, flights: Flights | None = None, stderr: Stderr | None = None
) -> Any:
    if entry.command is not None:
        transport = stdio_transport(entry.name, list(entry.command), dict(entry.env), entry.folder, stderr)
        return Client(
            attributed(transport, flights or Flights(entry.timeout), entry.name),
            mode=MODE,
            read_timeout_seconds=entry.timeout,
            message_handler=on_message,
            cache=None,
            # Over stdio a message reaches a call's client when that call was the only one in flight (inflight.py).
            logging_callback=forward.log,
            elicitation_callback=forward.elicit,
            sampling_callback=forward.sample,
        )
    return _http_client(entry, on_message)


class _http_client:  # noqa: N801 - an async context manager used like a function
    """A Client over streamable HTTP with only the manifest's headers, and the httpx client closed after it."""

    def __init__(self, entry: UpstreamEntry, on_message: MessageHandlerFnT) -> None:
        self.entry, self.on_message = entry, on_message
        self.http: httpx2.AsyncClient | None = None
        self.client: Client | None = None
        self.keepalive = KeepAlive()
        self.lean: lean.Lane | None = None

    async def __aenter__(self) -> Client:
        assert self.entry.url is not None
        timeout = httpx2.Timeout(self.entry.timeout, read=max(self.entry.timeout, 300.0))
        # One long-lived client whose connections stay open across calls (runner/upstreams/keepalive.py); a mount,
        # not `transport=`, so that proxies from the environment (HTTPS_PROXY...) still apply, as httpx2 does them.
        self.http = httpx2.AsyncClient(
            headers=dict(self.entry.headers), timeout=timeout, mounts={"all://": self.keepalive}
        )
        transport = streamable_http_client(self.entry.url, http_client=self.http)
        self.client = Client(
            transport,  # type: ignore[arg-type]
            mode=MODE,
            read_timeout_seconds=self.entry.timeout,
            message_handler=self.on_message,
            cache=None,
            # Over HTTP each call's messages come on its own response stream: they reach its client (forward.py).
            logging_callback=forward.log,
            elicitation_callback=forward.elicit,
            sampling_callback=forward.sample,
        )
        try:
            return await self.client.__aenter__()
        except BaseException:
            await self.http.aclose()
            raise

    def lane(self, listed: Callable[[str], Awaitable[None]]) -> lean.Lane | None:
        """The lean call path on the SDK client's session; None when its requests do not come through KeepAlive
        (a proxy from the environment serves them: calls then stay on the SDK client, through the proxy)."""
        if self.keepalive.session is None or self.entry.url is None:
            return None
        if not wire.available():  # no httptools build for this platform: the SDK's client, slower, still works
            name = self.entry.name
            logger.warning("upstream %r: calls go through the SDK's client (httptools cannot be imported)", name)
            return None
        session, version, url = self.keepalive.session
        try:
            self.lean = lean.lane(url, dict(self.entry.headers), session, version)
        except ValueError as exc:  # a header wire.py will not send as it is: the SDK's client decides, as before
            logger.warning("upstream %r: calls go through the SDK's client (%s)", self.entry.name, exc)
            return None
        self.lean.listed = listed
        return self.lean

    async def __aexit__(self, *exc: Any) -> None:
        try:
            if self.client is not None:
                await self.client.__aexit__(*exc)
        finally:
            if self.lean is not None:
                await self.lean.aclose()
            if self.http is not None:
                await self.http.aclose()


def reason(exc: BaseException) -> str:
    """A short reason, without a traceback or a header value; an exception group says its first leaf."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, httpx2.LocalProtocolError):  # its text quotes the refused header value: a credential
        return "LocalProtocolError: the request is not valid HTTP (a header value?); the text is not shown"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
