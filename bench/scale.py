"""Scale-out: tools/call throughput and latency, one replica vs two behind nginx, both protocol generations.

Starts two `mcp-runner serve` replicas of a no-auth manifest (the `add` tool), one nginx in
front of replica r1 alone and one in front of r1 and r2 (the configuration `mcp-runner nginx`
prints), then drives each target with the raw load generator in bench/load.py at several
concurrencies, all in one run:

- one replica, direct;
- one replica, through nginx;
- two replicas, through nginx.

Prints calls/s, p50 and p99 latency, failed calls, the replicas' CPU (cores busy over the measured
window) and their efficiency (calls per replica-CPU-second), then per generation and concurrency the
ratio two replicas / one replica (both through nginx), wall-clock and per replica-CPU-second.

What two cores can show: nginx, the load generator and the replicas share them, so two replicas
cannot get a core each, and the wall-clock ratio says more about the machine than about the runner.
The per-CPU efficiency is the figure that carries over: close to 1.0x means a second replica costs
no extra CPU per call (sticky sessions and the balancer add no work), so on a machine with a core
per replica the throughput scales with the replicas. The load average is printed before and after:
a run on a busy machine is marked as such. Not a test: nothing is asserted.

    python bench/scale.py [--seconds 5] [--rounds 3] [--concurrency 1 8 32] [--nginx-workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.load import ADD, Load, Result  # noqa: E402
from runner.deploy.nginx import Upstream, write  # noqa: E402
from tests.helpers import ROOT, free_port, runner_cmd  # noqa: E402

# The load generator is one client with up to 32 sessions at a time (it ends them after each case):
# the default per-client cap of 32 exactly, so the cap is raised for headroom.
MANIFEST = "name: bench\nserver:\n  max_sessions_per_client: 1000\ntools:\n  - function: servers.demo:add\n"


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process on port {port} exited with {proc.returncode}")
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"port {port} not ready")


def start_replica(folder: Path, replica: str, port: int) -> subprocess.Popen[bytes]:
    cmd = runner_cmd("serve", str(folder / "bench.yaml"), "--port", str(port), "--no-reload", "--replica-id", replica)
    cmd += ["--log-level", "warning"]
    return subprocess.Popen(cmd, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_nginx(folder: Path, upstreams: list[Upstream], workers: str) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    user = "root" if os.geteuid() == 0 else None
    conf = write(folder, upstreams, listen=f"127.0.0.1:{port}", workers=workers, user=user)
    # access_log off: a log line per call is nginx work a deployment may not do.
    conf.write_text(conf.read_text().replace(f"access_log {folder}/access.log;", "access_log off;"))
    proc = subprocess.Popen([binary, "-p", str(folder), "-c", str(conf)], stderr=subprocess.DEVNULL)
    wait_ready(port, proc)
    return proc, port


def median_of(results: list[Result]) -> Result:
    """The median round's rate; latencies and failures pooled over all rounds."""
    middle = sorted(results, key=lambda r: r.rate)[len(results) // 2]
    pooled = Result(calls=middle.calls, seconds=middle.seconds, server_cpu=middle.server_cpu)
    pooled.latencies_ns = [latency for r in results for latency in r.latencies_ns]
    for r in results:
        pooled.errors += r.errors
        for problem, count in r.problems.items():
            pooled.problems[problem] = pooled.problems.get(problem, 0) + count
    return pooled


def efficiency(result: Result) -> float:
    """Calls per replica-CPU-second: what a call costs the replicas, whatever else shares the machine."""
    return result.rate / result.server_cpu if result.server_cpu > 0 else float("nan")


def row(name: str, generation: str, concurrency: int, result: Result) -> str:
    return (
        f"| {name} | {generation} | {concurrency} | {result.rate:,.1f} | {result.percentile(0.5):.1f} | "
        f"{result.percentile(0.99):.1f} | {result.errors} | {result.server_cpu:.2f} | {efficiency(result):,.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per case (after 1 s warm-up)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per case; the median rate is shown")
    parser.add_argument("--nginx-workers", default="1", help="nginx worker_processes (default 1)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    shutil.copytree(ROOT / "servers", folder / "servers", ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "bench.yaml").write_text(MANIFEST)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        ports = {"r1": free_port(), "r2": free_port()}
        for replica, port in ports.items():
            processes.append(start_replica(folder, replica, port))
        for proc, port in zip(processes, ports.values(), strict=True):
            wait_ready(port, proc)
        upstreams = [Upstream(r, f"127.0.0.1:{p}") for r, p in ports.items()]
        one, one_port = start_nginx(folder / "nginx-one", upstreams[:1], args.nginx_workers)
        two, two_port = start_nginx(folder / "nginx-two", upstreams, args.nginx_workers)
        processes += [one, two]
        r1, r2 = (proc.pid for proc in processes[:2])
        targets = {  # the port, and the replicas whose CPU serves it
            "1 replica, direct": (ports["r1"], (r1,)),
            "1 replica, nginx": (one_port, (r1,)),
            "2 replicas, nginx": (two_port, (r1, r2)),
        }
        results: dict[tuple[str, str, int], Result] = {}
        print(
            f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} before, {args.rounds} rounds of "
            f"{args.seconds:g} s per case (median shown), nginx workers: {args.nginx_workers}"
        )
        print("| target | generation | concurrency | calls/s | p50 ms | p99 ms | failed | replica CPU | calls/CPU-s |")
        print("|---|---|---|---|---|---|---|---|---|")
        for generation in ("2026", "legacy"):
            for concurrency in args.concurrency:
                rounds: dict[str, list[Result]] = {name: [] for name in targets}
                for _ in range(args.rounds):  # targets alternate, so machine noise hits them alike
                    for name, (port, pids) in targets.items():
                        load = Load(port, modern=generation == "2026", concurrency=concurrency, also=pids)
                        load.seconds, load.warmup = args.seconds, 1.0
                        rounds[name].append(asyncio.run(load.run(ADD)))
                for name, measured in rounds.items():
                    results[(name, generation, concurrency)] = merged = median_of(measured)
                    print(row(name, generation, concurrency, merged), flush=True)
                    for problem, count in merged.problems.items():
                        print(f"    {count}x {problem}", file=sys.stderr)
        print(f"\nload average {os.getloadavg()[0]:.1f} after\n")
        print(
            "| generation | concurrency | 2 replicas / 1 replica (nginx) | 2 replicas nginx / 1 replica direct "
            "| calls per replica-CPU-s, 2 / 1 (nginx) |"
        )
        print("|---|---|---|---|---|")
        for generation in ("2026", "legacy"):
            for concurrency in args.concurrency:
                two_rate = results[("2 replicas, nginx", generation, concurrency)].rate
                one_rate = results[("1 replica, nginx", generation, concurrency)].rate
                direct = results[("1 replica, direct", generation, concurrency)].rate
                per_cpu = efficiency(results[("2 replicas, nginx", generation, concurrency)]) / efficiency(
                    results[("1 replica, nginx", generation, concurrency)]
                )
                print(
                    f"| {generation} | {concurrency} | **{two_rate / one_rate:.2f}x** | {two_rate / direct:.2f}x "
                    f"| {per_cpu:.2f}x |"
                )
    finally:
        for proc in processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in processes:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
