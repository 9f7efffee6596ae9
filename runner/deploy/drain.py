"""Drain on SIGTERM and Ctrl-C: stop taking work, let calls finish and their clients follow up, close
streams gracefully, exit.

1. `/readyz` answers 503 at once (`Replica.draining`).
2. New work is refused (runner/deploy/leaving.py): a call, `initialize`, a standing stream get 503
   with `Connection: close` (nginx retries it on another replica), or 404 `Session not found` within
   a handshake-era session. Follow-ups are answered: lists, ping, notifications, answers to the
   server's own requests, the next round of a multi-round call, a session's DELETE. The listening
   socket stays open meanwhile, since a follow-up may come on a new connection.
3. Calls in flight finish, for up to `drain_timeout` seconds. (Left to itself, sse_starlette would
   end every SSE response, in-flight calls too, at SIGTERM.)
4. Then the standing streams end, the way clients read as deliberate (StreamCloser.drain).
5. Once no request has been served for `QUIET` seconds (a client that got its answer follows up at
   once), uvicorn's shutdown runs: the socket closes, idle connections close, and what is still
   running after the rest of `drain_timeout` is cancelled.
6. The process exits 0 on SIGTERM: uvicorn would re-raise SIGTERM after its shutdown, which ends the
   process with 143, and an orchestrator reads that as a crash. Ctrl-C re-raises SIGINT (exit 130);
   a second Ctrl-C stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

import anyio
import uvicorn
from sse_starlette.sse import AppStatus
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner.deploy.leaving import LISTEN, close_listen_streams, follow_up, refuse
from runner.deploy.replica import Replica
from runner.http.era import sessionless

if TYPE_CHECKING:
    from mcp.server.lowlevel.server import Server

logger = logging.getLogger("runner.deploy")
LISTEN_BYTES = LISTEN.encode()
_PEEK = 64 * 1024  # a listen request is small; a larger body is some other call
_FOLLOW_UP_BODY = 4 * 1024 * 1024  # while draining, a longer body is not read to the end, and is refused
QUIET = 1.0  # seconds without a request served, after the calls, before a draining server closes
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
        self._served = 0.0  # while closing: when the last follow-up ended (time.monotonic)
        self._end_listen: Callable[[], bool] = lambda: False  # close_listen_streams, once `around` has the server

    def around(self, app: ASGIApp, lowlevel: Server[Any] | None = None) -> StreamCloser:
        """Made before the app (the server needs it for SIGTERM), placed around the endpoint when that is built.

        `lowlevel` is the SDK server whose `subscriptions/listen` streams `drain` closes gracefully.
        """
        self.app = app
        if lowlevel is not None:
            self._end_listen = lambda: close_listen_streams(lowlevel)
        return self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None, "StreamCloser.around(app) first"
        if scope["type"] != "http" or scope["method"] not in ("GET", "POST"):
            await self.app(scope, receive, send)
            return
        if self.closing:
            await self._while_closing(scope, receive, send)
            return
        if scope["method"] == "POST" and _surely_a_call(scope["headers"]):
            self._calls += 1  # no stream to end, no body to peek: only "is a call in flight" matters
            try:
                await self.app(scope, receive, send)
            finally:
                self._calls -= 1
            return
        stream = _Stream(kind="get" if scope["method"] == "GET" else "call")
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
                await refuse(send, in_session=False)
            elif not stream.finished:
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _while_closing(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A request to a draining server: answered when it is a follow-up, refused when it is new work."""
        in_session = any(name == b"mcp-session-id" for name, _ in scope["headers"])
        if scope["method"] == "GET":  # a standing stream: a replica on its way out opens none
            await refuse(send, in_session=False)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before it finished sending
            body.extend(message.get("body", b""))
            if not message.get("more_body", False) or len(body) > _FOLLOW_UP_BODY:
                break
        if len(body) > _FOLLOW_UP_BODY or not follow_up(bytes(body)):
            await refuse(send, in_session)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        assert self.app is not None
        self._calls += 1
        try:
            await self.app(scope, replay, send)
        finally:
            self._calls -= 1
            self._served = time.monotonic()

    async def drain(self, timeout: float) -> None:
        """Refuse new work, wait for the calls in flight (at most `timeout` s), end the standing streams
        gracefully, and return once no follow-up has been served for `QUIET` s (within `timeout`).

        The streams end after the calls, not before: a client's stream and its calls are one
        conversation. The SDK's 2026-07-28 client reads a listen stream that ends without its result as
        `SubscriptionLost`, which cancels the calls in the same task group; and until the calls are
        answered the streams carry events as usual (with `server.bus`, other replicas' events too).
        Then a listen stream gets the SDK's graceful close and a GET stream's SSE response completes;
        their clients listen again where a server is.
        """
        deadline = time.monotonic() + timeout
        self.closing = True
        busy = bool(self._calls or any(s.kind == "call" for s in self._open))  # else no one is to follow up
        while self._calls or any(s.kind == "call" for s in self._open):
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        await self._end_streams()
        self._served = max(self._served, time.monotonic())
        while busy and time.monotonic() < deadline:
            if not self._calls and time.monotonic() - self._served >= QUIET:
                break
            await asyncio.sleep(0.05)

    async def _end_streams(self) -> None:
        ended = self._end(lambda s: s.kind == "get")
        listening = [s for s in self._open if s.kind == "listen"]
        # The SDK's handler ends each of its streams with the listen result (ListenHandler.close). A
        # stream it does not end (the handler is not the SDK's, or its client stopped reading) is
        # ended without one, as before: its client reads SubscriptionLost and listens again.
        self._end_listen()
        for _ in range(20):  # a stream subscribed after the first round is closed by the next
            if not any(s in self._open for s in listening):
                break
            await asyncio.sleep(0.05)
            self._end_listen()
        abrupt = self._end(lambda s: s in listening)
        ended += len(listening) - abrupt
        if ended:
            logger.info("drain: ended %d standing stream(s) gracefully; their clients reconnect elsewhere", ended)
        if abrupt:
            logger.info("drain: ended %d listen stream(s) without the graceful close", abrupt)

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


class DrainingServer(uvicorn.Server):
    """uvicorn's server, with SIGTERM and Ctrl-C as a drain; SIGTERM's ends in exit status 0."""

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
        """The first SIGTERM or Ctrl-C starts the drain, which tells uvicorn to exit when it is done
        (uvicorn's own handler would at once: its shutdown closes the listening socket, and a
        follow-up on a new connection is refused). A second Ctrl-C stops at once."""
        if sig == signal.SIGINT:
            self._interrupted = True
            ctrl_c.set()
            if self.replica.draining:
                self.force_exit = self.should_exit = True
        if self.replica.draining:
            return
        self.replica.draining = True
        logger.info(
            "%s: draining (replica %s): not ready, finishing calls in flight for up to %g s",
            signal.Signals(sig).name,
            self.replica.id,
            self.replica.drain_timeout,
        )
        if self._loop is None:  # not serving yet: nothing to drain
            self.should_exit = True
            return
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._drain_task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        started = time.monotonic()
        try:
            await self.streams.drain(self.replica.drain_timeout)
        finally:
            # uvicorn's shutdown gets what is left of drain_timeout, then cancels what still runs.
            left = self.replica.drain_timeout - (time.monotonic() - started)
            self.config.timeout_graceful_shutdown = max(1, round(left))
            self.should_exit = True
