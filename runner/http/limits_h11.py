"""The connection limits (`limits.py`) on uvicorn's h11 protocol (`serve --http h11`).

h11 has no parser callbacks, so the phase is read from the connection's state
after every chunk of data: IDLE while a request head is awaited, SEND_BODY
while its body is. h11 bounds a request head itself (`max_incomplete_event_size`,
set from `max_head_size`); its refusal is answered 431 here, not uvicorn's 400.
That bound holds only while a head is incomplete: a whole head arriving in one
read is measured here before h11 parses it (its raw length up to the blank
line), or, when it came after other requests in the same read, once h11 has
parsed it (its target and header fields); either way it is refused with a 431
before its app can answer. h11 takes one request at a time,
so the answers to the complete requests before it on the connection are sent first.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from runner.http.limits import Bounded


class LimitedH11Protocol(Bounded, H11Protocol):
    """uvicorn's h11 protocol with a request-read deadline and a place in a bounded set of connections."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self._admit(transport):
            self._track()

    _guarded: Any = None  # the last cycle `_guard` wrapped

    def data_received(self, data: bytes) -> None:
        if self._discarded(data):
            return
        if self._head_too_long(data):
            self._refuse_head()
            return
        super().data_received(data)
        if not self.transport.is_closing():
            self._track()

    def handle_events(self) -> None:
        """uvicorn's, then: a request's app was just started (from new data, or from data already buffered)."""
        super().handle_events()
        cycle = self.cycle
        if cycle is None or cycle is self._guarded:
            return
        self._guarded = cycle
        scope = cycle.scope
        size = len(scope["method"]) + len(scope["raw_path"]) + len(scope["query_string"]) + 12
        size += sum(len(name) + len(value) + 3 for name, value in scope["headers"])
        if size > self.pool.limits.max_head_size:
            cycle.disconnected = True  # its app, started already, sends nothing and reads no body
            self._refuse_head()
            return
        self._guard(cycle)

    def _head_too_long(self, data: bytes) -> bool:
        """`data`, read while a request head is awaited, holds more than `max_head_size` bytes of it: refuse it
        before h11 parses it.

        h11 parses a complete head before anything here can measure it: 12,000 small headers (105 KiB) sent in
        one write cost it about 60 ms of the event loop each, and six connections sending them again and again
        slowed every other client (a tool call 1.1 s instead of 0.25 s). Whatever h11 holds already of this head
        only makes it longer; `data` that starts with a line end may finish a head begun in an earlier read, and
        is left to h11 (whose own bound, and `handle_events`, still apply).
        """
        limit = self.pool.limits.max_head_size
        if len(data) <= limit or self.conn.their_state is not h11.IDLE or data.startswith((b"\n", b"\r\n")):
            return False
        return data.find(b"\r\n\r\n", 0, limit + 4) < 0 and data.find(b"\n\n", 0, limit + 2) < 0

    def connection_lost(self, exc: Exception | None) -> None:
        self._leave()
        super().connection_lost(exc)

    _pipelined: Any = None  # a cycle started from buffered data: its request came before the last answer was read

    def on_response_complete(self) -> None:
        before = self.cycle
        super().on_response_complete()
        self._closed_unsent()
        if self.cycle is not before:
            self._pipelined = self.cycle
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self.drop()  # answered before its body came (`_guard` missed it): nobody wants the rest

    def send_400_response(self, msg: str) -> None:
        if len(self.conn.trailing_data[0]) > self.pool.limits.max_head_size:
            self._refuse_head()  # h11's "Receive buffer too long": the head passed the bound
            return
        super().send_400_response(msg)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._writing_paused()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._writing_resumed()

    def rank(self) -> int:
        if self.conn.their_state is h11.SEND_BODY or self._waiting_to_write() or self._ahead():  # on the client
            return 0
        if self.conn.their_state is not h11.IDLE or (self.cycle is not None and not self.cycle.response_complete):
            return 2
        if self.cycle is None or self._phase is h11.IDLE:
            return 0
        return 1

    def _ahead(self) -> bool:
        """The request being served was sent before the client read the answer to the one before."""
        running = self._pipelined
        return running is not None and running is self.cycle and not running.response_complete

    def _reading(self) -> Any:
        return self.conn.their_state

    def _body_owed(self) -> bool:
        return self.conn.their_state is h11.SEND_BODY

    def _track(self) -> None:
        """Arm the deadline for what the client still owes: a request head, or a request body."""
        state = self.conn.their_state
        if state is h11.IDLE or state is h11.SEND_BODY:
            if self._phase is not state:
                limits = self.pool.limits
                self._arm(state, limits.header_timeout if state is h11.IDLE else limits.body_timeout)
        else:
            self._disarm()
