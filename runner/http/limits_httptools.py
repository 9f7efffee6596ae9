"""The connection limits (`limits.py`) on uvicorn's httptools protocol (the default parser).

httptools calls back as it parses, so the phase is kept from its callbacks:
a request head is owed from the connection's opening, and again from the
first byte of each next request (`on_message_begin`); its body from the end
of the head (`on_headers_complete`); nothing once the request is complete
(`on_message_complete`). An idle keep-alive connection is uvicorn's own
keep-alive timer's business.

httptools buffers a request head without bound (h11 stops at 16 KiB), so a head
is measured here: its URL and header fields as the parser delivers them (a head
that arrives whole in one read), and every read that falls inside a head begun
earlier (a head sent in pieces, whose fields are never complete). Past
`max_head_size` the request is answered 431 and the connection closed, as h11
does; a head is held to the bound plus at most one read. The same holds for a
chunked body's trailer section, which httptools also buffers without bound: the
bytes read while the body makes no progress (no chunk, no body byte) count
against `max_head_size`. A refusal waits for the answers owed to complete
requests that came before it on the connection.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from runner.http.limits import Bounded

Phase = Literal["head", "body"] | None


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing (httptools turns it into an `HttpParserCallbackError`)."""


class LimitedHttpToolsProtocol(Bounded, HttpToolsProtocol):
    """uvicorn's httptools protocol with a request-read deadline and a place in a bounded set of connections."""

    _owed: Phase = None
    _head_fields = 0  # bytes of the current request head's URL and complete header fields
    _head_bytes = 0  # bytes of the reads that fell wholly inside the current request head
    _heads = 0  # request heads begun on this connection
    _progress = 0  # body callbacks (a chunk's header, its data, its end) on this connection
    _trailer_bytes = 0  # bytes read since the body last made progress: a trailer section, or a chunk-size line
    _too_large = False  # the head (or trailer section) passed the bound; a 431 is due
    _refusing = False  # the 431 waits for the answers owed to earlier requests

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self._admit(transport):
            self._owe("head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._leave()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarded(data):
            return
        if self._refusing:
            return  # the rest of a refused connection: not parsed
        owed, heads, progress = self._owed, self._heads, self._progress
        super().data_received(data)
        if self.transport.is_closing() or self._refusing:
            return
        if self._owed is None and self._between_requests():
            # Bytes that begin no request (line ends, which httptools skips) cancelled uvicorn's keep-alive timer,
            # and no head deadline was armed: `\r\n` every 2 s kept a connection open for ever. A head is owed.
            self._owe("head")
        limit = self.pool.limits.max_head_size
        if owed == "head" and self._owed == "head" and self._heads == heads:  # a read wholly inside one head
            self._head_bytes += len(data)
            if self._head_bytes > limit:
                self._refuse_head()
        elif owed == "body" and self._owed == "body" and self._progress == progress:  # not a byte of body
            self._trailer_bytes += len(data)
            if self._trailer_bytes > limit:
                self._refuse_trailer()
        else:
            self._trailer_bytes = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._field(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        if self._owed == "head":  # not a trailer (those are `_trailer_bytes`)
            self._field(len(name) + len(value) + 3)

    def _field(self, size: int) -> None:
        self._head_fields += size
        if self._head_fields > self.pool.limits.max_head_size:
            self._too_large = True
            raise _HeadTooLarge  # uvicorn answers the parser's error with `send_400_response`

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._refuse_head()
            return
        super().send_400_response(msg)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._progress += 1

    def on_chunk_header(self) -> None:
        self._progress += 1

    def on_chunk_complete(self) -> None:
        self._progress += 1

    def _between_requests(self) -> bool:
        """Every request read so far is answered, and no next one has begun."""
        return not self.pipeline and (self.cycle is None or self.cycle.response_complete)

    def _answering(self) -> bool:
        """An answer to an earlier complete request on this connection is still due."""
        return bool(self.pipeline) or (
            self.cycle is not None and self._owed == "head" and not self.cycle.response_complete
        )

    def _refuse_head(self) -> None:
        """431, once the answers owed to the complete requests before this head are sent."""
        if self._answering():
            self._refusing = True
            self.flow.pause_reading()
            return
        self._refusing = False
        super()._refuse_head()

    def _refuse_trailer(self) -> None:
        """The trailer section (or a chunk-size line) passed `max_head_size`: 431, or a close once answering."""
        if self.cycle is not None and self.cycle.response_started:
            self.drop()
        else:
            super()._refuse_head()

    _pipelined: Any = None  # the cycle started from `pipeline`: its request came before the last answer was read

    def on_response_complete(self) -> None:
        queued = self.pipeline[-1][0] if self.pipeline else None
        super().on_response_complete()
        self._closed_unsent()
        self._pipelined = queued
        if self.pipeline and not self.transport.is_closing():
            # uvicorn reads on after every answer, and each read of pipelined requests queues thousands of
            # cycles: 4.5 MB of `GET /healthz` took one connection to 363 MiB. Read on once they are served.
            self.flow.pause_reading()
        if self._refusing and not self._answering() and not self.transport.is_closing():
            self._refuse_head()  # the answers owed before the oversized head are sent
            return
        if self._owed == "body" and not self.transport.is_closing():
            self.drop()  # answered before its body came (`_guard` missed it): nobody wants the rest

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._heads += 1
        self._head_fields = self._head_bytes = 0
        if self._owed != "head":  # the first byte of a request: from now on, the head is owed
            self._owe("head")

    def on_headers_complete(self) -> None:
        previous = self.cycle
        super().on_headers_complete()
        self._trailer_bytes = 0
        self._owe("body")
        if self.cycle is not previous:
            self._guard(self.cycle)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._owed = None
        self._disarm()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._writing_paused()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._writing_resumed()

    def rank(self) -> int:
        if self._owed == "body" or self._waiting_to_write() or self._ahead():  # waiting on the client
            return 0
        if self.cycle is not None and not self.cycle.response_complete:
            return 2
        if self.cycle is None or self._owed == "head":
            return 0
        return 1

    def _ahead(self) -> bool:
        """A request the client sent before reading the answer to the one before is being served or queued."""
        running = self._pipelined
        return bool(self.pipeline) or (running is not None and not running.response_complete)

    def _reading(self) -> Any:
        return self._owed

    def _body_owed(self) -> bool:
        return self._owed == "body"

    def _owe(self, phase: Literal["head", "body"]) -> None:
        self._owed = phase
        limits = self.pool.limits
        self._arm(phase, limits.header_timeout if phase == "head" else limits.body_timeout)
