"""POSTs to one HTTP upstream on kept-alive HTTP/1.1 connections: asyncio streams, answers parsed by httptools.

Why not httpcore2 (what httpx2 uses) or h11: per request httpcore2 takes a pool lock, starts a cancel
scope for every read and write and sends the headers and the body in two writes, and h11 validates
every header of every request with regular expressions and steps a state machine per event; on a
call the upstream answers in about a millisecond, that was 0.25-0.4 ms of the runner's CPU, most of
what a plain socket exchange costs (docs/performance.md, "Upstreams"). Here the request's head is
built once per upstream (its headers checked once, `head`) and a request is one write.

Why httptools for the answer: HTTP/1.1 framing (chunked, sized or close-delimited bodies, a length
given twice or with chunked, obsolete line ends) is where hand-written parsers go wrong, and
httptools is MagicStack's binding of llhttp, the parser Node.js uses, already here because uvicorn
parses requests with it; it costs less CPU than the hand-written parser it replaced. It is fed the
bytes as they are read; the bounds are this module's: the head is at most `MAX_HEAD_BYTES` read
(counted before the head's end), the body is read in pieces of at most `READ_BYTES` and handed on
as it comes (a chunk size is never trusted to allocate), an informational 1xx answer is skipped,
and anything llhttp refuses is a `WireError` with its reason. The caller's cancel scope (the
entry's `timeout`) bounds the request.

A connection goes back to the pool only when its answer was read to its end and both sides keep it
(HTTP/1.1, no `connection: close`, no byte after the answer); at most `size` are open at once (a
request waits for one), at most `kept` (8) stay idle, and an idle one older than `idle` seconds or
closed by the server is closed at the next request rather than reused (servers close idle connections
too: uvicorn after 5 s). A kept connection that closes without a
byte of answer (the server closed it as the request went out) is retried once on a new one: the
server never read that request.
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
KEPT = 8  # idle connections kept at most per pool: a burst of 64 does not leave 64 sockets open
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a header name (RFC 9110)
_VALUE = re.compile(rb"[^\x00-\x08\x0a-\x1f\x7f]*")  # a header value: no CR, LF, NUL or other controls


def available() -> bool:
    """Whether httptools imports here: without a build for this platform, calls stay on the SDK's client."""
    try:
        import httptools  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


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
    keep: bool = True  # HTTP/1.1 without `connection: close`, and (once read) the answer ended as its head said
    reading: _Answer | None = field(default=None, repr=False)

    async def aiter_stream(self) -> AsyncIterator[bytes]:
        """The body's bytes as they come, in pieces of at most READ_BYTES."""
        async for piece in self.connection.body(self):
            yield piece
        self.ended = True


class _Answer:
    """httptools' callbacks for one answer: the final status and head (a 1xx before it skipped), the body's pieces."""

    def __init__(self) -> None:
        try:  # imported here: the runner serves without httptools (`--http h11`, docs/cli.md); its calls need it
            import httptools  # noqa: PLC0415
        except ImportError as exc:
            raise WireError(f"calls to HTTP upstreams need httptools, which cannot be imported ({exc})") from None
        self.parser = httptools.HttpResponseParser(self)
        self.errors, self.upgrade = httptools.HttpParserError, httptools.HttpParserUpgrade
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.version = ""
        self.keep = False  # HTTP/1.1 without `connection: close`, and nothing after the answer
        self.pieces: list[bytes] = []

    def on_message_begin(self) -> None:
        if self.complete:  # bytes after the answer: nothing a POST's answer may have, so the connection is not reused
            self.keep = False
        elif not self.head_done:
            self.headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_done:  # not a chunked body's trailers
            self.headers.append((name.lower(), value.strip()))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # informational: the answer comes after it
            return
        self.status, self.head_done = status, True
        self.version = self.parser.get_http_version()  # read here: the parser resets its state once the answer ends
        self.keep = self.version == "1.1" and self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.pieces.append(body)

    def on_message_complete(self) -> None:
        if self.head_done:
            self.complete = True

    def until_close(self) -> bool:
        """Neither a content-length nor chunked: the body ends with the connection (asked only when it ends)."""
        chunked = any(n == b"transfer-encoding" and b"chunked" in v.lower() for n, v in self.headers)
        return not chunked and all(n != b"content-length" for n, _ in self.headers)

    def feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except self.upgrade:
            raise WireError("the upstream's answer switches protocols") from None
        except self.errors as exc:
            if self.complete:  # after the answer: it stands, the connection is not reused
                self.keep = False
                return
            raise WireError(f"the upstream's answer is not HTTP/1.1 the runner can read: {exc}") from None


@dataclass(eq=False)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    used: float = field(default_factory=time.monotonic)

    async def answer(self) -> Response:
        """The status and headers, from at most MAX_HEAD_BYTES read (an informational 1xx answer is skipped)."""
        answer, fed = _Answer(), 0
        while not answer.head_done:
            if fed >= MAX_HEAD_BYTES:
                raise WireError(f"the upstream's answer headers are over {MAX_HEAD_BYTES // 1024} KiB")
            data = await self.reader.read(MAX_HEAD_BYTES - fed)
            if not data:
                if fed:
                    raise WireError("the upstream closed the connection in the middle of an answer")
                raise Closed("the upstream closed the connection without an answer")
            fed += len(data)
            answer.feed(data)
        if answer.version not in ("1.1", "1.0"):
            raise WireError("the upstream's answer is not HTTP/1.1")
        return Response(answer.status, answer.headers, self, keep=answer.keep, reading=answer)

    async def body(self, response: Response) -> AsyncIterator[bytes]:
        answer = response.reading
        assert answer is not None  # set by `answer`
        while True:
            pieces, answer.pieces = answer.pieces, []
            for piece in pieces:
                yield piece
            if answer.complete:
                response.keep = response.keep and answer.keep
                return
            data = await self.reader.read(READ_BYTES)
            if not data:
                if answer.until_close():
                    response.keep = False
                    return
                raise WireError("the upstream closed the connection in the middle of an answer")
            answer.feed(data)

    def close(self) -> None:
        self.writer.close()


class Pool:
    """Connections to one upstream's origin, for POSTs to its URL with a fixed set of headers."""

    def __init__(self, url: str, headers: list[tuple[str, str]], size: int, idle: float, kept: int = KEPT) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url}")
        self.host, self.tls = parts.hostname, parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.head = head(target, parts.netloc.rpartition("@")[2], headers)  # never the URL's user:password
        self.size, self.idle, self.kept = size, idle, kept
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
        """The most recently used live connection; every idle-too-long or closed one on the free list is closed
        now, not only those popped: under light traffic the one on top is reused, and a burst's others, closed
        by the server after its keep-alive, stayed open (CLOSE-WAIT) for as long as traffic went on."""
        now = time.monotonic()
        live = []
        for connection in self._free:
            if now - connection.used < self.idle and not connection.reader.at_eof():
                live.append(connection)
            else:
                connection.close()
        self._free = live
        return live.pop() if live else None

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
                    if len(self._free) > self.kept:  # after a burst, only a few stay idle: the oldest goes
                        self._free.pop(0).close()
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
