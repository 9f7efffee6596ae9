"""A `tools/call` through the runner to an HTTP upstream, against the same call straight to the upstream.

The upstream is `mcp-runner serve` with the demo's `add` tool and no auth. The front is another runner
whose manifest mounts it (`upstreams:` with `prefix: ""`, so the call is the same `add` on both), and,
when its virtual environment can be made (bench/.venvs/fastmcp-proxy, FastMCP 4.2.3), FastMCP's proxy
of the same upstream. The load is bench/load.py's raw HTTP (handshake-era sessions); rounds rotate the
servers, and the table shows medians over rounds and ratios within the same run.

Two anchors run in the same rounds, on the same CPU: `sdk server`, bench/handwritten.py (a plain `MCPServer`
serving `add`, with the runner's Python, so uvloop and httptools as the runner has them), and `bare http`,
bench/bare_http.py (fixed bytes, no MCP at all). A front served by the SDK's server pays the SDK's own path for
each call before it forwards anything (`sdk server` minus `bare http`) and then one HTTP exchange with the
upstream (at least `bare http`'s), so `sdk server`'s latency is about the floor of what any such front adds.

It also times start-up with 10 upstreams, one of them unreachable: from the process's start until
/healthz shows the 9 others connected and a tools/call through one of them answers.

    python bench/upstreams.py [--rounds 3] [--seconds 2] [--no-fastmcp]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from load import ADD, Load, Rounds, pin_generator, print_against_direct  # noqa: E402
from throughput import Server, venv  # noqa: E402

from tests.helpers import free_port, runner_cmd  # noqa: E402

UPSTREAM = "name: upstream\ntools:\n  - function: servers.demo:add\n"
FASTMCP = "fastmcp==4.2.3"


def front(url: str) -> str:
    return f"name: front\nupstreams:\n  - name: up\n    url: {url}\n    prefix: ''\n"


def wait_connected(port: int, names: int, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            ups = httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json().get("upstreams", {})
            if sum(1 for u in ups.values() if u["state"] == "connected") >= names:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.01)
    raise TimeoutError(f"upstreams not connected on port {port}")


def measure(servers: list[Server], rounds: int, seconds: float) -> Rounds:
    """(server, concurrency) -> per round (median latency ms, calls/s)."""
    table: Rounds = {}
    for r in range(rounds):
        order = servers[r % len(servers) :] + servers[: r % len(servers)]
        for concurrency in (1, 8):
            for server in order:
                assert server.proc is not None
                load = Load(server.port, server.proc.pid, concurrency=concurrency, seconds=seconds)
                result = asyncio.run(load.run(ADD))
                if result.errors:
                    print(f"  {server.name} c={concurrency}: {result.errors} errors {result.problems}", file=sys.stderr)
                table.setdefault((server.name, concurrency), []).append((result.percentile(0.5), result.rate))
    return table


def print_floor(table: Rounds) -> None:
    """What any front served by the SDK's server adds at least, at concurrency 1, from the anchors of this run."""

    def ms(name: str) -> float:
        return statistics.median(m for m, _ in table[(name, 1)])

    sdk, bare, added = ms("sdk server"), ms("bare http"), ms("runner") - ms("direct")
    print(
        f"\nat concurrency 1: the SDK's server path costs {sdk - bare:.2f} ms a call (sdk server {sdk:.2f} ms - bare "
        f"http {bare:.2f} ms); with one HTTP exchange to the upstream (>= {bare:.2f} ms) a front served by the SDK "
        f"adds at least about {sdk:.2f} ms; the runner adds {added:+.2f} ms ({added / sdk:.2f} x that floor)"
    )


def startup_with_ten(folder: Path, upstream_url: str) -> float:
    """Seconds from the process's start until 9 of 10 upstreams serve (one is unreachable)."""
    dead = f"http://127.0.0.1:{free_port()}/mcp"
    entries = "".join(f"  - name: up{i}\n    url: {upstream_url}\n" for i in range(9))
    (folder / "ten.yaml").write_text(f"name: ten\nupstreams:\n{entries}  - name: gone\n    url: {dead}\n")
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(
        runner_cmd("serve", "ten.yaml", "--port", str(port)),
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_connected(port, 9)
        took = time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--startups", type=int, default=3)
    parser.add_argument("--no-fastmcp", action="store_true", help="leave FastMCP's proxy out")
    args = parser.parse_args()
    print(f"load generator: {pin_generator()}", file=sys.stderr)
    folder = Path(tempfile.mkdtemp(prefix="mcp-runner-bench-upstreams-"))
    (folder / "servers").symlink_to(HERE.parent / "servers")
    (folder / "upstream.yaml").write_text(UPSTREAM)
    upstream = Server("direct", lambda port: runner_cmd("serve", "upstream.yaml", "--port", str(port)), folder).start()
    url = f"http://127.0.0.1:{upstream.port}/mcp"
    (folder / "front.yaml").write_text(front(url))
    servers = [upstream, Server("runner", lambda port: runner_cmd("serve", "front.yaml", "--port", str(port)), folder)]
    servers.append(Server("sdk server", lambda port: [sys.executable, str(HERE / "handwritten.py"), str(port)], folder))
    servers.append(Server("bare http", lambda port: [sys.executable, str(HERE / "bare_http.py"), str(port)], folder))
    if not args.no_fastmcp:
        python = venv("fastmcp-proxy", [FASTMCP])
        servers.append(
            Server("fastmcp proxy", lambda port: [str(python), str(HERE / "fastmcp_proxy.py"), str(port), url], folder)
        )
    try:
        for server in servers[1:]:
            server.start()
        wait_connected(servers[1].port, 1)
        table = measure(servers, args.rounds, args.seconds)
        startups = [startup_with_ten(folder, url) for _ in range(args.startups)]
    finally:
        for server in servers:
            server.stop()
    print_against_direct(table, [server.name for server in servers])
    print_floor(table)
    print(
        f"\nstart-up with 10 upstreams, 1 unreachable, until the 9 others serve: "
        f"median {statistics.median(startups):.2f} s (runs: {', '.join(f'{s:.2f}' for s in startups)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
