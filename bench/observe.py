"""What observability costs: tools/call throughput and CPU with metrics and traces, against the same server without.

`mcp-runner serve` processes of one manifest (local issuer, one `add` tool), run side by side,
chosen with `--servers` from:

- plain: text logs (access and audit lines, as by default), no metrics, no trace export;
- plain2: a second, identical plain server: the A/A control, whose difference from plain is the
  noise floor of the run;
- metrics: `--metrics`;
- traces: every span exported over OTLP/HTTP (the `OTEL_*` variables) to a sink in this process
  that accepts every export;
- observed: metrics and every span exported (the issue's target: under 5% on tools/call);
- sampled: metrics, and 1 trace in 10 exported (`OTEL_TRACES_SAMPLER=parentbased_traceidratio`,
  `--ratio`);
- unsampled: the same with a ratio of 0: a tracer provider installed, no span exported (what the
  SDK's span per request costs once it is not skipped: runner/observe/sdkspans.py);
- json: `--log-format json` (logs are outside the target; measured for the README);
- quiet: `--log-level warning` (no access or audit lines: what the default lines cost).

All log to a file. Besides calls/s, the server's own CPU time per call is read from /proc: on a
shared machine throughput swings with the neighbours' load, CPU per call less so.
The load is bench/load.py's raw HTTP/1.1 generator on keep-alive connections (no MCP client in
the way): sessionless 2026-07-28 `tools/call` POSTs with a bearer token. Rounds rotate between
the servers; the median of each is printed with its ratio to plain. As in bench/throughput.py,
every server runs on one CPU and the load generator on the others (bench/load.py `pin_generator`),
so that a slower CPU never measures one variant and not the other.

    python bench/observe.py [--rounds 7] [--seconds 5] [--connections 8] [--servers plain,plain2,observed]
                            [--ratio 0.1] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from load import ADD, Load, Result, on_server_cpu, pin_generator  # noqa: E402

from tests.helpers import free_port, runner_cmd, wait_for_port  # noqa: E402

MANIFEST = """
name: bench
signin:
  app_id: local
  resource: {url}
tools:
  - function: tools:add
"""
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


def start(folder: Path, name: str, extra: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int, str]:
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
        preexec_fn=on_server_cpu,
    )
    wait_for_port(port, timeout=60)
    token = subprocess.run(
        runner_cmd("token", "bench.yaml", "--port", str(port)), cwd=home, capture_output=True, text=True, check=True
    ).stdout.strip()
    return proc, port, token


def variants(sink_port: int, ratio: float) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Every server this bench can run: its extra `serve` flags and environment."""
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}"}
    sampled = {**otel, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": str(ratio)}
    metrics = ["--metrics", "0"]
    return {
        "plain": ([], {}),
        "plain2": ([], {}),
        "metrics": (metrics, {}),
        "traces": ([], otel),
        "observed": (metrics, otel),
        "sampled": (metrics, sampled),
        "unsampled": (metrics, {**sampled, "OTEL_TRACES_SAMPLER_ARG": "0"}),
        "json": (["--log-format", "json"], {}),
        "quiet": (["--log-level", "warning"], {}),
    }


DEFAULT_SERVERS = "plain,plain2,metrics,traces,observed,sampled"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--servers", default=DEFAULT_SERVERS, help=f"plain first (default {DEFAULT_SERVERS})")
    parser.add_argument("--ratio", type=float, default=0.1, help="the sampled server's ratio")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 2 s: a smoke run, not a measurement")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 3, 2.0
    print(pin_generator(), flush=True)
    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    known = variants(sink.server_address[1], args.ratio)
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names or names[0] != "plain":
        parser.error(f"--servers: plain first, then any of {', '.join(known)} (unknown: {', '.join(unknown) or '-'})")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        servers: dict[str, tuple[subprocess.Popen[bytes], int, str]] = {}
        try:
            for name in names:
                servers[name] = start(folder, name, *known[name])
            rates: dict[str, list[float]] = {name: [] for name in servers}
            cpu: dict[str, list[float]] = {name: [] for name in servers}  # server CPU microseconds per call

            def measure(name: str, seconds: float) -> Result:
                proc, port, token = servers[name]
                load = Load(port, proc.pid, token=token, modern=True, concurrency=args.connections, seconds=seconds)
                return asyncio.run(load.run(ADD))

            for name in servers:  # warm-up: keys fetched, code paths hot
                measure(name, 1.0)
            for round_ in range(args.rounds):
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                for name in order:
                    result = measure(name, args.seconds)
                    if result.errors or not result.calls:
                        raise SystemExit(f"{name}: {result.errors} failures, {result.calls} good: {result.problems}")
                    rates[name].append(result.rate)
                    cpu[name].append(result.server_cpu * result.seconds / result.calls * 1e6)
                print(
                    f"round {round_ + 1}: "
                    + ", ".join(f"{n} {rates[n][-1]:.0f}/s {cpu[n][-1]:.0f} us" for n in servers),
                    flush=True,
                )
            rate = {n: statistics.median(rates[n]) for n in servers}
            per_call = {n: statistics.median(cpu[n]) for n in servers}
            for name in servers:
                line = f"{name:9} median {rate[name]:7.1f} calls/s, {per_call[name]:6.0f} us server CPU per call"
                if name != "plain":
                    # The same round's plain figure, measured seconds apart: drift between rounds cancels out.
                    paired = sorted(a / b - 1 for a, b in zip(cpu[name], cpu["plain"], strict=True))
                    quarter = len(paired) // 4
                    line += (
                        f"; calls/s {100 * (rate[name] / rate['plain'] - 1):+.1f}%,"
                        f" CPU/call {100 * (per_call[name] / per_call['plain'] - 1):+.1f}%"
                        f" (per round: median {100 * statistics.median(paired):+.1f}%,"
                        f" middle half {100 * paired[quarter]:+.1f}% to {100 * paired[-1 - quarter]:+.1f}%)"
                    )
                print(line)
            print(f"OTLP exports received: {Sink.exports}")
        finally:
            for proc, _, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=15)
            sink.shutdown()


if __name__ == "__main__":
    main()
