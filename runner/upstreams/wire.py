"""POSTs to one HTTP upstream on kept-alive HTTP/1.1 connections: h11 over asyncio streams, nothing more.

Why not httpcore2 (what httpx2 uses): per request it takes a pool lock, starts a cancel scope for
every read and write, and sends the headers and the body in two writes; on a call that the upstream
answers in about a millisecond, that was about 0.4 ms of the runner's CPU (docs/performance.md,
"Upstreams"). Here a request is one write of bytes h11 produced, and the answer is read by h11 in
64 KiB reads; the caller's cancel scope (the entry's `timeout`) bounds the whole request.

A connection goes back to the pool only when its response was read to its end and both sides
keep it; at most `size` are open at once (a request waits for one), and an idle one older than
`idle` seconds is closed rather than reused (servers close idle connections too: uvicorn after 5 s).
A connection that was idle in the pool and closes without a byte of answer (the server closed it
as the request was sent) is retried once on a new one: the server never read that request.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import anyio
import h11

READ_BYTES = 64 * 1024
MAX_HEADER_BYTES = 64 * 1024  # the status line and headers of an answer


class WireError(Exception):
    """The connection failed, or the answer is not HTTP/1.1 the runner can read."""


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    connection: _Connection
    ended: bool = False

    async def aiter_stream(self) -> AsyncIterator[bytes]:
        """The body's bytes as they come (chunked or sized, h11 decodes it)."""
        while True:
            event = await self.connection.next_event()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.ended = True
                return
            else:
                raise WireError(f"unexpected {type(event).__name__} in the upstream's answer")


@dataclass(eq=False)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    state: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT, MAX_HEADER_BYTES))
    used: float = field(default_factory=time.monotonic)
    got: int = 0  # bytes of the current answer received

    async def next_event(self) -> object:
        while True:
            try:
                event = self.state.next_event()
            except h11.RemoteProtocolError as exc:
                raise WireError(f"invalid HTTP from the upstream: {exc}") from None
            if event is not h11.NEED_DATA:
                return event
            data = await self.reader.read(READ_BYTES)
            self.got += len(data)
            self.state.receive_data(data)  # b"" is the end of the connection: h11 then says what that means

    def reusable(self) -> bool:
        return self.state.our_state is h11.DONE and self.state.their_state is h11.DONE and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


class Pool:
    """Connections to one upstream's origin, for POSTs to its URL."""

    def __init__(self, url: str, size: int, idle: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url}")
        self.host, self.tls = parts.hostname, parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        netloc = parts.netloc.rpartition("@")[2]  # never the URL's user:password as the Host header
        self.authority = netloc.encode("idna" if not netloc.isascii() else "ascii")
        self.size, self.idle = size, idle
        self._free: list[_Connection] = []
        self._slots = anyio.Semaphore(size)
        self._ssl: ssl.SSLContext | None = None

    async def _open(self) -> _Connection:
        if self.tls and self._ssl is None:
            import httpx2  # noqa: PLC0415 - only an https upstream needs it

            self._ssl = httpx2.create_ssl_context()  # verified as httpx2 (and the SDK's client) verifies
        try:
            reader, writer = await asyncio.open_connection(
                self.host, self.port, ssl=self._ssl, limit=READ_BYTES, server_hostname=self.host if self.tls else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise WireError(f"cannot connect: {type(exc).__name__}: {exc}") from None
        return _Connection(reader, writer)

    def _kept(self) -> _Connection | None:
        now = time.monotonic()
        while self._free:
            connection = self._free.pop()
            if now - connection.used < self.idle and not connection.reader.at_eof():
                return connection
            connection.close()
        return None

    @asynccontextmanager
    async def post(self, headers: list[tuple[bytes, bytes]], body: bytes) -> AsyncIterator[Response]:
        """The answer's status and headers; its body is read in the `with`, and the connection kept if it can be."""
        async with self._slots:
            connection, response = await self._send(headers, body)
            try:
                yield response
            finally:
                if response.ended and connection.reusable():
                    connection.state.start_next_cycle()
                    connection.used = time.monotonic()
                    self._free.append(connection)
                else:
                    connection.close()

    async def _send(self, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[_Connection, Response]:
        kept = self._kept()
        connection = kept or await self._open()
        try:
            return connection, await self._exchange(connection, headers, body)
        except WireError:
            connection.close()
            if kept is None or connection.got:
                raise
        except BaseException:
            connection.close()
            raise
        connection = await self._open()  # the kept one was closed by the server before it read a byte of this
        try:
            return connection, await self._exchange(connection, headers, body)
        except BaseException:
            connection.close()
            raise

    async def _exchange(self, connection: _Connection, headers: list[tuple[bytes, bytes]], body: bytes) -> Response:
        sent = [(b"host", self.authority), (b"content-length", str(len(body)).encode()), *headers]
        wire = connection.state
        connection.got = 0
        try:
            request = h11.Request(method=b"POST", target=self.target.encode(), headers=sent)
            out = [wire.send(request), wire.send(h11.Data(data=body)), wire.send(h11.EndOfMessage())]
            connection.writer.write(b"".join(b for b in out if b))  # one write: headers and body in one segment
            await connection.writer.drain()
            event = await connection.next_event()
            while isinstance(event, h11.InformationalResponse):  # 100 Continue and the like: the answer follows
                event = await connection.next_event()
        except (OSError, h11.LocalProtocolError) as exc:
            raise WireError(f"{type(exc).__name__}: {exc}") from None
        if isinstance(event, h11.ConnectionClosed):
            raise WireError("the upstream closed the connection without an answer")
        if not isinstance(event, h11.Response):
            raise WireError(f"unexpected {type(event).__name__} from the upstream")
        return Response(event.status_code, list(event.headers), connection)

    async def aclose(self) -> None:
        while self._free:
            self._free.pop().close()
