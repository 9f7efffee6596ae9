"""What running a tool as a task costs: a `tools/call` as a task vs. the same call plain, medians and ratios.

One `mcp-runner serve` (no auth, loopback), one instant tool registered twice: `task: never` and
`task: optional`. Each round makes, in turn (interleaved, so drift hits every kind alike), over one
keep-alive HTTP connection with raw 2026-07-28 JSON-RPC:

- plain:        `tools/call` of the `never` tool (the baseline);
- optional, no extension: the `optional` tool from a request that does not declare the extension
  (a plain call through the task interceptor);
- create:       the `optional` tool as a task: the `tools/call` that answers `CreateTaskResult`;
- create + get: that, plus `tasks/get` until the task reads `completed` (what a client needs for the result).

With --redis (needs /usr/bin/redis-server) the same again on a second server whose tasks live in
Redis (`server.bus`).

    python bench/tasks.py [--rounds 400] [--redis]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from tests.helpers import free_port, runner_cmd, stop_process, wait_for_port  # noqa: E402
from tests.realredis import RedisServer  # noqa: E402
from tests.taskclient import TaskClient  # noqa: E402

TOOLS = '''
async def echo(x: int) -> int:
    """Answers at once."""
    return x
'''
MANIFEST = """name: bench-tasks
tools:
  - function: bench_tools:echo
    name: plain_echo
  - function: bench_tools:echo
    name: task_echo
    task: optional
server:
  max_tasks_per_client: 100000
  max_tasks: 100000
{bus}"""


def kinds(with_ext: TaskClient, without_ext: TaskClient) -> dict[str, Callable[[int], None]]:
    def plain(i: int) -> None:
        assert with_ext.call("plain_echo", {"x": i})["resultType"] == "complete"

    def optional_plain(i: int) -> None:
        assert without_ext.call("task_echo", {"x": i})["resultType"] == "complete"

    def create(i: int) -> None:
        assert with_ext.call("task_echo", {"x": i})["resultType"] == "task"

    def create_and_get(i: int) -> None:
        task_id = with_ext.call("task_echo", {"x": i})["taskId"]
        while with_ext.get(task_id)["status"] != "completed":
            pass

    return {
        "plain": plain,
        "optional, no extension": optional_plain,
        "create": create,
        "create + get": create_and_get,
    }


def measure(url: str, rounds: int, label: str) -> None:
    with_ext, without_ext = TaskClient(url, ""), TaskClient(url, "", tasks=False)
    table = kinds(with_ext, without_ext)
    samples: dict[str, list[float]] = {name: [] for name in table}
    for i in range(rounds + 20):
        for name, run in table.items():
            started = time.perf_counter()
            run(i)
            if i >= 20:  # warm-up rounds are not counted
                samples[name].append(time.perf_counter() - started)
    base = statistics.median(samples["plain"])
    print(f"{label} ({rounds} rounds, medians):")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"  {name:24} {median * 1000:6.2f} ms   x{median / base:.2f}")


def serve(folder: Path, bus: str) -> tuple[subprocess.Popen[str], str]:
    (folder / "m.yaml").write_text(MANIFEST.format(bus=f"  bus: {bus}\n" if bus else ""))
    port = free_port()
    log = (folder / f"server-{port}.log").open("w")
    proc = subprocess.Popen(
        runner_cmd("serve", "m.yaml", "--port", str(port), "--no-reload"), cwd=folder, stdout=log, stderr=log, text=True
    )
    wait_for_port(port, proc=proc)
    return proc, f"http://127.0.0.1:{port}/mcp"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--redis", action="store_true", help="also with the tasks in a real Redis (server.bus)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "bench_tools.py").write_text(TOOLS)
        proc, url = serve(folder, "")
        try:
            measure(url, args.rounds, "tasks in the process")
        finally:
            stop_process(proc)
        if args.redis:
            redis = RedisServer().start()
            try:
                proc, url = serve(folder, redis.url)
                try:
                    measure(url, args.rounds, "tasks in Redis (server.bus)")
                finally:
                    stop_process(proc)
            finally:
                redis.stop()


if __name__ == "__main__":
    main()
