"""Throughput, latency, start-up and memory: mcp-runner against a plain SDK server and FastMCP, in one run.

The anchors run in virtual environments of their own that this script creates
under bench/.venvs/ (gitignored): `plain` holds only `mcp` (the runner's
version), so the plain `MCPServer` runs as the SDK runs it by default, with
none of the runner's choices; `fastmcp` holds FastMCP's latest release. Every
server is a separate process on loopback, all started at once; rounds rotate
the order of the servers, so machine noise hits all of them alike, and the
table shows medians over rounds and ratios between servers of the same run.

The load comes from `bench/load.py`: raw HTTP/1.1 on keep-alive connections,
request bytes built in advance, both protocol generations. Its table shows the
server's CPU (of one core) next to each figure: near 100% means the server was
the saturated side.

    python bench/throughput.py [--rounds 5] [--seconds 2] [--startups 5] [--quick] [--startup-only]
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import uvloop

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from load import (  # noqa: E402
    ADD,
    Call,
    Load,
    Result,
    cpu_seconds,
    describe,
    http_request,
    list_tools,
    on_server_cpu,
    pin_generator,
)

from tests.helpers import free_port, run_cli, runner_cmd, wait_for_port  # noqa: E402

VENVS = HERE / ".venvs"
EXTRA = 1000  # the tools/list case: 1,000 tools besides `add`
PER_MODULE = 100
NO_AUTH = "name: bench\ntools:\n  - function: servers.demo:add\n"
LOCAL_AUTH = "name: bench\nsignin:\n  app_id: local\ntools:\n  - function: servers.demo:add\n"
CONCURRENCY = (1, 8, 32)
LIST_CONCURRENCY = 8


def venv(name: str, packages: list[str]) -> Path:
    """A virtual environment with exactly `packages`, made once and reused while they are unchanged."""
    folder = VENVS / name
    python = folder / "bin" / "python"
    stamp = folder / "installed.txt"
    wanted = "\n".join(packages)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"creating {folder} with {' '.join(packages)} ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
    stamp.write_text(wanted)
    return python


def package_version(python: Path, name: str) -> str:
    code = f"from importlib.metadata import version; print(version({name!r}))"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def extra_modules(folder: Path) -> None:
    for m in range(0, EXTRA, PER_MODULE):
        body = "".join(
            f"def f{j}(x: int, label: str = '') -> str:\n    return f'{{label}}{{x}}'\n\n\n"
            for j in range(m, min(m + PER_MODULE, EXTRA))
        )
        (folder / f"extra_{m // PER_MODULE}.py").write_text(body)


@dataclass
class Server:
    name: str
    command: Callable[[int], list[str]]  # port -> argv
    cwd: Path
    token: Callable[[int], str | None] = lambda port: None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    bearer: str | None = None

    def start(self) -> Server:
        self.port = free_port()
        self.proc = subprocess.Popen(
            self.command(self.port),
            cwd=self.cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=on_server_cpu,
        )
        wait_for_port(self.port, timeout=120)
        self.bearer = self.token(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def quiet(servers: list[Server], limit: float = 10.0) -> None:
    """Wait (at most `limit` seconds) until no server burns CPU. The 1,000-tool lists still in flight when
    their case's window closes go on for a second or more, on the same two cores as the next case's first
    server: the suspected cause of one row (handshake-era, concurrency 1, measured first in each round)
    that showed the runner with auth 27% slower than without, where a rerun of that case alone showed 6%."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = [cpu_seconds(s.proc.pid) for s in servers if s.proc is not None]
        time.sleep(0.1)
        after = [cpu_seconds(s.proc.pid) for s in servers if s.proc is not None]
        if all(b - a < 0.02 for a, b in zip(before, after, strict=True)):
            return


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def first_list(server: Server, started: float) -> float:
    """Seconds from `started` (the process's launch) until a tools/list is answered."""
    assert server.proc is not None
    connection = Load(server.port, server.proc.pid, token=server.bearer).connection()
    while True:
        try:
            await connection.open()
            break
        except OSError:
            if server.proc.poll() is not None:
                raise RuntimeError(f"{server.name} exited with {server.proc.returncode}") from None
            await asyncio.sleep(0.002)
    try:
        call = list_tools("add")
        headers = {**call.headers(False, connection.session), **connection.auth}
        status, _, body = await connection.exchange(http_request(server.port, "/mcp", call.message(1, False), headers))
        elapsed = time.perf_counter() - started
    finally:
        await connection.close()
    if status != 200 or call.expect not in body:
        raise RuntimeError(f"{server.name}: tools/list answered {status} {body[:200]!r}")
    return elapsed


