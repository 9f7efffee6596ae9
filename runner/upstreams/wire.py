"""POSTs to one HTTP upstream on kept-alive HTTP/1.1 connections: asyncio streams and a small, bounded parser.

Why not httpcore2 (what httpx2 uses) or h11: per request httpcore2 takes a pool lock, starts a cancel
scope for every read and write and sends the headers and the body in two writes, and h11 validates
every header of every request with regular expressions and steps a state machine per event; on a
call the upstream answers in about a millisecond, that was 0.25-0.4 ms of the runner's CPU, most of
what a plain socket exchange costs (docs/performance.md, "Upstreams"). Here the request's head is
built once per upstream (its headers checked once, `head`), a request is one write, and the answer
is parsed as HTTP/1.1 needs it for a POST: the status line and headers (at most `MAX_HEAD_BYTES`),
then a chunked, sized or close-delimited body, read in pieces of at most `READ_BYTES` (a chunk size
is never trusted to allocate). The caller's cancel scope (the entry's `timeout`) bounds the request.

A connection goes back to the pool only when its answer was read to its end and both sides keep it
(HTTP/1.1, no `connection: close`); at most `size` are open at once (a request waits for one), and an
idle one older than `idle` seconds is closed rather than reused (servers close idle connections too:
uvicorn after 5 s). A kept connection that closes without a byte of answer (the server closed it as
the request went out) is retried once on a new one: the server never read that request.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import anyio

READ_BYTES = 64 * 1024
MAX_HEAD_BYTES = 64 * 1024  # an answer's status line and headers
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a header name (RFC 9110)
_VALUE = re.compile(rb"[^\x00-\x08\x0a-\x1f\x7f]*")  # a header value: no CR, LF, NUL or other controls


class WireError(Exception):
    """The connection failed, or the answer is not HTTP/1.1 the runner can read."""


class Closed(WireError):
    """The connection ended before a byte of the answer: the server never read the request (closed when idle)."""


def head(target: str, authority: str, headers: list[tuple[str, str]]) -> bytes:
    """A POST's head without its content-length, checked once: a name or value that could split it is refused."""
    lines = [f"POST {target} HTTP/1.1\r\n".encode("ascii"), b"host: " + authority.encode("idna") + b"\r\n"]
    for name, value in headers:
        raw_name, raw_value = name.encode("latin-1"), value.strip().encode("latin-1")
        if not _TOKEN.fullmatch(raw_name) or not _VALUE.fullmatch(raw_value):
            raise ValueError(f"header {name!r} cannot be sent as it is")
        lines.append(raw_name + b": " + raw_value + b"\r\n")
    return b"".join(lines)


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]  # names in lower case
    connection: _Connection
    ended: bool = False
    keep: bool = True  # HTTP/1.1 without `connection: close`

    async def aiter_stream(self) -> AsyncIterator[bytes]:
        """The body's bytes as they come, in pieces of at most READ_BYTES."""
        async for piece in self.connection.body(self):
            yield piece
        self.ended = True


