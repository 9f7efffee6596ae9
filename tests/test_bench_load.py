"""bench/load.py, the benchmarks' raw load generator, ends every session it opened, however its run ends.

The runner caps sessions per client: a case that leaked its handshake-era
sessions made every later round of the benchmark fail with 429. Checked against
the real server, with a cap small enough to hit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from bench.load import ADD, Load
from tests.helpers import RunnerProcess

pytestmark = pytest.mark.anyio
CAP = 3


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    folder = tmp_path_factory.mktemp("bench-load")
    (folder / "load_tools.py").write_text("def add(a: int, b: int) -> int:\n    return a + b\n")
    (folder / "m.yaml").write_text(
        f"name: m\nserver:\n  max_sessions_per_client: {CAP}\ntools:\n  - function: load_tools:add\n"
    )
    # A log line per call: far more than a pipe holds (RunnerProcess writes to a file).
    process = RunnerProcess(folder / "m.yaml", extra=("--no-reload",)).start()
    yield process
    process.stop()


def load(runner: RunnerProcess, concurrency: int, seconds: float) -> Load:
    assert runner.proc is not None
    return Load(runner.port, runner.proc.pid, concurrency=concurrency, seconds=seconds, warmup=0)


async def a_full_case_runs(runner: RunnerProcess) -> None:
    """All of the client's places are free again: a case at the cap opens every session and calls."""
    full = await load(runner, CAP, 0.2).run(ADD)
    assert full.problems == {} and full.errors == 0 and full.calls > 0


async def test_connections_that_fail_to_open_are_counted_and_the_opened_sessions_ended(runner: RunnerProcess) -> None:
    over = await load(runner, CAP + 2, 0.2).run(ADD)  # two more sessions than the cap: two 429s, not an exception
    assert over.calls == 0 and over.errors == 2
    assert list(over.problems.values()) == [2]
    assert "opening a connection: BadResponse: initialize: HTTP 429" in next(iter(over.problems))
    assert "max_sessions_per_client" in next(iter(over.problems))
    await a_full_case_runs(runner)


async def test_a_cancelled_case_ends_its_sessions(runner: RunnerProcess) -> None:
    with pytest.raises(TimeoutError):  # cancelled while opening or while calling, whichever comes first
        await asyncio.wait_for(load(runner, CAP, 60).run(ADD), 1)
    await a_full_case_runs(runner)
