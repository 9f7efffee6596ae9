"""The raw HTTP/1.1 load generator for MCP servers: keep-alive connections, request bytes built in advance.

Why not the SDK's client: it spends more CPU per call than the server does, so it
saturates first and every server looks alike. Here each connection sends
pre-built bytes and reads the response with a minimal parser (Content-Length or
chunked), so the client costs a few per cent of a core; `Load.run` reports the
server's CPU from /proc next to the client's, so a reader can see which side
was saturated. bench/throughput.py and bench/scale.py drive it.

Both protocol generations, as the SDK's client sends them:
- handshake-era (`mode="legacy"`): `initialize` once per connection, then every
  request carries `mcp-session-id` and `mcp-protocol-version: 2025-11-25`; the
  server answers each POST with a one-event SSE stream (chunked);
- 2026-07-28: no handshake and no session; every request carries
  `mcp-protocol-version: 2026-07-28`, `mcp-method` (and `mcp-name` for a tool)
  headers and the client's `_meta` in its params; the answer is plain JSON.

It always ends what it opened: every handshake-era session is DELETEd when the
run ends, whether it ends normally, because a connection failed to open, with
an error, or by cancellation (the runner caps sessions per client, so a leaked
session fails later rounds with 429). A failure is counted and described in the
`Result` of its case; it never aborts the caller's run.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
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
CLOSE_TIMEOUT = 10.0  # seconds to wait for a DELETE's answer
KEPT_PROBLEMS = 5  # distinct failure descriptions kept per case


SERVER_CPU = 0  # the servers' CPU when the machine has two or more; the load generator takes the others
_pinned = False


def pin_generator() -> str:
    """Keep this process (the load generator) off the servers' CPU; says what was done, for the report.

    Why: on these virtual machines one CPU can run the same work 30-50% slower than the other
    for a while (a busy neighbour on the host): an import-heavy start-up took 1.05 s of CPU on one
    and 1.57 s on the other, steadily, then the other way round minutes later. Unpinned, each
    server lands on either, so two servers compared could each be measured on a different CPU.
    Pinned, every server under test runs on the same one, and the generator never shares it.
    """
    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2 or SERVER_CPU not in cpus:
        return "not pinned (fewer than two CPUs)"
    os.sched_setaffinity(0, cpus - {SERVER_CPU})
    global _pinned
    _pinned = True
    others = ",".join(map(str, sorted(cpus - {SERVER_CPU})))
    return f"servers pinned to CPU {SERVER_CPU}, the load generator to CPU {others}"


def on_server_cpu() -> None:
    """`preexec_fn` for a server's process: run it on the servers' CPU, once `pin_generator` has pinned."""
    if _pinned:
        os.sched_setaffinity(0, {SERVER_CPU})


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads included (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def http_request(port: int, path: str, body: bytes, headers: dict[str, str], method: str = "POST") -> bytes:
    head = [f"{method} {path} HTTP/1.1", f"host: 127.0.0.1:{port}", "accept: application/json, text/event-stream"]
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


# What a broken server or connection raises here; anything else is a bug of the generator.
FAILURES = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, BadResponse, ValueError, IndexError)


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


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


@dataclass
class Result:
    calls: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ns: list[int] = field(default_factory=list)
    server_cpu: float = float("nan")  # fraction of one core over the measured window
    client_cpu: float = float("nan")
    problems: dict[str, int] = field(default_factory=dict)  # a few distinct failure descriptions, with counts

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """Latency in ms at quantile `q` (0..1)."""
        if not self.latencies_ns:
            return float("nan")
        ordered = sorted(self.latencies_ns)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6

    def fail(self, problem: str) -> None:
        self.errors += 1
        if problem in self.problems or len(self.problems) < KEPT_PROBLEMS:
            self.problems[problem] = self.problems.get(problem, 0) + 1


@dataclass
class Connection:
    """One keep-alive connection and, handshake-era, the session it opened; `close` ends both."""

    port: int
    path: str
    modern: bool
    auth: dict[str, str]
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    session: str | None = None
    busy: bool = False  # a request is written and its answer not yet read

    async def open(self) -> None:
        """Connect, and handshake-era, open a session. On any failure, cancellation included, end what was opened."""
        try:
            await self._connect()
            if self.modern:
                return
            init = {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": LEGACY,
                    "capabilities": {},
                    "clientInfo": {"name": "bench", "version": "0"},
                },
            }
            status, headers, body = await self.exchange(
                http_request(self.port, self.path, json.dumps(init).encode(), self.auth)
            )
            if b"mcp-session-id" in headers:
                self.session = headers[b"mcp-session-id"].decode()
            if status != 200 or not self.session:
                raise BadResponse(f"initialize: HTTP {status} {body[:200]!r}")
            done = json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode()
            headers_out = {"mcp-protocol-version": LEGACY, "mcp-session-id": self.session, **self.auth}
            status, _, body = await self.exchange(http_request(self.port, self.path, done, headers_out))
            if status != 202:
                raise BadResponse(f"notifications/initialized: HTTP {status} {body[:200]!r}")
        except BaseException:
            await self.close()
            raise

    async def exchange(self, request: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        """Send one request, read its answer; reconnect (same session) if the server closes after it."""
        assert self.reader is not None and self.writer is not None
        self.busy = True
        self.writer.write(request)
        answer = await read_response(self.reader)
        self.busy = False
        if answer[1].get(b"connection", b"").lower() == b"close":  # e.g. nginx's keepalive_requests
            await self._connect()
        return answer

    async def close(self) -> None:
        """DELETE the session, as the SDK's client does, then close. Bounded; never raises for a broken server."""
        session, self.session = self.session, None
        try:
            if session is not None:
                if self.busy or self.writer is None or self.writer.is_closing():
                    await self._connect()  # an answer still owed on the old connection would be read as the DELETE's
                head = {"mcp-session-id": session, "mcp-protocol-version": LEGACY, **self.auth}
                await asyncio.wait_for(
                    self.exchange(http_request(self.port, self.path, b"", head, "DELETE")), CLOSE_TIMEOUT
                )
        except (*FAILURES, TimeoutError):
            pass
        finally:
            self._disconnect()

    async def _connect(self) -> None:
        self._disconnect()
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.busy = False

    def _disconnect(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Load:
    """`concurrency` keep-alive connections, each with one request in flight, for `warmup` + `seconds`."""

    port: int
    pid: int | None = None  # the server's process, for its CPU; None when it is not ours to read (nginx)
    also: tuple[int, ...] = ()  # more server processes whose CPU counts with `pid`'s (replicas behind nginx)
    path: str = "/mcp"
    token: str | None = None
    modern: bool = False
    concurrency: int = 1
    seconds: float = 3.0
    warmup: float = 0.5

    def _auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    def connection(self) -> Connection:
        return Connection(self.port, self.path, self.modern, self._auth())

    def _requests(self, index: int, call: Call, connection: Connection) -> list[bytes]:
        headers = {**call.headers(self.modern, connection.session), **self._auth()}
        return [
            http_request(self.port, self.path, call.message(index * 1_000_000 + k, self.modern), headers)
            for k in range(16)
        ]

    async def _worker(
        self, index: int, connection: Connection, call: Call, window: tuple[float, float], result: Result
    ) -> None:
        requests = self._requests(index, call, connection)
        k = 0
        while (started := time.perf_counter()) < window[1]:
            try:
                status, _, body = await connection.exchange(requests[k % 16])
            except FAILURES as exc:  # a broken connection: count it, start over with a fresh one
                if time.perf_counter() >= window[0]:
                    result.fail(describe(exc))
                await connection.close()
                try:
                    await connection.open()
                except FAILURES as again:
                    result.fail(f"reopening: {describe(again)}")
                    return
                requests = self._requests(index, call, connection)
                continue
            k += 1
            ended = time.perf_counter()
            # What completes inside the window counts, whenever it started: the warm-up keeps every connection
            # busy from the window's start, and a slow call (a 1,000-tool list) still counts in a short window.
            if not window[0] <= ended <= window[1]:
                continue
            if status == 200 and call.expect in body:
                result.calls += 1
                result.latencies_ns.append(int((ended - started) * 1e9))
            else:
                result.fail(f"{call.method}: HTTP {status} {body[:200]!r}")

    async def run(self, call: Call) -> Result:
        """One case. Failures are counted in the result (with their descriptions), never raised."""
        result = Result(seconds=self.seconds)
        connections = [self.connection() for _ in range(self.concurrency)]
        workers: list[asyncio.Future[None]] = []
        try:
            opened = await asyncio.gather(*(c.open() for c in connections), return_exceptions=True)
            for outcome in opened:
                if isinstance(outcome, BaseException):
                    if not isinstance(outcome, FAILURES):
                        raise outcome
                    result.fail(f"opening a connection: {describe(outcome)}")
            if result.errors:  # not the concurrency asked for: no figure, only the failures
                return result
            start = time.perf_counter() + self.warmup
            window = (start, start + self.seconds)
            workers = [
                asyncio.ensure_future(self._worker(i, c, call, window, result)) for i, c in enumerate(connections)
            ]
            await asyncio.sleep(max(0.0, start - time.perf_counter()))
            cpu0, own0, wall0 = self._cpu(), own_cpu_seconds(), time.perf_counter()
            await asyncio.sleep(max(0.0, window[1] - time.perf_counter()))
            cpu1, own1, wall1 = self._cpu(), own_cpu_seconds(), time.perf_counter()
            await asyncio.gather(*workers)
            result.server_cpu = (cpu1 - cpu0) / (wall1 - wall0)
            result.client_cpu = (own1 - own0) / (wall1 - wall0)
            return result
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)

    def _cpu(self) -> float:
        pids = [*([self.pid] if self.pid is not None else []), *self.also]
        return sum(cpu_seconds(pid) for pid in pids) if pids else float("nan")


Rounds = dict[tuple[str, int], list[tuple[float, float]]]  # (through, concurrency) -> per round (median ms, calls/s)


def print_against_direct(table: Rounds, names: list[str]) -> None:
    """A markdown table of medians over rounds, each row against `direct` at the same concurrency."""
    print("| through | concurrency | median latency (ms) | added vs direct (ms) | calls/s | vs direct |")
    print("|---|---|---|---|---|---|")
    for concurrency in sorted({c for _, c in table}):
        base_ms = statistics.median(m for m, _ in table[("direct", concurrency)])
        base_rate = statistics.median(r for _, r in table[("direct", concurrency)])
        for name in names:
            rows = table[(name, concurrency)]
            ms, rate = statistics.median(m for m, _ in rows), statistics.median(r for _, r in rows)
            print(f"| {name} | {concurrency} | {ms:.2f} | {ms - base_ms:+.2f} | {rate:,.0f} | {rate / base_rate:.2f} |")
