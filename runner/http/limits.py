"""Connection limits below ASGI: a deadline for reading each request, and a bound on open connections.

Why here: uvicorn 0.54 arms no timer until it has sent a response, so a
socket that sends half a request head, or nothing, is kept forever (only the
keep-alive timer exists, for the idle time *after* a response). 1,100 such
sockets under a 1,024 open-file limit starved every legitimate client. That
happens before any ASGI code runs, so the fix is a subclass of uvicorn's
protocol for each parser (`limits_httptools.py`, the default, and
`limits_h11.py`); this module holds what they share, and every reach into
uvicorn's internals is confined to those three modules (`tests/test_http_edge.py`
fails loudly if uvicorn changes underneath). Each parser's module is imported
only when chosen, so `--http h11` never loads httptools.

- A connection must complete its request head within `header_timeout` of
  opening (or of the first byte of its next request) and its body within
  `body_timeout` of the head, or it is closed.
- A request head is at most `max_head_size` bytes (h11's own limit, 16 KiB, by
  default): httptools, unlike h11, has no bound of its own and buffered a
  64 MiB header, so its protocol counts and answers 431.
- At most `max_connections` are open. At the bound, a new connection makes
  room by closing the oldest connection that is waiting on its client: one
  whose request head or body is still owed first, then idle keep-alive ones;
  only if every connection is busy is the newcomer refused with a 503. A
  connection owing a body is never "serving": 1,000 sockets that each sent a
  complete head with `Content-Length: 100000` and then nothing were, and locked
  every other client out. Half-sent requests therefore cannot lock a legitimate
  client out, whoever opened them.
- A connection whose client does not read its answers waits on the client too:
  while the transport has paused writing (its buffer over the high-water mark),
  and while it serves a pipelined request (sent before the answer to the one
  before was read). 30 sockets that pipelined `GET /healthz` and never read held
  every place: each answer waited in uvicorn's `send` for ever, counted as
  serving. A connection whose writing stays paused for `body_timeout` is reset.
  So is one closed after a response (`Connection: close`) whose answers its
  client has not taken `body_timeout` later: a close waits for them to drain,
  and the connection kept its place (with h11, ranked as serving) for ever.
- A response that starts while its request's body is still owed (a 401 before
  the body, `/healthz` ignoring one) says `Connection: close`, and the
  connection is closed once it is sent: reading on would keep it for a body
  nobody wants, and the header tells the client not to send another request on it.
- uvicorn's own `limit_concurrency` is not used: it answers 503 to the
  legitimate request while the stalled sockets keep their places.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import resource
import socket
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.speed.engine import Parser

logger = logging.getLogger("runner.http")

# File descriptors kept free of connections: the listening socket, the log, the watcher,
# the JWKS client, module files being re-imported.
FD_RESERVE = 64
MAX_HEAD_SIZE = 16 * 1024  # h11's DEFAULT_MAX_INCOMPLETE_EVENT_SIZE: the same bound for both parsers
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 20\r\nconnection: close\r\n\r\nToo many connections"
)

_CLOSE = (b"connection", b"close")
LINGER_BYTES = 64 * 1024  # read on after a 431, so that the client gets it (see `Bounded._linger`)
LINGER_SECONDS = 2.0
_HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 25\r\nconnection: close\r\n\r\nRequest head is too large"
)


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000
    max_head_size: int = MAX_HEAD_SIZE


def raise_open_file_limit() -> int:
    """Raise this process's open-file soft limit to its hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            logger.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
    return soft


def effective(limits: Limits, open_files: int) -> Limits:
    """`limits` with `max_connections` kept below the open-file limit, so accept() never fails for lack of one."""
    room = max(1, open_files - FD_RESERVE)
    if limits.max_connections <= room:
        return limits
    logger.warning(
        "server.max_connections lowered from %d to %d: the open-file limit is %d",
        limits.max_connections,
        room,
        open_files,
    )
    return dataclasses.replace(limits, max_connections=room)


