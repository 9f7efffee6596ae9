"""Reload speed and safety, measured against a process restart in the same run.

For a manifest edit and for a module edit (each repeated --edits times) it
measures the time from the file write until `tools/list`, in a session opened
before the edit, shows the change; meanwhile a second session calls a tool in
a loop and every failed or aborted call is counted. Then the same for a
manifest of 1,000 tools. The anchor is what a restart-based reloader costs:
the time from starting a fresh `mcp-runner serve` process until `tools/list`
answers, measured here on the same manifest.

    python bench/reload.py [--edits 20] [--huge 10000] [--huge-rounds 3]

The large case (--huge, default 10,000 tools) reports start-up time, the server's own
reload time for three kinds of edit, and RSS after every reload.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers import free_port, mcp_client, runner_cmd, wait_for_port  # noqa: E402

MODULE = 'def add(a: int, b: int) -> int:\n    """{doc}"""\n    return a + b\n\n\ndef marker() -> str:\n    return ""\n'
PER_MODULE = 100  # the 1,000-tool case spreads its tools over modules of this many functions


def manifest(extra_tools: int, marker: str) -> str:
    lines = ["name: bench", "tools:", "  - function: bench_mod:add"]
    lines += ["  - function: bench_mod:marker", f"    name: {marker}"]
    lines += [f"  - function: extra_{i // PER_MODULE}:f{i}" for i in range(extra_tools)]
    return "\n".join(lines) + "\n"


def extra_modules(folder: Path, extra_tools: int) -> None:
    for m in range(0, extra_tools, PER_MODULE):
        body = "".join(
            f"def f{j}(x: int, label: str = '') -> str:\n    return f'{{label}}{{x}}'\n\n\n"
            for j in range(m, min(m + PER_MODULE, extra_tools))
        )
        (folder / f"extra_{m // PER_MODULE}.py").write_text(body)


def start(folder: Path, port: int) -> subprocess.Popen[str]:
    with open(folder / "server.log", "a") as log:
        proc = subprocess.Popen(
            runner_cmd("serve", "m.yaml", "--port", str(port), "--log-level", "warning"),
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )
    try:
        wait_for_port(port, timeout=120, proc=proc)
    except BaseException:
        proc.kill()  # a server that never came up is not left running
        proc.wait()
        raise
    return proc


async def loop_calls(url: str, stop: anyio.Event, counts: dict[str, int]) -> None:
    async with mcp_client(url, mode="legacy") as client:
        while not stop.is_set():
            try:
                result = await client.call_tool("add", {"a": 1, "b": 2})
                counts["ok" if not result.is_error else "failed"] += 1
            except Exception:
                counts["failed"] += 1


async def edits(folder: Path, url: str, count: int, kind: str, extra_tools: int) -> tuple[list[float], dict[str, int]]:
    """Write, then poll tools/list in an already-open session until the change shows."""
    latencies: list[float] = []
    counts = {"ok": 0, "failed": 0}
    stop = anyio.Event()
    async with anyio.create_task_group() as tasks, mcp_client(url, mode="legacy") as client:
        tasks.start_soon(loop_calls, url, stop, counts)
        await client.list_tools()
        for i in range(count):
            await anyio.sleep(0.15)  # let the previous reload settle, as between two human saves
            if kind == "manifest":
                marker = f"m{i}"
                (folder / "m.yaml").write_text(manifest(extra_tools, marker))
                started = time.perf_counter()
                while marker not in {t.name for t in (await client.list_tools()).tools}:
                    pass
            else:
                doc = f"version {i}"
                (folder / "bench_mod.py").write_text(MODULE.format(doc=doc))
                started = time.perf_counter()
                while doc not in {t.description for t in (await client.list_tools()).tools}:
                    pass
            latencies.append((time.perf_counter() - started) * 1000)
        stop.set()
    return latencies, counts


def restart_anchor(folder: Path, rounds: int) -> list[float]:
    async def first_list(url: str) -> None:
        async with mcp_client(url, mode="legacy") as client:
            await client.list_tools()

    times = []
    for _ in range(rounds):
        port = free_port()
        started = time.perf_counter()
        proc = start(folder, port)
        anyio.run(first_list, f"http://127.0.0.1:{port}/mcp")
        times.append((time.perf_counter() - started) * 1000)
        proc.terminate()
        proc.wait(timeout=15)
    return times


def summary(name: str, values: list[float]) -> str:
    return f"{name:<34} median {statistics.median(values):7.1f} ms   worst {max(values):7.1f} ms   (n={len(values)})"


def run(folder: Path, edits_n: int, extra_tools: int) -> dict[str, Any]:
    (folder / "bench_mod.py").write_text(MODULE.format(doc="start"))
    extra_modules(folder, extra_tools)
    (folder / "m.yaml").write_text(manifest(extra_tools, "start"))
    port = free_port()
    proc = start(folder, port)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        manifest_ms, manifest_calls = anyio.run(edits, folder, url, edits_n, "manifest", extra_tools)
        module_ms, module_calls = anyio.run(edits, folder, url, edits_n, "module", extra_tools)
        health = httpx2.get(f"http://127.0.0.1:{port}/healthz").json()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    return {"manifest": manifest_ms, "module": module_ms, "calls": (manifest_calls, module_calls), "health": health}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def wait_reloads(port: int, count: int) -> dict[str, Any]:
    """Poll /healthz until `count` reloads were attempted; the last one's report."""
    while True:
        health: dict[str, Any] = httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=60).json()
        if health["reloads"] >= count:
            return health
        time.sleep(0.02)


