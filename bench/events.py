"""Event latency across replicas: two `mcp-runner serve` processes on one manifest and one real Redis.

Two figures, each repeated --rounds times:
- manifest edit -> a `subscriptions/listen` listener on replica B hears `ToolsListChanged`
  (B notices the edit itself and reloads: reload news is never relayed, see runner/events/reload.py);
- a tool on replica A calls `ctx.notify_resource_updated` -> a listener on replica B hears it
  (through Redis pub/sub).

    python bench/events.py [--rounds 20]

Needs /usr/bin/redis-server (Debian package `redis-server`).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers import free_port, mcp_client, runner_cmd, wait_for_port  # noqa: E402
from tests.realredis import RedisServer  # noqa: E402

TOOLS = """
from mcp.server.mcpserver import Context


async def touch(uri: str, ctx: Context) -> str:
    await ctx.notify_resource_updated(uri)
    return uri


def status() -> str:
    return "ok"
"""
MANIFEST = """name: bench-events
server:
  bus: {bus}
tools:
  - function: bench_tools:touch
{extra}resources:
  - uri: status://server
    function: bench_tools:status
"""


def figures(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
    return f"median {statistics.median(ms):.1f} ms, p90 {p90:.1f} ms, max {ms[-1]:.1f} ms (n={len(ms)})"


async def measure(folder: Path, ports: list[int], bus: str, rounds: int) -> None:
    url_a, url_b = (f"http://127.0.0.1:{p}/mcp" for p in ports)
    edits: list[float] = []
    updates: list[float] = []
    async with mcp_client(url_b) as listener, mcp_client(url_a) as caller:
        async with listener.listen(tools_list_changed=True) as tools_changed:
            for i in range(rounds):
                extra = f"  - function: bench_tools:touch\n    name: t{i}\n" if i % 2 == 0 else ""
                started = time.perf_counter()
                (folder / "m.yaml").write_text(MANIFEST.format(bus=bus, extra=extra))
                with anyio.fail_after(30):
                    await tools_changed.__anext__()
                edits.append(time.perf_counter() - started)
                await anyio.sleep(0.3)  # let A finish its own reload too
        async with listener.listen(resource_subscriptions=["status://server"]) as updated:
            for _ in range(rounds):
                started = time.perf_counter()
                await caller.call_tool("touch", {"uri": "status://server"})
                with anyio.fail_after(30):
                    await updated.__anext__()
                updates.append(time.perf_counter() - started)
    print(f"manifest edit -> listener on the other replica: {figures(edits)}")
    print(f"resource update on A -> listener on B (via Redis): {figures(updates)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    redis = RedisServer().start()
    procs: list[subprocess.Popen[str]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "bench_tools.py").write_text(TOOLS)
            (folder / "m.yaml").write_text(MANIFEST.format(bus=redis.url, extra=""))
            ports = [free_port(), free_port()]
            for port in ports:
                procs.append(
                    subprocess.Popen(
                        runner_cmd("serve", "m.yaml", "--port", str(port), "--log-level", "warning"),
                        cwd=folder,
                        stdout=subprocess.DEVNULL,
                        stderr=open(folder / f"replica-{port}.log", "w"),
                        text=True,
                    )
                )
                wait_for_port(port, timeout=120, proc=procs[-1])
            anyio.run(measure, folder, ports, redis.url, args.rounds)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=15)
        redis.stop()


if __name__ == "__main__":
    main()
