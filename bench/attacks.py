"""The HTTP-layer attacks of issue 22 at full size, against a real server on loopback; it stops by itself.

Each attack runs against a fresh `mcp-runner serve` with the default limits (real RS256 tokens from
a JWKS server on loopback), while a legitimate user (a real MCP client with its own token) tries a
tool call every second; what is printed is how many of those calls were served, and what the attack
got:

- owed-body: 1,000 unauthenticated sockets each send a complete head (`POST /mcp` or `GET /healthz`)
  with `Content-Length: 100000` and then nothing, re-opening any the server closes;
- listen: one valid token opens 1,000 `subscriptions/listen` streams (2026-07-28) and holds them;
- subject: one subject with 33 client ids opens 32 sessions with each (the legitimate user here is a
  handshake-era client, which needs a session);
- head: six connections each push a 64 MiB request header; the server's RSS before and after;
- metrics: 1,000 idle sockets on the metrics port; the server's thread count, and a scrape.

The attacks a later pass found, at the attacker's own size (`--sockets` does not apply):

- never-read: 30 sockets (4 KiB receive buffer) pipeline `GET /healthz` and never read, re-opened when the
  server closes one, against `max_connections: 30`;
- trailer: four connections each send a chunked `POST /mcp` (valid token) whose trailer line never ends;
  the server's RSS, and `/healthz` latency meanwhile;
- wide-head: six connections send, again and again, a whole head of 12,000 small headers (105 KiB) in one
  write, and one sends a complete request followed by an oversized head in the same write;
- madeup-kid: keys known, then the issuer hangs (60 s); 30 keep-alive sockets loop `POST /mcp` with tokens
  naming made-up kids (no valid signature), re-opened when closed, against `max_connections: 30`.

    python bench/attacks.py [--attack owed-body listen subject head metrics never-read trailer wide-head
                             madeup-kid] [--http httptools h11] [--sockets 1000] [--seconds 30]

Bounded: loopback only, at most 5,000 sockets and 120 s per attack (plus start-up), every server and
socket it opened closed at the end. The suite runs the same attacks at a small size with the limits
lowered (tests/test_hardening_http.py), from the primitives below.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import re
import resource
import socket
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers import (  # noqa: E402
    INITIALIZE,
    Issuer,
    JWKSServer,
    Key,
    RunnerProcess,
    free_port,
    mcp_client,
    unsigned_token,
)

LOOPBACK = "127.0.0.1"
MODERN = "2026-07-28"
MAX_SOCKETS = 5000
MAX_SECONDS = 120.0

# -- the attacker's primitives (raw sockets; also used by tests/test_hardening_http.py) ------------------


def head(port: int, request_line: str, *headers: str) -> bytes:
    """A request head for the server on `port`: the request line, Host, `headers`, the blank line."""
    lines = [request_line, f"Host: {LOOPBACK}:{port}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def connect(port: int) -> socket.socket:
    return socket.create_connection((LOOPBACK, port), timeout=30)


def response_head(sock: socket.socket, timeout: float = 30) -> bytes:
    """The head of the response that arrives on `sock`, lower-cased (bounded wait; may read past it)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError(f"closed before a response head: {data!r}")
        data += chunk
    return data.split(b"\r\n\r\n", 1)[0].lower()


def status_of(sock: socket.socket, timeout: float = 30) -> int:
    """The status code of the response that arrives on `sock` (bounded wait)."""
    return int(response_head(sock, timeout).split(b" ", 2)[1])


def closed_by_server(sock: socket.socket, deadline: float) -> bool:
    """Read until the server closes the socket (b"" or a reset); False if it is still open at `deadline`."""
    try:
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            if not sock.recv(65536):
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def reset_by_server(sock: socket.socket, deadline: float) -> bool:
    """Wait, without reading, until the server resets `sock` (a pending ECONNRESET); False if not by `deadline`."""
    while time.monotonic() < deadline:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNRESET:
            return True
        time.sleep(0.05)
    return False