def huge(folder: Path, tools: int, rounds: int) -> dict[str, Any]:
    """Start-up, server-side reload time and RSS for a manifest of `tools` tools (100 per module).

    Three kinds of edit per round: the manifest (one entry renamed), a 2-tool module's docstring,
    and a body-only change to a 100-tool module (every function in it re-imported, no interface
    change). RSS is read after each reload once the settler has run (runner/reload/memory.py).
    """
    (folder / "bench_mod.py").write_text(MODULE.format(doc="start"))
    extra_modules(folder, tools)
    (folder / "m.yaml").write_text(manifest(tools, "start"))
    port = free_port()
    started = time.perf_counter()
    proc = start(folder, port)
    try:
        # The server answers only once the definition is built. Not tools/list or tools/call: the
        # SDK client lists tools to check results, and 10,000 tools exceed its 1 MiB event limit.
        httpx2.get(f"http://127.0.0.1:{port}/readyz", timeout=120).raise_for_status()
        startup_s = time.perf_counter() - started
        time.sleep(2)
        result: dict[str, Any] = {"startup_s": startup_s, "rss_start": rss_mib(proc.pid), "rss": [], "ms": {}}
        reloads = 0
        for i in range(rounds):
            for kind in ("manifest", "module (2 tools)", "module (100 tools, body only)"):
                if kind == "manifest":
                    (folder / "m.yaml").write_text(manifest(tools, f"m{i}"))
                elif kind.startswith("module (2"):
                    (folder / "bench_mod.py").write_text(MODULE.format(doc=f"version {i}"))
                else:
                    body = (folder / "extra_0.py").read_text()
                    (folder / "extra_0.py").write_text(body.replace("return f'", f"return '{i}' + f'", 1))
                reloads += 1
                health = wait_reloads(port, reloads)
                assert health["last_reload"]["result"] == "ok", health
                result["ms"].setdefault(kind, []).append(health["last_reload"]["duration_ms"])
                time.sleep(2)  # the settler frees the replaced definition once edits are quiet
                result["rss"].append(rss_mib(proc.pid))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--huge", type=int, default=10_000, help="tools in the large-manifest case (0: skip it)")
    parser.add_argument("--huge-rounds", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mcp-runner-reload-"))
    if args.huge:
        report = huge(Path(tempfile.mkdtemp(prefix="mcp-runner-huge-")), args.huge, args.huge_rounds)
        print(f"{args.huge:,} tools: start-up to /readyz {report['startup_s']:.1f} s")
        for kind, values in report["ms"].items():
            print(summary(f"  server-side reload, {kind}", values))
        print(
            f"  RSS at start {report['rss_start']:.0f} MiB; after each reload: "
            + ", ".join(f"{v:.0f}" for v in report["rss"])
            + " MiB"
        )
    small = run(folder, args.edits, 0)
    anchor = restart_anchor(folder, args.restarts)
    big = run(folder, args.edits, 998)

    print(f"write -> visible in tools/list of an open session, {args.edits} edits each")
    print(summary("manifest edit (1 tool)", small["manifest"]))
    print(summary("module edit (1 tool)", small["module"]))
    print(summary("manifest edit (1,000 tools)", big["manifest"]))
    print(summary("module edit (1,000 tools)", big["module"]) + f"  ({PER_MODULE + 2} tools in edited modules)")
    print(summary("anchor: process restart (1 tool)", anchor))
    for label, result in (("1 tool", small), ("1,000 tools", big)):
        ok = sum(c["ok"] for c in result["calls"])
        failed = sum(c["failed"] for c in result["calls"])
        print(f"tools/call in a loop during reloads ({label}): {ok} ok, {failed} failed")
    print(f"server-side reload time, 1,000 tools (last reload): {big['health']['last_reload']['duration_ms']} ms")
    ratio = statistics.median(anchor) / statistics.median(small["manifest"] + small["module"])
    print(f"ratio restart / in-process reload (median): {ratio:.1f}x  (target > 10x, median < 100 ms)")


if __name__ == "__main__":
    main()
