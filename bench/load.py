"""A raw HTTP/1.1 load generator for MCP servers: keep-alive connections, request bytes built in advance.

Why not the SDK's client: it spends more CPU per call than the server does, so it
saturates first and every server looks alike. Here each connection sends
pre-built bytes and reads the response with a minimal parser (Content-Length or
chunked), so the client costs a few per cent of a core; `Load.run` reports the
server's CPU from /proc next to the client's, so a reader can see which side
was saturated.

Both protocol generations, as the SDK's client sends them:
- handshake-era (`mode="legacy"`): `initialize` once per connection, then every
  request carries `mcp-session-id` and `mcp-protocol-version: 2025-11-25`; the
  server answers each POST with a one-event SSE stream (chunked);
- 2026-07-28: no handshake and no session; every request carries
  `mcp-protocol-version: 2026-07-28`, `mcp-method` (and `mcp-name` for a tool)
  headers and the client's `_meta` in its params; the answer is plain JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import time
from dataclasses import dataclass, field
from typing import Any

LEGACY = "2025-11-25"
MODERN = "2026-07-28"
CLIENT_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads included (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def http_request(port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [f"POST {path} HTTP/1.1", f"host: 127.0.0.1:{port}", "accept: application/json, text/event-stream"]
    head += ["content-type: application/json", f"content-length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass(frozen=True)
class Call:
    """One kind of request: a method, its params, and a byte string every good answer contains."""

    method: str
    params: dict[str, Any]
    expect: bytes

    def message(self, ident: int, modern: bool) -> bytes:
        params = {**self.params, "_meta": CLIENT_META} if modern else self.params
        return json.dumps({"jsonrpc": "2.0", "id": ident, "method": self.method, "params": params}).encode()

    def headers(self, modern: bool, session: str | None) -> dict[str, str]:
        if not modern:
            return {"mcp-protocol-version": LEGACY, **({"mcp-session-id": session} if session else {})}
        named = {"mcp-name": self.params["name"]} if "name" in self.params else {}
        return {"mcp-protocol-version": MODERN, "mcp-method": self.method, **named}


ADD = Call("tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}}, b'"structuredContent":{"result":3}')


def list_tools(last: str) -> Call:
    return Call("tools/list", {}, f'"name":"{last}"'.encode())


class BadResponse(Exception):
    pass


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding") == b"chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers are sent: the empty line
                break
            parts.append((await reader.readexactly(size + 2))[:-2])
        body = b"".join(parts)
    else:
        body = b""
    return status, headers, body


@dataclass
class Result:
    calls: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ns: list[int] = field(default_factory=list)
    server_cpu: float = 0.0  # fraction of one core over the measured window
    client_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """Latency in ms."""
        if not self.latencies_ns:
            return float("nan")
        ordered = sorted(self.latencies_ns)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


@dataclass
class Load:
    """`concurrency` keep-alive connections, each with one request in flight, for `warmup` + `seconds`."""

    port: int
    pid: int
    path: str = "/mcp"
    token: str | None = None
    modern: bool = False
    concurrency: int = 1
    seconds: float = 3.0
    warmup: float = 0.5

    def _auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    async def _open(self, index: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str | None]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        if self.modern:
            return reader, writer, None
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}},
        }
        writer.write(http_request(self.port, self.path, json.dumps(init).encode(), self._auth()))
        status, headers, body = await read_response(reader)
        session = headers.get(b"mcp-session-id", b"").decode()
        if status != 200 or not session:
            raise BadResponse(f"initialize: HTTP {status} {body[:200]!r}")
        done = json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode()
        headers_out = {"mcp-protocol-version": LEGACY, "mcp-session-id": session, **self._auth()}
        writer.write(http_request(self.port, self.path, done, headers_out))
        status, _, body = await read_response(reader)
        if status != 202:
            raise BadResponse(f"notifications/initialized: HTTP {status} {body[:200]!r}")
        return reader, writer, session

    async def _close(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: str | None) -> None:
        if session:  # end the session, as the SDK's client does, so that sessions never pile up across rounds
            head = f"DELETE {self.path} HTTP/1.1\r\nhost: 127.0.0.1:{self.port}\r\nmcp-session-id: {session}\r\n"
            head += f"mcp-protocol-version: {LEGACY}\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in self._auth().items())
            writer.write((head + "content-length: 0\r\n\r\n").encode())
            try:
                await asyncio.wait_for(read_response(reader), 10)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                pass
        writer.close()

    async def _worker(
        self, index: int, call: Call, window: list[float], result: Result, opened: asyncio.Queue[int], go: asyncio.Event
    ) -> None:
        reader, writer, session = await self._open(index)
        opened.put_nowait(index)
        await go.wait()
        headers = {**call.headers(self.modern, session), **self._auth()}
        requests = [
            http_request(self.port, self.path, call.message(index * 1_000_000 + k, self.modern), headers)
            for k in range(16)
        ]
        try:
            k = 0
            while True:
                started = time.perf_counter()
                if started >= window[1]:
                    break
                writer.write(requests[k % 16])
                k += 1
                status, _, body = await read_response(reader)
                ended = time.perf_counter()
                ok = status == 200 and call.expect in body
                if started >= window[0] and ended <= window[1]:
                    if ok:
                        result.calls += 1
                        result.latencies_ns.append(int((ended - started) * 1e9))
                    else:
                        result.errors += 1
                elif not ok and started >= window[0]:
                    result.errors += 1
        finally:
            await self._close(reader, writer, session)

    async def run(self, call: Call) -> Result:
        result = Result()
        window = [0.0, 0.0]  # set once every connection is open (and its session initialized)
        opened: asyncio.Queue[int] = asyncio.Queue()
        go = asyncio.Event()
        workers = [
            asyncio.ensure_future(self._worker(i, call, window, result, opened, go)) for i in range(self.concurrency)
        ]
        for _ in workers:
            getter = asyncio.ensure_future(opened.get())
            await asyncio.wait([getter, *workers], return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():  # a worker failed to open: raise its error
                getter.cancel()
                failed = next(w for w in workers if w.done())
                for w in workers:
                    w.cancel()
                failed.result()
        start = time.perf_counter() + self.warmup
        window[0], window[1] = start, start + self.seconds
        go.set()
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        cpu0, own0, wall0 = cpu_seconds(self.pid), own_cpu_seconds(), time.perf_counter()
        await asyncio.sleep(max(0.0, window[1] - time.perf_counter()))
        cpu1, own1, wall1 = cpu_seconds(self.pid), own_cpu_seconds(), time.perf_counter()
        await asyncio.gather(*workers)
        result.seconds = self.seconds
        result.server_cpu = (cpu1 - cpu0) / (wall1 - wall0)
        result.client_cpu = (own1 - own0) / (wall1 - wall0)
        return result