def owed_body_head(port: int, index: int, token: str | None = None) -> bytes:
    """A complete head announcing a 100,000-byte body that never comes: `POST /mcp`, or `GET /healthz`."""
    length = "Content-Length: 100000"
    auth = (f"Authorization: Bearer {token}",) if token else ()
    if index % 2:
        return head(port, "GET /healthz HTTP/1.1", length)
    return head(port, "POST /mcp HTTP/1.1", "Content-Type: application/json", *auth, length)


def listen_request(port: int, token: str) -> bytes:
    """A complete 2026-07-28 `subscriptions/listen` request, as a client sends it."""
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
    params = {"_meta": meta, "notifications": {"toolsListChanged": True}}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen", "params": params}).encode()
    headers = [
        f"Authorization: Bearer {token}",
        "Content-Type: application/json",
        "Accept: application/json, text/event-stream",
        f"MCP-Protocol-Version: {MODERN}",
        "Mcp-Method: subscriptions/listen",
        f"Content-Length: {len(body)}",
    ]
    return head(port, "POST /mcp HTTP/1.1", *headers) + body


def open_listen(port: int, token: str) -> tuple[socket.socket, int]:
    """A raw `subscriptions/listen` stream: the socket, and its status (200 while the stream stands)."""
    sock = connect(port)
    sock.sendall(listen_request(port, token))
    return sock, status_of(sock)


def big_head(port: int, size: int, piece: int = 65536) -> tuple[bytes, int]:
    """Push a request head with one `size`-byte header; (what the server answered, bytes it took before closing)."""
    return endless(port, f"GET /healthz HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nX-Big: ".encode(), size, piece)


def endless_trailer(port: int, token: str, size: int, piece: int = 65536) -> tuple[bytes, int]:
    """An authenticated chunked `POST /mcp` whose body ends (`0`) and whose trailer line never does."""
    prefix = head(
        port,
        "POST /mcp HTTP/1.1",
        f"Authorization: Bearer {token}",
        "Content-Type: application/json",
        "Accept: application/json, text/event-stream",
        "Transfer-Encoding: chunked",
    )
    return endless(port, prefix + b"2\r\n{}\r\n0\r\nX-Trailer: ", size, piece)


def endless(port: int, prefix: bytes, size: int, piece: int = 65536) -> tuple[bytes, int]:
    """Send `prefix`, then up to `size` bytes of `a`, then a blank line; (what the server answered, bytes of
    `a` it took before closing)."""
    sock = connect(port)
    sent = 0
    try:
        sock.sendall(prefix)
        try:
            filler = b"a" * piece
            while sent < size:
                sock.sendall(filler)
                sent += piece
            sock.sendall(b"\r\n\r\n")
        except OSError:  # the server closed: refused
            pass
        sock.settimeout(30)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and not answer.startswith(b"HTTP/1.1 431"):
                    break  # a served head (the bound missing): keep-alive, so no close to wait for
        except (ConnectionResetError, TimeoutError):
            pass
        return answer, sent
    finally:
        sock.close()


def statuses(sock: socket.socket, deadline: float) -> list[int]:
    """The status codes of every response on `sock` until the server closes it (or `deadline`)."""
    data = b""
    try:
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]


def many_headers(port: int, count: int) -> bytes:
    """A complete `GET /healthz` head of `count` small headers (10 bytes each), sent whole."""
    return head(port, "GET /healthz HTTP/1.1", *(f"X{i:05d}:y" for i in range(count)))


def made_up_kid_request(port: int) -> bytes:
    """`POST /mcp` with a token naming a made-up kid and carrying no valid signature (anyone can make one)."""
    token = unsigned_token({"alg": "RS256", "typ": "JWT", "kid": uuid.uuid4().hex}, {"sub": "x"}) + "AAAA"
    headers = (f"Authorization: Bearer {token}", "Content-Type: application/json", "Content-Length: 2")
    return head(port, "POST /mcp HTTP/1.1", *headers) + b"{}"


