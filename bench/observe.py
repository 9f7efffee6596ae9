"""What observability costs: tools/call throughput with metrics + traces + JSON logs, against the same server without.

Two `mcp-runner serve` processes of one manifest (local issuer, one `add` tool), run side by side:

- plain: text logs (access and audit lines, as by default), no metrics, no trace export;
- observed: `--metrics`, `--log-format json`, and spans exported over OTLP/HTTP (the `OTEL_*` variables)
  to a sink in this process that accepts every export.

Both log to a file at INFO. Besides calls/s, the server's own CPU time per call is read from /proc:
on a shared machine throughput swings with the neighbours' load, CPU per call less so.
The load is raw HTTP/1.1 on keep-alive connections (no MCP client in the
way): sessionless 2026-07-28 `tools/call` POSTs with a bearer token, the answer read to its end. Rounds
alternate between the servers; the median of each is printed with the ratio.

    python bench/observe.py [--rounds 7] [--seconds 5] [--connections 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import free_port, runner_cmd, wait_for_port  # noqa: E402

MANIFEST = """
name: bench
signin:
  app_id: local
  resource: {url}
tools:
  - function: tools:add
"""
META = {  # the 2026-07-28 per-request envelope
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}
TOOLS = "def add(a: int, b: int) -> int:\n    return a + b\n"


class Sink(BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP exports and counts them (the bench only needs the exporter to succeed)."""

    exports = 0

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Sink.exports += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def start(folder: Path, name: str, extra: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    home = folder / name
    home.mkdir()
    (home / "tools.py").write_text(TOOLS)
    (home / "bench.yaml").write_text(MANIFEST.format(url=url))
    log = (home / "stderr.log").open("wb")
    proc = subprocess.Popen(
        runner_cmd("serve", "bench.yaml", "--port", str(port), "--no-reload", *extra),
        cwd=home,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    wait_for_port(port, timeout=60)
    token = subprocess.run(
        runner_cmd("token", "bench.yaml", "--port", str(port)), cwd=home, capture_output=True, text=True, check=True
    ).stdout.strip()
    return proc, url, token


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (Linux /proc): a cost that other load barely moves."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def request(url: str, token: str) -> bytes:
    path = "/" + url.split("/", 3)[3]
    host = url.split("/")[2]
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": 1, "b": 2}, "_meta": META},
        }
    ).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
        "MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\nMcp-Name: add\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response: status and body (Content-Length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    body = bytearray()
    while True:  # chunked
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return status, bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


async def load(url: str, token: str, seconds: float, connections: int) -> tuple[float, int]:
    """tools/call answered per second over `connections` keep-alive connections, and how many."""
    host, port = url.split("/")[2].split(":")
    payload = request(url, token)
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.perf_counter() < deadline:
                writer.write(payload)
                status, body = await read_response(reader)
                if status != 200 or b'"isError":false' not in body.replace(b" ", b""):
                    raise RuntimeError(f"unexpected answer {status}: {body[:300]!r}")
                done += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return done / (time.perf_counter() - started), done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_address[1]}"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        servers = {
            "plain": start(folder, "plain", [], {}),
            "observed": start(folder, "observed", ["--metrics", str(free_port()), "--log-format", "json"], otel),
        }
        try:
            results: dict[str, list[float]] = {name: [] for name in servers}
            cpu: dict[str, list[float]] = {name: [] for name in servers}  # server CPU microseconds per call
            for _, url, token in servers.values():  # warm-up: keys fetched, code paths hot
                asyncio.run(load(url, token, 1.0, args.connections))
            for round_ in range(args.rounds):
                order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
                for name in order:
                    proc, url, token = servers[name]
                    before = cpu_seconds(proc.pid)
                    rate, calls = asyncio.run(load(url, token, args.seconds, args.connections))
                    results[name].append(rate)
                    cpu[name].append((cpu_seconds(proc.pid) - before) / calls * 1e6)
                print(
                    f"round {round_ + 1}: "
                    + ", ".join(f"{n} {results[n][-1]:.1f}/s {cpu[n][-1]:.0f} us CPU/call" for n in servers)
                )
            plain, observed = (statistics.median(results[n]) for n in ("plain", "observed"))
            print(f"median tools/call per s: plain {plain:.1f}, observed {observed:.1f}")
            print(f"ratio observed/plain: {observed / plain:.3f} (cost {100 * (1 - observed / plain):.1f}%)")
            plain_cpu, observed_cpu = (statistics.median(cpu[n]) for n in ("plain", "observed"))
            print(f"median server CPU per call: plain {plain_cpu:.0f} us, observed {observed_cpu:.0f} us")
            print(f"CPU cost: {100 * (observed_cpu / plain_cpu - 1):+.1f}%")
            print(f"OTLP exports received: {Sink.exports}")
        finally:
            for proc, _, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=15)
            sink.shutdown()


if __name__ == "__main__":
    main()