def start_up(server: Server) -> tuple[float, float, float]:
    """(seconds to the first tools/list, RSS in MiB just after it, CPU seconds the process spent until the
    answer) for one fresh process. The CPU time is steadier than the wall time on a busy machine."""
    server.port = free_port()
    server.bearer = server.token(server.port)  # minted before the launch: a token does not need the server
    started = time.perf_counter()
    server.proc = subprocess.Popen(
        server.command(server.port),
        cwd=server.cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=on_server_cpu,
    )
    try:
        elapsed = uvloop.run(first_list(server, started))
        assert server.proc is not None
        cpu = cpu_seconds(server.proc.pid)
        time.sleep(0.3)  # idle: let the start-up settle (the runner freezes its definition) before reading RSS
        return elapsed, rss_mib(server.proc.pid), cpu
    finally:
        server.stop()


@dataclass
class Table:
    results: dict[tuple[str, str], list[Result]] = field(default_factory=dict)

    def add(self, case: str, server: str, result: Result) -> None:
        self.results.setdefault((case, server), []).append(result)

    def median(self, case: str, server: str, attr: str = "rate") -> float:
        runs = self.results.get((case, server), [])
        if not runs:
            return float("nan")
        if attr == "rate":
            return statistics.median(r.rate for r in runs)
        if attr == "p50":
            return statistics.median(r.percentile(0.5) for r in runs)
        if attr == "p99":
            return statistics.median(r.percentile(0.99) for r in runs)
        if attr == "cpu":
            return statistics.median(r.server_cpu for r in runs)
        if attr == "cpu_per_call":  # steadier than calls/s on a busy machine: the server's CPU per answered call
            return statistics.median(r.server_cpu * 1e6 / r.rate if r.rate else float("nan") for r in runs)
        if attr == "client":
            return statistics.median(r.client_cpu for r in runs)
        return float(sum(r.errors for r in runs))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per case and server")
    parser.add_argument("--startups", type=int, default=5, help="fresh starts per server for start-up and RSS")
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s, 2 start-ups: does it all work?")
    parser.add_argument(
        "--startup-only", action="store_true", help="only start-up and idle RSS: plain, runner, runner+auth"
    )
    parser.add_argument(
        "--only", choices=["calls", "lists"], help="only the tools/call or the 1,000-tool list cases, no start-ups"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.startups = 1, 1.0, 2
    if args.only:
        args.startups = 0
    args.pinned = pin_generator()
    plain = venv("plain", [f"mcp=={version('mcp')}"])
    fast = venv("fastmcp", ["fastmcp"]) if not args.startup_only else plain
    fastmcp_version = package_version(fast, "fastmcp") if not args.startup_only else "-"

    # The runner as installed: pip compiles a wheel's bytecode, as it did the anchors' packages. A checkout
    # run with PYTHONDONTWRITEBYTECODE=1 would compile ~150 modules of its own on every start instead.
    compileall.compile_dir(str(HERE.parent / "runner"), quiet=1)
    folder = Path(tempfile.mkdtemp(prefix="mcp-runner-bench-"))
    os.symlink(HERE.parent / "servers", folder / "servers")
    extra_modules(folder)
    (folder / "noauth.yaml").write_text(NO_AUTH)
    (folder / "auth.yaml").write_text(LOCAL_AUTH)
    many = NO_AUTH + "".join(f"  - function: extra_{i // PER_MODULE}:f{i}\n" for i in range(EXTRA))
    (folder / "many.yaml").write_text(many)

    def serve(manifest: str, *flags: str) -> Callable[[int], list[str]]:
        return lambda port: runner_cmd("serve", manifest, "--port", str(port), *flags)

    def unfrozen(manifest: str) -> Callable[[int], list[str]]:
        """The runner with gc.freeze() made a no-op: what the freeze after each build is worth."""
        code = "import gc, sys; gc.freeze = lambda: None; from runner.cli import main; sys.exit(main(sys.argv[1:]))"
        return lambda port: [sys.executable, "-c", code, "serve", manifest, "--port", str(port)]

    def token(port: int) -> str:
        return run_cli("token", str(folder / "auth.yaml"), "--port", str(port)).stdout.strip()

    call_servers = [
        Server("plain", lambda port: [str(plain), str(HERE / "handwritten.py"), str(port)], folder),
        Server("fastmcp", lambda port: [str(fast), str(HERE / "fastmcp_server.py"), str(port)], folder),
        Server("runner", serve("noauth.yaml"), folder),
        Server("runner+auth", serve("auth.yaml"), folder, token=token),
        Server("runner asyncio+h11", serve("noauth.yaml", "--loop", "asyncio", "--http", "h11"), folder),
    ]
    extras = [  # measured at concurrency 8 only: what single choices cost
        Server("runner, no access log", serve("noauth.yaml", "--log-level", "warning"), folder),
    ]
    list_servers = [
        Server("plain", lambda port: [str(plain), str(HERE / "handwritten.py"), str(port), str(EXTRA)], folder),
        Server("fastmcp", lambda port: [str(fast), str(HERE / "fastmcp_server.py"), str(port), str(EXTRA)], folder),
        Server("runner", serve("many.yaml"), folder),
        Server("runner without gc.freeze", unfrozen("many.yaml"), folder),
    ]
    table = Table()
    startups: dict[str, list[tuple[float, float, float]]] = {}
    try:
        # Start-up and idle RSS first, on a machine not yet busy with the other servers.
        order = [s for s in call_servers[:4] if not (args.startup_only and s.name == "fastmcp")]
        for round_ in range(args.startups):
            for server in order[round_ % len(order) :] + order[: round_ % len(order)]:
                print(f"  start-up: {server.name}", file=sys.stderr, flush=True)
                startups.setdefault(server.name, []).append(start_up(server))
        if args.startup_only:
            return report(table, startups, args, fastmcp_version)
        if args.only == "lists":
            call_servers, extras = [], []
        if args.only == "calls":
            list_servers = []
        for server in call_servers + extras + list_servers:
            print(f"  starting {server.name}", file=sys.stderr, flush=True)
            server.start()
        cases: list[tuple[str, Call, int, bool, list[Server]]] = []
        for modern in (False, True):
            gen = "2026-07-28" if modern else "handshake"
            for c in CONCURRENCY if call_servers else ():
                cases.append((f"tools/call c={c} {gen}", ADD, c, modern, call_servers + (extras if c == 8 else [])))
            if not list_servers:
                continue
            cases.append(
                (
                    f"tools/list 1,000 tools c={LIST_CONCURRENCY} {gen}",
                    list_tools(f"f{EXTRA - 1}"),
                    LIST_CONCURRENCY,
                    modern,
                    list_servers,
                )
            )
        running = call_servers + extras + list_servers
        for round_ in range(args.rounds):
            for case, call, concurrency, modern, servers in cases:
                shift = round_ % len(servers)
                for server in servers[shift:] + servers[:shift]:
                    assert server.proc is not None
                    quiet(running)
                    load = Load(
                        server.port,
                        server.proc.pid,
                        token=server.bearer,
                        modern=modern,
                        concurrency=concurrency,
                        seconds=args.seconds,
                    )
                    print(f"  {case}: {server.name}", file=sys.stderr, flush=True)
                    try:
                        result = uvloop.run(asyncio.wait_for(load.run(call), args.seconds + 60))
                    except Exception as exc:  # e.g. the case's time limit: a row of errors, not a crash
                        result = Result(seconds=args.seconds)
                        result.fail(describe(exc))
                    for problem, count in result.problems.items():
                        print(f"  {server.name} {case}: {count}x {problem}", file=sys.stderr)
                    table.add(case, server.name, result)
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    finally:
        for server in call_servers + extras + list_servers:
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    report(table, startups, args, fastmcp_version)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b and a == a and b == b else "-"


def report(
    table: Table, startups: dict[str, list[tuple[float, float, float]]], args: argparse.Namespace, fm: str
) -> None:
    load = os.getloadavg()
    rounds = "" if args.startup_only else f"{args.rounds} rounds of {args.seconds:g} s per case and server, medians; "
    cores = os.cpu_count()
    print(f"\nmcp {version('mcp')}, FastMCP {fm}; {rounds}load average at the end {load[0]:.1f} on {cores} cores")
    print(f"{args.pinned}\n")
    if table.results:
        throughput(table)
    if startups:
        startup(startups, args)


def throughput(table: Table) -> None:
    print("| case | server | calls/s | p50 ms | p99 ms | server CPU | CPU µs/call | vs plain | vs FastMCP |")
    print("|---|---|---|---|---|---|---|---|---|")
    cases = sorted({case for case, _ in table.results}, key=lambda c: ("list" in c, "2026" in c, len(c), c))
    order = ["plain", "fastmcp", "runner", "runner+auth", "runner asyncio+h11", "runner, no access log"]
    order.append("runner without gc.freeze")
    for case in cases:
        plain, fast = table.median(case, "plain"), table.median(case, "fastmcp")
        for name in [n for n in order if (case, n) in table.results]:
            rate = table.median(case, name)
            errors = int(table.median(case, name, "errors"))
            print(
                f"| {case} | {name} | {rate:,.0f}{f' ({errors} errors)' if errors else ''} | "
                f"{table.median(case, name, 'p50'):.1f} | {table.median(case, name, 'p99'):.1f} | "
                f"{table.median(case, name, 'cpu') * 100:.0f}% | {table.median(case, name, 'cpu_per_call'):,.0f} | "
                f"{ratio(rate, plain)} | {ratio(rate, fast)} |"
            )
    failures: dict[tuple[str, str, str], int] = {}
    for (case, name), runs in table.results.items():
        for run in runs:
            for problem, count in run.problems.items():
                failures[(case, name, problem)] = failures.get((case, name, problem), 0) + count
    if failures:
        print("\nfailures (all rounds):")
        for (case, name, problem), count in sorted(failures.items()):
            print(f"  {case} | {name}: {count}x {problem}")
    speedup(table, cases)
    cost_of(table, cases, "auth", "runner+auth", "runner")
    cost_of(table, cases, "access log", "runner", "runner, no access log")
    clients = [r.client_cpu for runs in table.results.values() for r in runs if r.client_cpu == r.client_cpu]
    if clients:
        print(
            f"\nload generator CPU: median {statistics.median(clients) * 100:.0f}%, "
            f"max {max(clients) * 100:.0f}% of one core"
        )


def rounds(table: Table, case: str, a: str, b: str) -> list[tuple[Result, Result]]:
    """The results of servers `a` and `b` in `case`, round by round, where both answered and burnt CPU."""
    both = zip(table.results[(case, a)], table.results[(case, b)], strict=True)
    return [(x, y) for x, y in both if x.rate and y.rate and x.server_cpu and y.server_cpu]


def cpu_per_call(result: Result) -> float:
    return result.server_cpu / result.rate


def speedup(table: Table, cases: list[str]) -> None:
    """The runner against plain on tools/call, from the rounds paired (see `cost_of`), per case and per generation.

    One 2 s window on this machine moves by 10-15%, and a case's median of 5-6 rounds by several per
    cent: a generation's figure pools the paired rounds of its three concurrencies.
    """
    calls = [c for c in cases if c.startswith("tools/call") and (c, "runner") in table.results]
    if not calls or not all((c, "plain") in table.results for c in calls):
        return
    print("\nrunner against plain on tools/call, rounds paired: calls/s ratio; plain's CPU per call over the runner's")
    for generation in ("handshake", "2026-07-28"):
        pooled: list[tuple[float, float]] = []
        for case in [c for c in calls if c.endswith(generation)]:
            paired = [
                (a.rate / b.rate, cpu_per_call(b) / cpu_per_call(a)) for a, b in rounds(table, case, "runner", "plain")
            ]
            pooled += paired
            if paired:
                rate, cpu = statistics.median(p[0] for p in paired), statistics.median(p[1] for p in paired)
                print(f"  {case}: {rate:.2f}x calls/s, {cpu:.2f}x per CPU second")
        if pooled:
            rate, cpu = statistics.median(p[0] for p in pooled), statistics.median(p[1] for p in pooled)
            print(f"  {generation}, all {len(pooled)} paired rounds: {rate:.2f}x calls/s, {cpu:.2f}x per CPU second")


def cost_of(table: Table, cases: list[str], what: str, paying: str, free: str) -> None:
    """What `paying` costs over `free`: per case, from the medians, and from the rounds paired.

    The servers of a case run one after the other within a round, so the ratio of their CPU per call
    within one round is measured under the same conditions; the median of those paired ratios moves
    less with the machine's noise than the ratio of two medians.
    """
    rows = [c for c in cases if (c, paying) in table.results and (c, free) in table.results]
    if not rows:
        return
    print(f"\n{what} cost (1 - {paying} / {free} in calls/s; {paying} / {free} - 1 in CPU per call):")
    pooled: list[float] = []
    for case in rows:
        rate = 1 - table.median(case, paying) / table.median(case, free)
        cpu = table.median(case, paying, "cpu_per_call") / table.median(case, free, "cpu_per_call")
        paired = [cpu_per_call(a) / cpu_per_call(b) for a, b in rounds(table, case, paying, free)]
        pooled += paired
        middle = statistics.median(paired) if paired else float("nan")
        print(
            f"  {case}: {rate * 100:+.1f}% calls/s, {(cpu - 1) * 100:+.1f}% CPU per call; "
            f"paired rounds: {(middle - 1) * 100:+.1f}% CPU per call"
        )
    if len(rows) > 1 and pooled:
        print(f"  all {len(pooled)} paired rounds of these cases: median {(statistics.median(pooled) - 1) * 100:+.1f}%")


def startup(startups: dict[str, list[tuple[float, float, float]]], args: argparse.Namespace) -> None:
    print(f"\n{args.startups} start-ups per server; CPU: the server's own until it answered")
    print("\n| server | start-up to the first tools/list, median | its CPU, median | its CPU, least | idle RSS |")
    print("|---|---|---|---|---|")
    for name, values in startups.items():
        start = statistics.median(v[0] for v in values) * 1000
        rss = statistics.median(v[1] for v in values)
        cpu = statistics.median(v[2] for v in values) * 1000
        least = min(v[2] for v in values) * 1000
        print(f"| {name} | {start:.0f} ms | {cpu:.0f} ms | {least:.0f} ms | {rss:.1f} MiB |")
    if "plain" not in startups:
        return
    # The least CPU of each server is the figure to compare (as `timeit` takes the least time): a start
    # does the same work each time, and what this machine adds to it only ever adds (a busy neighbour
    # on the host slows a CPU down by up to half for a while), so the least is the start least disturbed.
    # Medians of differences within a round are shown next to it: they move with that noise.
    for name in [n for n in startups if n.startswith("runner")]:
        least = (min(v[2] for v in startups[name]) - min(v[2] for v in startups["plain"])) * 1000
        pairs = list(zip(startups[name], startups["plain"], strict=True))
        start, rss, cpu = (statistics.median(a[i] - b[i] for a, b in pairs) for i in range(3))
        print(
            f"{name} - plain: least CPU {least:+.0f} ms (target: within 50 ms); median of {len(pairs)} paired "
            f"rounds: start-up {start * 1000:+.0f} ms, CPU {cpu * 1000:+.0f} ms; idle RSS {rss:+.1f} MiB"
        )


if __name__ == "__main__":
    main()
