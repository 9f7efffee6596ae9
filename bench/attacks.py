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

    python bench/attacks.py [--attack owed-body listen subject head metrics] [--http httptools h11]
                            [--sockets 1000] [--seconds 30]

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
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers import INITIALIZE, Issuer, JWKSServer, Key, RunnerProcess, free_port, mcp_client  # noqa: E402

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


def start(folder: Path, jwks: JWKSServer, parser: str) -> Target:
    (folder / "attack_tools.py").write_text(TOOLS)
    metrics_port = free_port()
    runner = RunnerProcess(folder / "attack.yaml", extra=("--http", parser, "--no-reload"))
    (folder / "attack.yaml").write_text(
        f"name: attack\nsignin:\n  app_id: {jwks.app_id}\n  resource: {runner.url}\n  base_url: {jwks.base_url}\n"
        f"server:\n  metrics: {{port: {metrics_port}}}\ntools:\n  - function: attack_tools:add\n"
    )
    runner.start()
    return Target(runner, Issuer(base_url=jwks.base_url, resource=runner.url, key=jwks.keys[0]), metrics_port)


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


ATTACKS: dict[str, Callable[[Target, int, float], Awaitable[None]]] = {
    "owed-body": owed_body,
    "listen": listen,
    "subject": subject,
    "head": heads,
    "metrics": metrics,
}


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
    jwks = JWKSServer(keys=[Key.new()]).start()
    try:
        for name in args.attack:
            for http in args.http if name in ("owed-body", "head") else args.http[:1]:
                print(f"{name} ({http}, {sockets} sockets, {seconds:g} s):", flush=True)
                with tempfile.TemporaryDirectory(prefix="attacks-") as folder:
                    target = start(Path(folder), jwks, http)
                    try:
                        anyio.run(ATTACKS[name], target, sockets, seconds)
                    finally:
                        target.runner.stop()
    finally:
        jwks.stop()


if __name__ == "__main__":
    main()