@dataclass(eq=False)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    used: float = field(default_factory=time.monotonic)

    async def answer(self) -> Response:
        """The status line and headers (an informational 1xx answer is skipped)."""
        while True:
            try:
                raw = await self.reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    raise WireError("the upstream closed the connection in the middle of an answer") from None
                raise Closed("the upstream closed the connection without an answer") from None
            except asyncio.LimitOverrunError:
                raise WireError(f"the upstream's answer headers are over {MAX_HEAD_BYTES // 1024} KiB") from None
            status_line, *lines = raw[:-4].split(b"\r\n")
            version, _, rest = status_line.partition(b" ")
            code = rest[:3]
            if version not in (b"HTTP/1.1", b"HTTP/1.0") or not code.isdigit():
                raise WireError("the upstream's answer is not HTTP/1.1")
            headers = []
            for line in lines:
                name, colon, value = line.partition(b":")
                if not colon or not _TOKEN.fullmatch(name):
                    raise WireError("the upstream's answer has a malformed header")
                headers.append((name.lower(), value.strip()))
            status = int(code)
            if 100 <= status < 200:
                continue
            close = any(n == b"connection" and b"close" in v.lower() for n, v in headers)
            return Response(status, headers, self, keep=version == b"HTTP/1.1" and not close)

    async def body(self, response: Response) -> AsyncIterator[bytes]:
        values = dict(response.headers)
        if response.status in (204, 304):
            return
        if b"chunked" in values.get(b"transfer-encoding", b"").lower():
            async for piece in self._chunked():
                yield piece
        elif b"content-length" in values:
            try:
                left = int(values[b"content-length"])
            except ValueError:
                raise WireError("the upstream's content-length is not a number") from None
            while left > 0:
                piece = await self.reader.read(min(left, READ_BYTES))
                if not piece:
                    raise WireError("the upstream closed the connection in the middle of an answer")
                left -= len(piece)
                yield piece
        else:  # the body ends with the connection
            response.keep = False
            while piece := await self.reader.read(READ_BYTES):
                yield piece

    async def _chunked(self) -> AsyncIterator[bytes]:
        try:
            while True:
                line = await self.reader.readuntil(b"\r\n")
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise WireError("the upstream's chunked answer is malformed") from None
                if size == 0:
                    while await self.reader.readuntil(b"\r\n") != b"\r\n":  # trailers, to the empty line
                        pass
                    return
                while size > 0:
                    piece = await self.reader.read(min(size, READ_BYTES))
                    if not piece:
                        raise WireError("the upstream closed the connection in the middle of an answer")
                    size -= len(piece)
                    yield piece
                if await self.reader.readexactly(2) != b"\r\n":
                    raise WireError("the upstream's chunked answer is malformed")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            raise WireError("the upstream's chunked answer is malformed or cut short") from None

    def close(self) -> None:
        self.writer.close()


class Pool:
    """Connections to one upstream's origin, for POSTs to its URL with a fixed set of headers."""

    def __init__(self, url: str, headers: list[tuple[str, str]], size: int, idle: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url}")
        self.host, self.tls = parts.hostname, parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.head = head(target, parts.netloc.rpartition("@")[2], headers)  # never the URL's user:password
        self.size, self.idle = size, idle
        self._free: list[_Connection] = []
        self._slots = anyio.Semaphore(size)
        self._ssl: ssl.SSLContext | None = None

    async def _open(self) -> _Connection:
        if self.tls and self._ssl is None:
            import httpx2  # noqa: PLC0415 - only an https upstream needs it

            self._ssl = httpx2.create_ssl_context()  # verified as httpx2 (and the SDK's client) verifies
        try:
            hostname = self.host if self.tls else None
            reader, writer = await asyncio.open_connection(
                self.host, self.port, ssl=self._ssl, limit=MAX_HEAD_BYTES, server_hostname=hostname
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
    async def post(self, body: bytes) -> AsyncIterator[Response]:
        """The answer's status and headers; its body is read in the `with`, and the connection kept if it can be."""
        async with self._slots:
            connection, response = await self._send(body)
            try:
                yield response
            finally:
                if response.ended and response.keep and not connection.reader.at_eof():
                    connection.used = time.monotonic()
                    self._free.append(connection)
                else:
                    connection.close()

    async def _send(self, body: bytes) -> tuple[_Connection, Response]:
        request = self.head + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        kept = self._kept()
        connection = kept or await self._open()
        try:
            return connection, await self._exchange(connection, request)
        except Closed:
            connection.close()
            if kept is None:
                raise
        except BaseException:
            connection.close()
            raise
        connection = await self._open()  # the kept one was closed by the server before it read a byte of this
        try:
            return connection, await self._exchange(connection, request)
        except BaseException:
            connection.close()
            raise

    async def _exchange(self, connection: _Connection, request: bytes) -> Response:
        try:
            connection.writer.write(request)  # one write: head and body in one segment
            await connection.writer.drain()
        except OSError as exc:
            raise Closed(f"the upstream closed the connection without an answer ({type(exc).__name__})") from None
        try:
            return await connection.answer()
        except OSError as exc:
            raise WireError(f"{type(exc).__name__}: {exc}") from None

    async def aclose(self) -> None:
        while self._free:
            self._free.pop().close()
