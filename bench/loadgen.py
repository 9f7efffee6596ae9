"""A small raw HTTP/1.1 load generator for MCP tools/call, cheap enough not to be the bottleneck.

The SDK's client spends more CPU per call than the server does, so it cannot measure a server
that has the machine's other core. This one keeps one keep-alive connection per worker, sends
pre-built requests, and reads just enough of the answer (status, headers, a Content-Length or
chunked body) to know the call completed and succeeded. Both protocol generations:

- `2026`: one self-contained POST per call (`MCP-Protocol-Version: 2026-07-28`, `_meta` in params);
- `legacy`: `initialize` + `notifications/initialized` per connection, then calls in that session.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

MODERN = "2026-07-28"
LEGACY = "2025-06-18"
_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": {"name": "loadgen", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


class CallFailed(Exception):
    pass


@dataclass
class Connection:
    host: str
    port: int
    path: str
    generation: str  # "2026" or "legacy"
    session: str | None = None
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    ids: int = 0

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        if self.generation == "legacy":
            init = {
                "protocolVersion": LEGACY,
                "capabilities": {},
                "clientInfo": {"name": "loadgen", "version": "0"},
            }
            _, headers, _ = await self.post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
            self.session = headers["mcp-session-id"]
            await self.post({"jsonrpc": "2.0", "method": "notifications/initialized"}, expect=202)

    async def call(self, a: int, b: int) -> None:
        self.ids += 1
        params: dict[str, object] = {"name": "add", "arguments": {"a": a, "b": b}}
        if self.generation == "2026":
            params["_meta"] = _META
        _, _, body = await self.post({"jsonrpc": "2.0", "id": self.ids, "method": "tools/call", "params": params})
        if b'"isError":false' not in body or f'"result":{a + b}'.encode() not in body:
            raise CallFailed(body[:200].decode(errors="replace"))

    async def post(self, message: dict[str, object], expect: int = 200) -> tuple[int, dict[str, str], bytes]:
        assert self.reader is not None and self.writer is not None
        body = json.dumps(message, separators=(",", ":")).encode()
        lines = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Accept: application/json, text/event-stream",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
        if self.generation == "2026":
            lines += [f"MCP-Protocol-Version: {MODERN}", f"Mcp-Method: {message['method']}"]
            if message["method"] == "tools/call":
                lines.append("Mcp-Name: add")
        elif self.session is not None:
            lines += [f"Mcp-Session-Id: {self.session}", f"MCP-Protocol-Version: {LEGACY}"]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        status, headers, answer = await self._response()
        if status != expect:
            raise CallFailed(f"HTTP {status}: {answer[:200]!r}")
        if headers.get("connection", "").lower() == "close":
            self.writer.close()
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return status, headers, answer

    async def _response(self) -> tuple[int, dict[str, str], bytes]:
        assert self.reader is not None
        head = await self.reader.readuntil(b"\r\n\r\n")
        first, *rest = head.decode("latin-1").split("\r\n")
        status = int(first.split(" ", 2)[1])
        headers = {}
        for line in rest:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            return status, headers, await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    return status, headers, b"".join(chunks)
                chunks.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
        return status, headers, b""

    async def end(self) -> None:
        """DELETE the session (the server caps sessions per client), then close."""
        if self.session is not None and self.writer is not None and self.reader is not None:
            head = f"DELETE {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nMcp-Session-Id: {self.session}\r\n"
            self.writer.write((head + f"MCP-Protocol-Version: {LEGACY}\r\nContent-Length: 0\r\n\r\n").encode())
            try:
                await self._response()
            except (OSError, asyncio.IncompleteReadError, ValueError):
                pass
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class Result:
    calls: int = 0
    failed: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def run(
    host: str, port: int, path: str, generation: str, concurrency: int, seconds: float, warmup: float = 1.0
) -> Result:
    """`concurrency` connections calling `add` back to back for `warmup` + `seconds`; counts the last part."""
    connections = [Connection(host, port, path, generation) for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in connections))
    result = Result()
    start = time.perf_counter()
    measure_from = start + warmup
    stop = measure_from + seconds

    async def worker(connection: Connection, n: int) -> None:
        while (now := time.perf_counter()) < stop:
            try:
                await connection.call(n, 1)
            except (CallFailed, OSError, asyncio.IncompleteReadError, ValueError):
                if now >= measure_from:
                    result.failed += 1
                await connection.end()
                await connection.open()
                continue
            done = time.perf_counter()
            if now >= measure_from:
                result.calls += 1
                result.latencies.append(done - now)

    await asyncio.gather(*(worker(c, i) for i, c in enumerate(connections)))
    result.seconds = time.perf_counter() - measure_from
    await asyncio.gather(*(c.end() for c in connections))
    return result