def never_reading(port: int) -> socket.socket:
    """A non-blocking socket with a 4 KiB receive buffer, for a client that sends and never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: it sets the window
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.connect((LOOPBACK, port))
    sock.setblocking(False)
    return sock


def push_until_stuck(socks: list[socket.socket], data: bytes, deadline: float, still: float = 1.0) -> list[int]:
    """Send `data` on every socket again and again, never reading, until none has taken a byte for `still`
    seconds (the server stopped reading them: its answers fill the buffers) or `deadline`; bytes sent each.
    A partial send is completed before `data` starts again, so each socket carries whole requests."""
    sent = [0] * len(socks)
    last = [time.monotonic()] * len(socks)
    while time.monotonic() < deadline:
        now = time.monotonic()
        for i, sock in enumerate(socks):
            try:
                offset = sent[i] % len(data)
                sent[i] += sock.send(data[offset:])
                last[i] = now
            except BlockingIOError:
                pass
            except OSError:  # closed by the server: nothing more to push
                last[i] = float("-inf")
        if all(now - at >= still for at in last):
            break
        time.sleep(0.005)
    return sent


# -- the full-size runs ------------------------------------------------------------------------------------


TOOLS = "def add(a: int, b: int) -> int:\n    return a + b\n"


@dataclass
class Target:
    runner: RunnerProcess
    issuer: Issuer
    metrics_port: int
    jwks: JWKSServer

    @property
    def port(self) -> int:
        return self.runner.port

    def pid(self) -> int:
        assert self.runner.proc is not None
        return self.runner.proc.pid

    def status(self, field_name: str) -> int:
        """A number from /proc/<pid>/status: VmRSS (KiB), Threads."""
        for line in Path(f"/proc/{self.pid()}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
        raise RuntimeError(f"no {field_name}")


@dataclass
class Legitimate:
    """A real MCP client with its own token, trying a tool call every second while an attack runs."""

    target: Target
    mode: str = "auto"  # the SDK client's choice (2026-07-28), or "legacy" for a handshake-era session
    served: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)  # per served call, connection and handshake included

    async def run(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.monotonic()
            try:
                with anyio.fail_after(10):
                    token = self.target.issuer.token(sub="legitimate")
                    async with mcp_client(self.target.runner.url, token, mode=self.mode) as c:
                        result = await c.call_tool("add", {"a": 2, "b": 3})
                        assert result.structured_content == {"result": 5}
                self.served += 1
                self.seconds.append(time.monotonic() - started)
            except Exception as exc:  # noqa: BLE001 - every failure is counted, by kind
                self.failed[_kind(exc)] += 1
            await anyio.sleep(max(0.0, 1 - (time.monotonic() - started)))

    def line(self) -> str:
        total = self.served + sum(self.failed.values())
        failures = ", ".join(f"{n} {kind}" for kind, n in self.failed.most_common()) or "none"
        took = sorted(self.seconds)
        times = f", {took[len(took) // 2]:.2f} s median, {took[-1]:.2f} s at most" if took else ""
        return f"legitimate user: {self.served} of {total} calls served{times} (failures: {failures})"


def _kind(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return _kind(exc.exceptions[0])
    text = str(exc)
    return "503 Too many connections" if "503" in text else type(exc).__name__


def start(folder: Path, jwks: JWKSServer, parser: str, settings: str = "") -> Target:
    """A fresh server with the default limits, or with `settings` (lines of the `server:` block) added."""
    (folder / "attack_tools.py").write_text(TOOLS)
    metrics_port = free_port()
    runner = RunnerProcess(folder / "attack.yaml", extra=("--http", parser, "--no-reload"))
    (folder / "attack.yaml").write_text(
        f"name: attack\nsignin:\n  app_id: {jwks.app_id}\n  resource: {runner.url}\n  base_url: {jwks.base_url}\n"
        f"server:\n  metrics: {{port: {metrics_port}}}\n{settings}tools:\n  - function: attack_tools:add\n"
    )
    runner.start()
    issuer = Issuer(base_url=jwks.base_url, resource=runner.url, key=jwks.keys[0])
    return Target(runner, issuer, metrics_port, jwks)


async def owed_body(target: Target, sockets: int, seconds: float) -> None:
    """`sockets` connections owing a body, each re-opened when the server closes it, for `seconds`."""
    end = time.monotonic() + seconds
    opened = Counter[str]()

    async def hold(index: int) -> None:
        while time.monotonic() < end:
            try:
                reader, writer = await asyncio.open_connection(LOOPBACK, target.port)
            except OSError:
                opened["refused at connect"] += 1
                await asyncio.sleep(0.1)
                continue
            opened["opened"] += 1
            try:
                writer.write(owed_body_head(target.port, index))
                with anyio.move_on_after(max(0.0, end - time.monotonic())):
                    while await reader.read(65536):
                        pass
            except OSError:
                pass
            finally:
                writer.close()

    legit = Legitimate(target)
    async with anyio.create_task_group() as tasks:
        for i in range(sockets):
            tasks.start_soon(hold, i)
        await anyio.sleep(2)  # every slot taken before the first legitimate call
        await legit.run(max(1.0, seconds - 3))
    print(f"  attacker: {sockets} sockets held, {opened['opened']} connections opened in all")
    print(f"  {legit.line()}")


async def listen(target: Target, sockets: int, seconds: float) -> None:
    token = target.issuer.token(sub="mallory")
    streams, statuses = [], Counter[int]()
    try:
        for _ in range(sockets):
            try:
                sock, status = await anyio.to_thread.run_sync(open_listen, target.port, token)
            except OSError:
                statuses[0] += 1
                continue
            streams.append(sock)
            statuses[status] += 1
        print(f"  attacker: {sockets} listen streams asked for with one token: {dict(statuses)} (0: no answer)")
        legit = Legitimate(target)
        await legit.run(seconds)
        print(f"  {legit.line()}")
    finally:
        for sock in streams:
            sock.close()


async def subject(target: Target, sockets: int, seconds: float) -> None:
    del sockets
    sessions: list[tuple[str, str]] = []
    statuses = Counter[int]()
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with httpx2.AsyncClient(timeout=30) as http:
        try:
            for client in range(33):
                token = target.issuer.token(sub="mallory", client_id=f"dcr-{client}")
                for _ in range(32):
                    answer = await http.post(
                        target.runner.url, json=INITIALIZE, headers={**headers, "Authorization": f"Bearer {token}"}
                    )
                    statuses[answer.status_code] += 1
                    if answer.status_code == 200:
                        sessions.append((token, answer.headers["mcp-session-id"]))
            print(f"  attacker: one subject, 33 client ids x 32 sessions: {dict(statuses)}")
            legit = Legitimate(target, mode="legacy")  # a client that needs a session of its own
            await legit.run(seconds)
            print(f"  {legit.line()}")
        finally:
            for token, session in sessions:
                await http.delete(
                    target.runner.url, headers={"Authorization": f"Bearer {token}", "mcp-session-id": session}
                )


async def heads(target: Target, sockets: int, seconds: float) -> None:
    del sockets
    before = peak = target.status("VmRSS")
    size = 64 * 1024 * 1024
    legit = Legitimate(target)
    pushing = True

    async def sample() -> None:
        nonlocal peak
        while pushing:
            peak = max(peak, target.status("VmRSS"))
            await anyio.sleep(0.05)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(legit.run, seconds)
        tasks.start_soon(sample)
        results = await asyncio.gather(*(anyio.to_thread.run_sync(big_head, target.port, size) for _ in range(6)))
        pushing = False
    for answer, sent in results:
        status = answer.split(b"\r\n", 1)[0].decode("latin-1") or "(closed without an answer)"
        print(f"  a 64 MiB header: {status}; {sent / 1024:,.0f} KiB sent before the server closed")
    after = target.status("VmRSS") / 1024
    print(f"  server RSS: {before / 1024:,.0f} MiB before, {peak / 1024:,.0f} MiB at most, {after:,.0f} MiB after")
    print(f"  {legit.line()}")


async def metrics(target: Target, sockets: int, seconds: float) -> None:
    before = target.status("Threads")
    idle = []
    try:
        for _ in range(sockets):
            try:
                idle.append(await anyio.to_thread.run_sync(connect, target.metrics_port))
            except OSError:
                break
        peak = target.status("Threads")
        async with httpx2.AsyncClient(timeout=30) as http:
            scrape = await http.get(f"http://{LOOPBACK}:{target.metrics_port}/metrics")
            rebound = await http.get(
                f"http://{LOOPBACK}:{target.metrics_port}/metrics", headers={"Host": "evil.example"}
            )
        print(f"  attacker: {len(idle)} idle sockets on the metrics port; a scrape meanwhile: {scrape.status_code}")
        print(f"  a scrape with Host: evil.example (DNS rebinding): {rebound.status_code}")
        deadline = time.monotonic() + min(seconds, 30)
        closed = sum(await anyio.to_thread.run_sync(lambda: [closed_by_server(s, deadline) for s in idle]))
        print(f"  server threads: {before} before, {peak} with the sockets open, {target.status('Threads')} after")
        print(f"  idle sockets closed by the server within {min(seconds, 30):g} s: {closed} of {len(idle)}")
    finally:
        for sock in idle:
            sock.close()


# -- the attacks a later pass found, at the attacker's size ------------------------------------------------

SLOTS = 30  # never-read and madeup-kid: as many sockets as `max_connections`, as the attacker ran them
SETTINGS = {"never-read": f"  max_connections: {SLOTS}\n", "madeup-kid": f"  max_connections: {SLOTS}\n"}


def flood_never_reading(port: int, sockets: int, data: bytes, end: float) -> Counter[str]:
    """`sockets` sockets that send `data` again and again and never read, each re-opened when the server closes
    it, until `end`; what happened to them."""
    stats = Counter[str]()
    socks: list[socket.socket | None] = [None] * sockets
    offsets = [0] * sockets
    try:
        while time.monotonic() < end:
            for i, sock in enumerate(socks):
                if sock is None:
                    try:
                        socks[i], offsets[i] = never_reading(port), 0
                        stats["opened"] += 1
                    except OSError:
                        stats["refused at connect"] += 1
                    continue
                try:
                    sent = sock.send(data[offsets[i] :])
                    stats["bytes sent"] += sent
                    offsets[i] = (offsets[i] + sent) % len(data)
                except BlockingIOError:
                    pass
                except OSError:
                    stats["closed by the server"] += 1
                    sock.close()
                    socks[i] = None
            time.sleep(0.005)
    finally:
        for sock in socks:
            if sock is not None:
                sock.close()
    return stats


async def never_read(target: Target, sockets: int, seconds: float) -> None:
    del sockets
    end = time.monotonic() + seconds
    pipelined = head(target.port, "GET /healthz HTTP/1.1") * 64
    flooded: list[Counter[str]] = []
    legit = Legitimate(target)

    async def flood() -> None:
        flooded.append(await anyio.to_thread.run_sync(flood_never_reading, target.port, SLOTS, pipelined, end))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(flood)
        await anyio.sleep(min(5.0, seconds / 3))  # the buffers full and every slot held before the first call
        await legit.run(max(1.0, end - time.monotonic() - 1))
    stats = flooded[0]
    print(
        f"  attacker: {SLOTS} never-reading sockets (max_connections: {SLOTS}), {stats['bytes sent'] / 1e6:,.1f} MB"
        f" of pipelined GET /healthz sent, {stats['opened']} connections opened, {stats['closed by the server']}"
        " closed by the server"
    )
    print(f"  {legit.line()}")


class Sampled:
    """The server's RSS at most, and `GET /healthz` latencies, sampled while an attack runs."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.before = self.peak = target.status("VmRSS")
        self.latencies: list[float] = []
        self.errors = 0

    async def run(self, end: float) -> None:
        async with httpx2.AsyncClient(timeout=30) as http:
            while time.monotonic() < end:
                self.peak = max(self.peak, self.target.status("VmRSS"))
                started = time.monotonic()
                try:
                    (await http.get(self.target.runner.health_url)).raise_for_status()
                    self.latencies.append(time.monotonic() - started)
                except httpx2.HTTPError:
                    self.errors += 1
                await anyio.sleep(0.25)

    def lines(self) -> list[str]:
        before, peak, after = self.before / 1024, self.peak / 1024, self.target.status("VmRSS") / 1024
        took = sorted(self.latencies) or [float("nan")]
        return [
            f"server RSS: {before:,.0f} MiB before, {peak:,.0f} MiB at most, {after:,.0f} MiB after",
            f"GET /healthz meanwhile: {len(self.latencies)} answered ({self.errors} failed), "
            f"{took[len(took) // 2]:.2f} s median, {took[-1]:.2f} s at most",
        ]