class _Connections:
    """The open connections of one server, oldest first, and how often the bound was hit."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.open: OrderedDict[Bounded, None] = OrderedDict()
        self.shed = 0
        self._reported = 0.0

    def admit(self, newcomer: Bounded) -> bool:
        if len(self.open) >= self.limits.max_connections:
            victim = self._victim()
            if victim is None:
                self._report("refused a connection")
                return False
            self._report("closed the oldest idle or unfinished connection")
            victim.evict()
        self.open[newcomer] = None
        return True

    def _victim(self) -> Bounded | None:
        idle: Bounded | None = None
        for candidate in self.open:
            rank = candidate.rank()
            if rank == 0:
                return candidate
            if rank == 1 and idle is None:
                idle = candidate
        return idle

    def _report(self, what: str) -> None:
        self.shed += 1
        now = time.monotonic()
        if now - self._reported >= 10:  # one line per 10 s, however hard the bound is hit
            self._reported = now
            logger.warning(
                "connection limit (%d) reached: %s (%d so far)", self.limits.max_connections, what, self.shed
            )


class Bounded:
    """What both parsers' protocols add to uvicorn's: a request-read deadline and a place in the bounded set.

    A mixin placed before uvicorn's protocol class; `transport`, `loop` and `client` are uvicorn's.
    A subclass says which phase of a request it is reading (`_reading`) and how busy it is (`rank`).
    """

    pool: _Connections  # set per server by `protocol_class` (uvicorn already uses `connections`)
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    client: Any
    cycle: Any
    # One timer per connection, moved lazily: a request owes its head, then its body, then nothing, so a
    # cancel and a new timer per phase would be two timers per request (about 3% of a tools/call's CPU,
    # profiled). Instead `_due` moves, and the timer, when it fires before `_due`, sets itself again. It
    # is never set further ahead than the shorter timeout, so whatever is owed later is due after it fires.
    _deadline: asyncio.TimerHandle | None = None
    _due: float | None = None  # when what is owed now must have arrived; None: nothing is owed
    _phase: Any = None  # the phase `_due` is for
    flow: Any  # uvicorn's FlowControl: `write_paused` while the transport's buffer is over its high-water mark
    _write_stall: asyncio.TimerHandle | None = None  # closes a connection whose client stopped reading
    _lingering: int | None = None  # after a 431: bytes still read (and thrown away) before the connection closes

    def rank(self) -> int:
        """0: waiting on the client for a request head or body (evict first); 1: idle keep-alive;
        2: serving, the app is at work on a complete request (never evicted)."""
        raise NotImplementedError

    def _waiting_to_write(self) -> bool:
        """The client does not read what it was sent, so the connection waits on it: the transport paused writing,
        or it was closed after a response with answers still unsent (it stays open until they drain)."""
        if self.flow is not None and self.flow.write_paused:
            return True
        return self.transport.is_closing() and self.transport.get_write_buffer_size() > 0

    def _closed_unsent(self) -> None:
        """Called once a response is complete: if the transport was closed with answers still unsent, the client
        has `body_timeout` to take them, or the connection is reset.

        uvicorn closes the transport after a response to `Connection: close` (or HTTP/1.0), and a close waits for
        the buffer to drain. A client that pipelined requests, ended them with `Connection: close` and never read
        left up to 64 KiB unsent below the high-water mark (writing not paused, so no `_writing_paused`): the
        connection kept its place and its file descriptor for ever, and with h11 it ranked as serving (2 sockets
        at `max_connections: 2` and every newcomer got 503).
        """
        if self._write_stall is None and self._waiting_to_write():
            self._write_stall = self.loop.call_later(self.pool.limits.body_timeout, self._stalled)

    def _writing_paused(self) -> None:
        """Called from `pause_writing`: the client has `body_timeout` to read again, or the connection is closed.

        A client that pipelines requests and never reads its answers fills the buffers until uvicorn's cycle
        waits in `send` for ever: the request is complete and its answer unfinished, so it used to rank as
        serving, and 30 such sockets held every place of a server (`max_connections: 30`).
        """
        if self._write_stall is None:
            self._write_stall = self.loop.call_later(self.pool.limits.body_timeout, self._stalled)

    def _writing_resumed(self) -> None:
        """Called from `resume_writing`: the client reads again (unless the transport is closed with answers still
        unsent: their deadline stands until they are all taken)."""
        if not (self.transport.is_closing() and self._waiting_to_write()):
            self._cancel_stall()

    def _cancel_stall(self) -> None:
        if self._write_stall is not None:
            self._write_stall.cancel()
            self._write_stall = None

    def _stalled(self) -> None:
        self._write_stall = None
        if self._waiting_to_write():  # closed already or not: a close waits for the client, a reset does not
            logger.debug("closing a connection whose client stopped reading its response: %s", self.client)
            self.pool.open.pop(self, None)
            self._reset()  # close() would wait for the buffer to drain, which is what never happens

    def _reading(self) -> Any:
        """The phase of the request being read now (compared with the one a deadline was armed for)."""
        raise NotImplementedError

    def _admit(self, transport: asyncio.Transport) -> bool:
        """Called from `connection_made`: take a place in the set, or refuse the connection with a 503."""
        if self.pool.admit(self):
            return True
        transport.write(_REFUSAL)
        transport.close()
        return False

    def _leave(self) -> None:
        """Called from `connection_lost`."""
        self._stop()
        self.pool.open.pop(self, None)

    def _refuse_head(self) -> None:
        """The request head grew past `max_head_size`: 431, and the connection is closed."""
        limit = self.pool.limits.max_head_size
        logger.debug("closing a connection whose request head passed %d bytes: %s", limit, self.client)
        self.pool.open.pop(self, None)
        self._stop()
        if not self.transport.is_closing():
            self.transport.write(_HEAD_TOO_LARGE)
            self._linger()

    def _linger(self) -> None:
        """Close after the 431, reading on for a moment (at most `LINGER_BYTES`, `LINGER_SECONDS`).

        Closed at once, a socket with unread bytes (the rest of the refused head) sends a reset, and the
        client's kernel throws away what it had not read yet: the 431, and the answers before it.
        """
        self._lingering = LINGER_BYTES
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the 431 is the last thing sent
        self.transport.resume_reading()
        self.loop.call_later(LINGER_SECONDS, self.transport.abort)

    def _discarded(self, data: bytes) -> bool:
        """Called first in `data_received`: True if `data` is the rest of a refused request, to be thrown away."""
        if self._lingering is None:
            return False
        self._lingering -= len(data)
        if self._lingering <= 0:
            self.transport.abort()
        return True

    def _guard(self, cycle: Any) -> None:
        """Make `cycle`'s response say `Connection: close` if it starts while the request's body is still owed.

        uvicorn's cycle looks `send` up when the app starts, after this; with the header, uvicorn itself
        closes the connection once the response is sent (httptools by its `keep_alive`, h11 by its state).
        """
        send = cycle.send

        async def guarded(message: Any) -> None:
            if message["type"] == "http.response.start" and cycle is self.cycle and self._body_owed():
                message = {**message, "headers": [*message.get("headers", ()), _CLOSE]}
            await send(message)

        cycle.send = guarded

    def _body_owed(self) -> bool:
        """The request being read has a complete head and an incomplete body."""
        raise NotImplementedError

    def drop(self) -> None:
        """Close this connection once what it was sent is sent: its response is complete while its request
        body is still owed."""
        self.pool.open.pop(self, None)
        self._stop()
        self.transport.close()
        self._closed_unsent()  # out of the set already; the reset still frees the descriptor

    def evict(self) -> None:
        """Close this connection now to make room: it waits on its client (or idles)."""
        self.pool.open.pop(self, None)
        self._stop()
        self._close_now()

    def _close_now(self) -> None:
        """Close, and give the file descriptor back now: with answers still unsent (a client that does not
        read), `close()` would wait for them to drain, which may never happen."""
        if self.transport.get_write_buffer_size():
            self._reset()
        else:
            self.transport.close()

    def _reset(self) -> None:
        """Close with a reset: the kernel drops what is unsent at once, instead of keeping it (megabytes, for a
        client that does not read) on an orphaned socket for minutes, trying to deliver it."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.transport.abort()

    def _arm(self, phase: Any, timeout: float) -> None:
        """`phase` must be read within `timeout` seconds from now."""
        self._phase = phase
        now = self.loop.time()
        self._due = now + timeout
        if self._deadline is None:
            self._schedule(now)

    def _schedule(self, now: float) -> None:
        limits = self.pool.limits
        assert self._due is not None
        at = min(self._due, now + min(limits.header_timeout, limits.body_timeout))
        self._deadline = self.loop.call_at(at, self._check)

    def _disarm(self) -> None:
        """Nothing is owed any more (the timer, if set, finds that when it fires, and stops)."""
        self._due = None
        self._phase = None

    def _stop(self) -> None:
        self._disarm()
        self._cancel_stall()
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _check(self) -> None:
        self._deadline = None
        due, phase = self._due, self._phase
        if due is None:
            return
        now = self.loop.time()
        if now < due:
            self._schedule(now)
            return
        self._disarm()
        if self._reading() == phase and not self.transport.is_closing():
            logger.debug("closing a connection that did not send its request in time: %s", self.client)
            self.pool.open.pop(self, None)
            self._close_now()


def protocol_class(limits: Limits, parser: Parser) -> type[asyncio.Protocol]:
    """A protocol class for one server (uvicorn's `Config(http=...)`), sharing one set of connections."""
    base: type[asyncio.Protocol]
    if parser == "httptools":
        from runner.http.limits_httptools import LimitedHttpToolsProtocol as base
    else:
        from runner.http.limits_h11 import LimitedH11Protocol as base
    return type(base.__name__, (base,), {"pool": _Connections(limits)})
