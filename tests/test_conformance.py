"""The official MCP conformance suite (server scenarios) against a manifest: tests/conformance/everything.yaml.

The suite (`@modelcontextprotocol/conformance`, pinned in tests/conformance/package.json
with the Node 22 it needs) is installed by `npm ci --prefix tests/conformance`, which
`.ci/run` does. It runs every server scenario, active and pending, against the real
runner as an MCP client over HTTP, and writes one `checks.json` per scenario.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.helpers import ROOT, RunnerProcess

SUITE = ROOT / "tests" / "conformance"
BIN = SUITE / "node_modules" / ".bin"
SCENARIOS = 32  # 0.1.16: 30 active, 2 pending (json-schema-2020-12, server-sse-polling)

# Scenarios allowed to fail while a piece they need is not on main yet (each is reported);
# every other scenario must pass.
WAITING: dict[str, str] = {}  # none left: every scenario, active and pending, must pass


def _installed() -> Path:
    """The suite's entry point, or a failure saying how to install it (never a skip)."""
    conformance = BIN / "conformance"
    if not conformance.exists() or not (BIN / "node").exists():
        raise AssertionError(f"the conformance suite is not installed: run `npm ci --prefix {SUITE.relative_to(ROOT)}`")
    return conformance


def test_conformance_suite(tmp_path: Path) -> None:
    conformance = _installed()
    for name in ("everything.yaml", "everything.py"):
        shutil.copy(SUITE / name, tmp_path / name)
    runner = RunnerProcess(tmp_path / "everything.yaml", extra=("--no-reload",), log=tmp_path / "server.log").start()
    results = tmp_path / "results"
    try:
        run = subprocess.run(
            [str(conformance), "server", "--url", runner.url, "--suite", "all", "--output-dir", str(results)],
            env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},  # Node 22 from the install
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        runner.stop()
    outcome: dict[str, list[str]] = {}
    for checks in sorted(results.glob("server-*/checks.json")):
        scenario = re.sub(r"-\d{4}-\d{2}-\d{2}T[\d-]+Z$", "", checks.parent.name.removeprefix("server-"))
        failures = [c for c in json.loads(checks.read_text()) if c["status"] == "FAILURE"]
        outcome[scenario] = [f"{c['id']}: {c.get('errorMessage', '')}" for c in failures]
    assert len(outcome) == SCENARIOS, f"{len(outcome)} scenarios ran:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    failed = {name: why for name, why in outcome.items() if why}
    unexpected = {name: why for name, why in failed.items() if name not in WAITING}
    print(f"conformance: {SCENARIOS - len(failed)} of {SCENARIOS} passed; failing: {sorted(failed)}")
    assert not unexpected, f"scenarios failed: {json.dumps(unexpected, indent=2)}\n{runner.logged()[-3000:]}"