def answered(answer: bytes) -> str:
    return answer.split(b"\r\n", 1)[0].decode("latin-1")[9:] or "closed without an answer"


async def trailer(target: Target, sockets: int, seconds: float) -> None:
    del sockets
    end = time.monotonic() + seconds
    token = target.issuer.token(sub="mallory")
    outcomes = Counter[str]()
    taken: list[int] = []

    def push() -> None:  # one connection after another, each an endless trailer (64 MiB at most), until `end`
        while time.monotonic() < end:
            answer, sent = endless_trailer(target.port, token, 64 * 1024 * 1024)
            outcomes[answered(answer)] += 1
            taken.append(sent)

    sampled, legit = Sampled(target), Legitimate(target)
    async with anyio.create_task_group() as tasks:
        for _ in range(4):
            tasks.start_soon(anyio.to_thread.run_sync, push)
        tasks.start_soon(sampled.run, end)
        await legit.run(seconds)
    print(
        f"  attacker: 4 connections at a time, {sum(outcomes.values())} endless trailers sent: {dict(outcomes)};"
        f" at most {max(taken) / 1024:,.0f} KiB sent on one before the server's close reached it (socket buffers)"
    )
    for line in [*sampled.lines(), legit.line()]:
        print(f"  {line}")


def wide_heads(port: int, end: float, outcomes: Counter[str]) -> None:
    """One connection after another, each sending a whole 105 KiB head (12,000 headers) in one write, until `end`."""
    wide = many_headers(port, 12000)
    while time.monotonic() < end:
        try:
            with connect(port) as sock:
                sock.sendall(wide)
                outcomes[str(status_of(sock, 10))] += 1
        except (OSError, AssertionError):  # reset before the answer came (the server closed first), or closed
            outcomes["closed without an answer"] += 1


