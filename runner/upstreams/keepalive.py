"""One TCP connection to an HTTP upstream, reused for every call: the response streams are read to their end.

The SDK's streamable HTTP client reads a request's SSE response until the JSON-RPC response arrives and
then closes it, before the stream's last chunk (the end of the chunked body) has been read. httpcore
can only put a connection back in its pool when the response was read to the end, so it closes the
connection instead: every call to an upstream that answers with SSE (the SDK's servers do, by default)
paid a new TCP connection, about 2 ms on loopback. This transport reads what is left of a POST's
event stream when it is closed, a little and briefly (`DRAIN_BYTES`, `DRAIN_SECONDS`): a server that
ends the stream, as they do after the response, keeps the connection; one that does not is closed
as before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx2

DRAIN_BYTES = 64 * 1024
DRAIN_SECONDS = 1.0


class _Drained(httpx2.AsyncByteStream):
    """A response body that, closed before its end, first reads that end (bounded)."""

    def __init__(self, inner: httpx2.AsyncByteStream) -> None:
        self._inner = inner
        self._chunks: AsyncIterator[bytes] | None = None
        self._ended = False

    def _iterator(self) -> AsyncIterator[bytes]:
        if self._chunks is None:  # one iterator, kept: the drain goes on where the reader stopped
            self._chunks = self._inner.__aiter__()
        return self._chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self._iterator()
        while True:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                self._ended = True
                return
            yield chunk

    async def aclose(self) -> None:
        try:
            if not self._ended:
                await self._drain()
        finally:
            await self._inner.aclose()

    async def _drain(self) -> None:
        chunks, left = self._iterator(), DRAIN_BYTES
        with anyio.move_on_after(DRAIN_SECONDS):
            while left > 0:
                try:
                    left -= len(await chunks.__anext__())
                except StopAsyncIteration:
                    self._ended = True
                    return
                except Exception:  # the connection is closed below, as it would have been
                    return


class KeepAlive(httpx2.AsyncBaseTransport):
    """httpx2's own transport, with each POST's event-stream response read to its end when closed."""

    def __init__(self) -> None:
        self._transport = httpx2.AsyncHTTPTransport()
        # The session the SDK client's requests carry (mcp-session-id, mcp-protocol-version) and the URL that answered
        # them (after a same-origin redirect the SDK followed, as from `/mcp` to `/mcp/`), for runner/upstreams/
        # lean.py's calls on it; seen here only when the requests come through this transport (not a proxy's).
        self.session: tuple[str, str, str] | None = None

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._transport.handle_async_request(request)
        session, version = request.headers.get("mcp-session-id"), request.headers.get("mcp-protocol-version")
        if session and version and request.method == "POST" and response.status_code < 300:
            self.session = (session, version, str(request.url))
        streaming = response.headers.get("content-type", "").lower().startswith("text/event-stream")
        if request.method == "POST" and streaming and isinstance(response.stream, httpx2.AsyncByteStream):
            response.stream = _Drained(response.stream)
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()
