"""Drain on SIGTERM, for rolling deploys: stop taking work, let calls finish, close streams, exit 0.

What SIGTERM does (uvicorn does the middle part; this module adds the rest):

1. `/readyz` answers 503 at once (`Replica.draining`), for probes on connections still open.
2. The listening socket is closed, so a new connection is refused and a balancer sends it to
   another replica (nginx retries a refused connection even for a POST: nothing was sent).
   Idle keep-alive connections are closed; busy ones close after their response.
3. Standing streams never finish on their own, so they are ended cleanly (the SSE response
   completes): a 2026-07-28 `subscriptions/listen` stream at once (its client listens again on a
   replica that is not leaving), a handshake-era GET stream once no call is in flight (StreamCloser.drain).
4. Calls in flight finish, for up to `drain_timeout` seconds; then they are cancelled. (Left to
   itself, sse_starlette would end every SSE response, in-flight calls too, at SIGTERM.)
5. The process exits 0: uvicorn would re-raise SIGTERM after its shutdown, which ends the process
   with 143, and an orchestrator reads that as a crash. Ctrl-C (SIGINT) keeps uvicorn's behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType

import anyio
import uvicorn
from sse_starlette.sse import AppStatus
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner.deploy.replica import Replica
from runner.http.era import sessionless

logger = logging.getLogger("runner.deploy")
LISTEN = "subscriptions/listen"
LISTEN_BYTES = LISTEN.encode()
_PEEK = 64 * 1024  # a listen request is small; a larger body is some other call
# Set by the first Ctrl-C. The re-raised SIGINT can land inside a task or worker thread that is being
# torn down and be swallowed there (seen: exit 0 instead of 130), so the CLI also reads this flag.
ctrl_c = threading.Event()


@dataclass(eq=False)
class _Stream:
    kind: str  # "get" (handshake-era standing stream), "listen" (2026-07-28 standing stream), "call"
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    started: bool = False
    finished: bool = False


class StreamCloser:
    """ASGI middleware for the MCP endpoint: knows the standing streams, and ends them on drain."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None
        self.closing = False
        self._open: set[_Stream] = set()
        self._calls = 0  # POSTs in flight that cannot be standing streams (`_surely_a_call`), counted only

    def around(self, app: ASGIApp) -> StreamCloser:
        """Made before the app (the server needs it for SIGTERM), placed around the endpoint when that is built."""
        self.app = app
        return self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None, "StreamCloser.around(app) first"
        if scope["type"] != "http" or scope["method"] not in ("GET", "POST"):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST" and _surely_a_call(scope["headers"]):
            self._calls += 1  # no stream to end, no body to peek: only "is a call in flight" matters
            try:
                await self.app(scope, receive, send)
            finally:
                self._calls -= 1
            return
        stream = _Stream(kind="get" if scope["method"] == "GET" else "call")
        if self.closing and stream.kind == "get":
            await _unavailable(send)  # a replica on its way out opens no new standing stream
            return
        body = bytearray()

        async def peek() -> Message:
            """Reads the body on the app's behalf: a POST is standing when it is `subscriptions/listen`."""
            message = await receive()
            if message["type"] == "http.request" and stream.kind == "call" and len(body) < _PEEK:
                body.extend(message.get("body", b""))
                if not message.get("more_body", False) and _is_listen(bytes(body)):
                    stream.kind = "listen"
                    if self.closing:
                        stream.scope.cancel()
            return message

        async def track(message: Message) -> None:
            if message["type"] == "http.response.start":
                stream.started = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                stream.finished = True
            await send(message)

        self._open.add(stream)
        try:
            with stream.scope:
                await self.app(scope, peek if scope["method"] == "POST" else receive, track)
        finally:
            self._open.discard(stream)
        if stream.scope.cancelled_caught:
            if not stream.started:
                await _unavailable(send)
            elif not stream.finished:
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def drain(self) -> None:
        """End the standing streams: `subscriptions/listen` at once, GET streams once no call is in flight.

        A 2026-07-28 listener reconnects to another replica straight away and misses nothing.
        A handshake-era session cannot move, and some clients (the SDK's) give up the whole
        session when their GET stream cannot reconnect, calls in flight included: so its GET
        stream ends after the calls, just before the replica exits.
        """
        self.closing = True
        listening = self._end(lambda s: s.kind == "listen")
        while self._calls or any(s.kind == "call" for s in self._open):
            await asyncio.sleep(0.05)
        ended = listening + self._end(lambda s: s.kind == "get")
        if ended:
            logger.info("drain: ended %d standing stream(s); their clients reconnect elsewhere", ended)

    def _end(self, which: Callable[[_Stream], bool]) -> int:
        chosen = [s for s in self._open if which(s)]
        for stream in chosen:
            stream.scope.cancel()
        return len(chosen)


_METHOD_HEADER = b"mcp-method"


def _surely_a_call(headers: list[tuple[bytes, bytes]]) -> bool:
    """A POST that can never be a standing stream: all but a 2026-07-28 `subscriptions/listen`.

    The SDK serves `subscriptions/listen` only on its 2026-07-28 path (runner/http/era.py says which
    requests take it): on the handshake-era path the method is not in the session's protocol version
    and is refused. On the 2026-07-28 path the SDK refuses a body whose method differs from the
    `Mcp-Method` header. Decided from the head alone, this spares the common call the stream record,
    the cancel scope and the wrapped receive and send (about 2.5% of a tools/call's CPU in either
    generation, profiled). Anything else takes the full path.
    """
    if not sessionless(headers):
        return True
    return not any(name == _METHOD_HEADER and value == LISTEN_BYTES for name, value in headers)


def _is_listen(body: bytes) -> bool:
    """Whether the body is a `subscriptions/listen` request; any body the SDK would refuse is not."""
    if LISTEN.encode() not in body:
        return False
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):  # a deeply nested body is the SDK's to refuse, never a 500 here
        return False
    return isinstance(message, dict) and message.get("method") == LISTEN


async def _unavailable(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [(b"content-type", b"text/plain"), (b"connection", b"close"), (b"retry-after", b"1")],
        }
    )
    await send({"type": "http.response.body", "body": b"draining\n"})


class DrainingServer(uvicorn.Server):
    """uvicorn's server, with SIGTERM as a drain that ends in exit status 0."""

    def __init__(self, config: uvicorn.Config, replica: Replica, streams: StreamCloser) -> None:
        super().__init__(config)
        # sse_starlette (the SDK's SSE responses) ends every SSE response as soon as uvicorn is
        # told to exit, in-flight tool calls included ("SSE stream ended without a response").
        # Turned off with its public switch: StreamCloser ends only the standing streams, and a
        # call's response stream ends when the call does (or at drain_timeout).
        AppStatus.disable_automatic_graceful_drain()
        self.replica = replica
        self.streams = streams
        self._loop: asyncio.AbstractEventLoop | None = None
        self._interrupted = False
        self._drain_task: asyncio.Future[None] | None = None

    async def serve(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets=sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's handlers for SIGINT and SIGTERM, but only SIGINT is re-raised afterwards."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)
        if self._interrupted:
            signal.raise_signal(signal.SIGINT)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGINT:
            self._interrupted = True
            ctrl_c.set()
            if self.should_exit:
                self.force_exit = True
        self.should_exit = True
        if not self.replica.draining:
            self.replica.draining = True
            logger.info(
                "%s: draining (replica %s): not ready, finishing calls in flight for up to %g s",
                signal.Signals(sig).name,
                self.replica.id,
                self.replica.drain_timeout,
            )
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._drain_task = asyncio.ensure_future(self.streams.drain())