async def wide_head(target: Target, sockets: int, seconds: float) -> None:
    del sockets
    end = time.monotonic() + seconds
    with connect(target.port) as sock:  # a complete request, then an oversized head, in the same write
        sock.sendall(head(target.port, "GET /healthz HTTP/1.1") + many_headers(target.port, 2000))
        pipelined = statuses(sock, time.monotonic() + 10)
    outcomes = Counter[str]()
    sampled, legit = Sampled(target), Legitimate(target)
    async with anyio.create_task_group() as tasks:
        for _ in range(6):
            tasks.start_soon(anyio.to_thread.run_sync, wide_heads, target.port, end, outcomes)
        tasks.start_soon(sampled.run, end)
        await legit.run(seconds)
    print(f"  a complete request and a 17 KiB head in one write: answered {pipelined}")
    sent = sum(outcomes.values())
    print(f"  attacker: 6 connections at a time, {sent} heads of 105 KiB, each in one write: {dict(outcomes)}")
    for line in [*sampled.lines(), legit.line()]:
        print(f"  {line}")


async def madeup_kid(target: Target, sockets: int, seconds: float) -> None:
    del sockets
    headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {target.issuer.token()}"}
    async with httpx2.AsyncClient(timeout=30) as http:  # the keys are known
        warm = await http.post(target.runner.url, json=INITIALIZE, headers=headers)
    await anyio.sleep(2.1)  # past the refetch rate limit: a made-up kid really asks the issuer
    target.jwks.delay = 60.0  # the issuer hangs from now on
    end = time.monotonic() + seconds
    outcomes = Counter[str]()

    async def loop() -> None:  # a keep-alive socket looping made-up kids, re-opened when the server closes it
        while time.monotonic() < end:
            try:
                reader, writer = await asyncio.open_connection(LOOPBACK, target.port)
            except OSError:
                outcomes["refused at connect"] += 1
                await asyncio.sleep(0.1)
                continue
            try:
                with anyio.move_on_after(max(0.0, end - time.monotonic())):
                    while True:
                        writer.write(made_up_kid_request(target.port))
                        answer = await reader.readuntil(b"\r\n\r\n")
                        outcomes[answered(answer)] += 1
                        length = re.search(rb"(?i)content-length: *(\d+)", answer)
                        await reader.readexactly(int(length.group(1)) if length else 0)
                        if b"connection: close" in answer.lower():
                            break
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                outcomes["closed without an answer"] += 1
            finally:
                writer.close()

    legit = Legitimate(target)
    try:
        async with anyio.create_task_group() as tasks:
            for _ in range(SLOTS):
                tasks.start_soon(loop)
            await anyio.sleep(2)  # every slot taken before the first legitimate call
            await legit.run(max(1.0, end - time.monotonic()))
    finally:
        target.jwks.delay = 0.0
    print(f"  keys known ({warm.status_code}), then the issuer hangs; {SLOTS} sockets (max_connections: {SLOTS})")
    print(f"  attacker: {sum(outcomes.values())} made-up kids answered: {dict(outcomes.most_common(4))}")
    print(f"  {legit.line()} (a known kid)")


