"""The connection limits (`limits.py`) on uvicorn's httptools protocol (the default parser).

httptools calls back as it parses, so the phase is kept from its callbacks:
a request head is owed from the connection's opening, and again from the
first byte of each next request (`on_message_begin`); its body from the end
of the head (`on_headers_complete`); nothing once the request is complete
(`on_message_complete`). An idle keep-alive connection is uvicorn's own
keep-alive timer's business.

httptools buffers a request head without bound (h11 stops at 16 KiB), so the
bytes received while a head is owed are counted here: past `max_head_size`
the request is answered 431 and the connection closed, as h11 does (a head is
held to the bound plus at most one read).
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from runner.http.limits import Bounded

Phase = Literal["head", "body"] | None


class LimitedHttpToolsProtocol(Bounded, HttpToolsProtocol):
    """uvicorn's httptools protocol with a request-read deadline and a place in a bounded set of connections."""

    _owed: Phase = None
    _head_bytes = 0  # bytes received while the current request head is owed

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self._admit(transport):
            self._owe("head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._leave()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._owed == "head" and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.pool.limits.max_head_size:
                self._refuse_head()

    _pipelined: Any = None  # the cycle started from `pipeline`: its request came before the last answer was read

    def on_response_complete(self) -> None:
        queued = self.pipeline[-1][0] if self.pipeline else None
        super().on_response_complete()
        self._pipelined = queued
        if self._owed == "body" and not self.transport.is_closing():
            self.drop()  # answered before its body came (`_guard` missed it): nobody wants the rest

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._owed != "head":  # the first byte of a request: from now on, the head is owed
            self._owe("head")

    def on_headers_complete(self) -> None:
        previous = self.cycle
        super().on_headers_complete()
        self._head_bytes = 0
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
