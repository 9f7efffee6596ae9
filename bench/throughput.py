"""tools/call throughput: a manifest-built server vs a hand-written MCPServer, auth off and on.

All servers run at once as separate processes on loopback; one client process
drives one session per server and alternates rounds between them, so machine
noise hits every server alike. Prints calls/s (median of rounds) and ratios
against the hand-written anchor measured in the same run.

    python bench/throughput.py [--rounds 7] [--calls 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers import ROOT, free_port, mcp_client, run_cli, runner_cmd, wait_for_port  # noqa: E402

NO_AUTH = "name: bench\ntools:\n  - function: servers.demo:add\n"
LOCAL_AUTH = "name: bench\nsignin:\n  app_id: local\ntools:\n  - function: servers.demo:add\n"


def start(cmd: list[str], port: int, cwd: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return proc


async def rate(url: str, token: str | None, calls: int) -> float:
    async with mcp_client(url, token) as client:
        for _ in range(10):  # warm-up: session, JWKS, caches
            await client.call_tool("add", {"a": 1, "b": 2})
        started = time.perf_counter()
        for i in range(calls):
            result = await client.call_tool("add", {"a": i, "b": 1})
            assert result.structured_content == {"result": i + 1}
        return calls / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mcp-runner-bench-"))
    os.symlink(ROOT / "servers", folder / "servers")
    (folder / "noauth.yaml").write_text(NO_AUTH)
    (folder / "auth.yaml").write_text(LOCAL_AUTH)
    ports = {name: free_port() for name in ("handwritten", "runner", "runner+auth")}
    procs = [
        start(
            [sys.executable, str(ROOT / "bench" / "handwritten.py"), str(ports["handwritten"])],
            ports["handwritten"],
            folder,
        ),
        start(
            runner_cmd("serve", "noauth.yaml", "--port", str(ports["runner"]), "--log-level", "warning"),
            ports["runner"],
            folder,
        ),
        start(
            runner_cmd("serve", "auth.yaml", "--port", str(ports["runner+auth"]), "--log-level", "warning"),
            ports["runner+auth"],
            folder,
        ),
    ]
    try:
        token = run_cli("token", str(folder / "auth.yaml"), "--port", str(ports["runner+auth"])).stdout.strip()
        tokens = {"handwritten": None, "runner": None, "runner+auth": token}
        results: dict[str, list[float]] = {name: [] for name in ports}
        for _ in range(args.rounds):
            for name, port in ports.items():
                results[name].append(anyio.run(rate, f"http://127.0.0.1:{port}/mcp", tokens[name], args.calls))
        medians = {name: statistics.median(values) for name, values in results.items()}
        print(f"tools/call, one session, {args.calls} sequential calls x {args.rounds} rounds (median calls/s)")
        for name, value in medians.items():
            spread = f"{min(results[name]):.0f}-{max(results[name]):.0f}"
            print(f"  {name:<12} {value:8.1f} calls/s   (rounds {spread})")
        print(
            f"ratio runner / handwritten (auth off): {medians['runner'] / medians['handwritten']:.3f}  (target >= 0.95)"
        )
        print(f"ratio runner+auth / runner (auth cost): {medians['runner+auth'] / medians['runner']:.3f}")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=15)


if __name__ == "__main__":
    main()