ATTACKS: dict[str, Callable[[Target, int, float], Awaitable[None]]] = {
    "owed-body": owed_body,
    "listen": listen,
    "subject": subject,
    "head": heads,
    "metrics": metrics,
    "never-read": never_read,
    "trailer": trailer,
    "wide-head": wide_head,
    "madeup-kid": madeup_kid,
}
BOTH_PARSERS = ("owed-body", "head", "never-read", "trailer", "wide-head", "madeup-kid")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attack", nargs="+", choices=list(ATTACKS), default=list(ATTACKS))
    parser.add_argument("--http", nargs="+", choices=["httptools", "h11"], default=["httptools", "h11"])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    sockets = max(1, min(args.sockets, MAX_SOCKETS))
    seconds = max(3.0, min(args.seconds, MAX_SECONDS))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # the attacker needs a descriptor per socket too
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for name in args.attack:
        for http in args.http if name in BOTH_PARSERS else args.http[:1]:
            size = f"{sockets} sockets, " if name in ("owed-body", "listen", "metrics") else ""
            print(f"{name} ({http}, {size}{seconds:g} s):", flush=True)
            jwks = JWKSServer(keys=[Key.new()]).start()  # one per run: madeup-kid leaves it hanging
            try:
                with tempfile.TemporaryDirectory(prefix="attacks-") as folder:
                    target = start(Path(folder), jwks, http, SETTINGS.get(name, ""))
                    try:
                        anyio.run(ATTACKS[name], target, sockets, seconds)
                    finally:
                        target.runner.stop()
            finally:
                jwks.stop()


if __name__ == "__main__":
    main()
