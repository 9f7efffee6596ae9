"""Progress of a large manifest's `check` and `serve` start-up: drawn on a terminal (a real pty), absent in a pipe."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

import pytest

from runner.serve.progress import MIN_ENTRIES
from tests.helpers import free_port, runner_cmd

CLEAR = "\r\x1b[K"


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("large")
    (folder / "tools.py").write_text("def add(a: int, b: int) -> int:\n    return a + b\n")
    entries = "".join(f"  - function: tools:add\n    name: add_{i}\n" for i in range(MIN_ENTRIES))
    manifest = folder / "large.yaml"
    manifest.write_text(f"name: large\nserver:\n  port: 0\ntools:\n{entries}")
    return manifest


def on_a_terminal(args: list[str], cwd: Path, until: str | None = None) -> tuple[str, subprocess.Popen[str]]:
    """Run with stderr on a pty; what it drew there, read until EOF or until `until` appears."""
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=secondary, text=True)
    os.close(secondary)
    drawn = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and (until is None or until.encode() not in drawn):
            ready, _, _ = select.select([primary], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the process closed its end
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(primary)
    return drawn.decode(), proc


def test_check_draws_progress_on_a_terminal_only(large: Path) -> None:
    drawn, proc = on_a_terminal(runner_cmd("check", str(large)), large.parent)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert f"mcp-runner: checking: {MIN_ENTRIES}/{MIN_ENTRIES} entries (100%)" in drawn
    assert "checking: 2/" in drawn  # drawn as it goes, not only at the end
    assert drawn.endswith(CLEAR)  # erased: the terminal is left as it was
    assert out.startswith(f"{large}: ok:")

    piped = subprocess.run(runner_cmd("check", str(large)), cwd=large.parent, capture_output=True, text=True)
    assert (piped.returncode, piped.stderr) == (0, "")  # no progress where nobody watches
    assert piped.stdout == out


def test_serve_start_up_draws_progress_then_the_block(large: Path) -> None:
    port = free_port()
    drawn, proc = on_a_terminal(
        runner_cmd("serve", str(large), "--port", str(port), "--no-reload"), large.parent, until="reload:"
    )
    try:
        assert f"mcp-runner: starting: {MIN_ENTRIES}/{MIN_ENTRIES} entries (100%){CLEAR}" in drawn
        assert drawn.index(CLEAR + 'mcp-runner: serving "large"') > drawn.index("starting: 1/")
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
