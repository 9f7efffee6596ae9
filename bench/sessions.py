"""Memory per idle MCP session: open N sessions against a real server, compare its RSS before and after.

The server is `mcp-runner serve` as a separate process (no auth, caps raised
above N); each session is a real handshake-era `initialize` over HTTP, left
idle, as a client that never says goodbye leaves it. RSS is VmRSS from
/proc/<pid>/status, read after a warm-up of 50 sessions opened and ended, so
the allocator's first growth is not charged to the sessions.

    python bench/sessions.py [--sessions 2000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from runner.http.sessions import MAX_SESSIONS  # noqa: E402
from tests.helpers import INITIALIZE, ROOT, free_port, runner_cmd, wait_for_port  # noqa: E402

HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_session(http: httpx2.Client, url: str) -> str:
    response = http.post(url, json=INITIALIZE, headers=HEADERS)
    response.raise_for_status()
    return response.headers["mcp-session-id"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=2000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mcp-runner-sessions-"))
    os.symlink(ROOT / "servers", folder / "servers")
    cap = args.sessions + 100
    (folder / "bench.yaml").write_text(
        f"name: bench\nserver:\n  max_sessions: {cap}\n  max_sessions_per_client: {cap}\n"
        "tools:\n  - function: servers.demo:add\n"
    )
    port = free_port()
    cmd = runner_cmd("serve", "bench.yaml", "--port", str(port), "--no-reload", "--log-level", "warning")
    proc = subprocess.Popen(cmd, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        wait_for_port(port)
        with httpx2.Client(timeout=60) as http:
            for _ in range(50):  # warm-up
                session = open_session(http, url)
                http.delete(url, headers={"mcp-session-id": session})
            time.sleep(1)
            before = rss_kib(proc.pid)
            started = time.perf_counter()
            for _ in range(args.sessions):
                open_session(http, url)
            elapsed = time.perf_counter() - started
            time.sleep(1)
            after = rss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    per = (after - before) / args.sessions
    print(f"{args.sessions} idle sessions opened in {elapsed:.1f} s")
    print(f"RSS before {before / 1024:.1f} MiB, after {after / 1024:.1f} MiB: +{(after - before) / 1024:.1f} MiB")
    at_cap = per * MAX_SESSIONS / 1024
    print(f"per session: {per:.1f} KiB; at the default server.max_sessions ({MAX_SESSIONS}): {at_cap:.0f} MiB")


if __name__ == "__main__":
    main()
