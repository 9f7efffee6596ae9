"""The official MCP conformance suite (server scenarios) against a manifest: tests/conformance/everything.yaml.

The suite (`@modelcontextprotocol/conformance`, pinned in tests/conformance/package.json
with the Node 22 it needs) is installed by `npm ci --prefix tests/conformance`, which
scripts/test does. Three sets run at once, each against a real runner of its own (one server
for all three: their anonymous clients would share its per-client task bound), each writing
one `checks.json` per scenario:

- `--requirements 2026-07-28`: exactly what the 2026-07-28 revision requires, at its wire
  (no handshake), plus the tasks extension and pending scenarios it runs unscored;
- `--requirements 2025-11-25`: what the handshake-era revision requires;
- `--suite pending`: the pending and extension scenarios (tasks, skills, SSE polling).

Every scenario of every set must pass (no check with status FAILURE; a WARNING is a
SHOULD the suite reports without failing), except those in WAITING.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from tests.helpers import ROOT, RunnerProcess

SUITE = ROOT / "tests" / "conformance"
BIN = SUITE / "node_modules" / ".bin"

# Each set's arguments and how many scenarios it runs in 0.2.0-alpha.12 (a set that ran
# fewer broke off, or the pin changed: both must be looked at).
SETS: dict[str, tuple[list[str], int]] = {
    "2026-07-28": (["--requirements", "2026-07-28"], 50),
    "2025-11-25": (["--requirements", "2025-11-25"], 33),
    "pending": (["--suite", "pending"], 17),
}

# Scenarios allowed to fail while the piece they need is being built, each -> which item builds it
# (e.g. "tasks-lifecycle": "issue 20 item 8, tasks"); each is printed as waiting, and every other
# scenario must pass. None left: issue 20's items 2-8 are all in (remove an entry when its item lands).
WAITING: dict[str, str] = {}


def _installed() -> Path:
    """The suite's entry point, or a failure saying how to install it (never a skip)."""
    conformance = BIN / "conformance"
    if not conformance.exists() or not (BIN / "node").exists():
        raise AssertionError(f"the conformance suite is not installed: run `npm ci --prefix {SUITE.relative_to(ROOT)}`")
    return conformance


def _outcome(results: Path) -> dict[str, list[str]]:
    """Scenario -> its failed checks (empty: passed), from the `checks.json` files of one set."""
    outcome: dict[str, list[str]] = {}
    for checks in sorted(results.glob("server-*/checks.json")):
        scenario = re.sub(r"-\d{4}-\d{2}-\d{2}T[\d-]+Z$", "", checks.parent.name.removeprefix("server-"))
        failures = [c for c in json.loads(checks.read_text()) if c["status"] == "FAILURE"]
        outcome[scenario] = [f"{c['id']}: {c.get('errorMessage', '')}" for c in failures]
    return outcome


def test_conformance_suite(tmp_path: Path) -> None:
    conformance = _installed()
    for name in ("everything.yaml", "everything.py"):
        shutil.copy(SUITE / name, tmp_path / name)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}  # Node 22 from the install
    runners: dict[str, RunnerProcess] = {}
    runs: dict[str, subprocess.Popen[str]] = {}
    took: dict[str, float] = {}
    try:
        for name in SETS:  # a server each: the sets' anonymous clients would share one's per-client task bound
            log = tmp_path / f"server-{name}.log"
            runners[name] = RunnerProcess(tmp_path / "everything.yaml", extra=("--no-reload",), log=log).start()
        started = time.monotonic()
        for name, (args, _) in SETS.items():
            url = runners[name].url
            command = [str(conformance), "server", "--url", url, *args, "--output-dir", str(tmp_path / name)]
            log = (tmp_path / f"{name}.log").open("w")
            runs[name] = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
            log.close()
        deadline = started + 240
        while len(took) < len(runs) and time.monotonic() < deadline:  # bounded: each set's own wall time
            for name, run in runs.items():
                if name not in took and run.poll() is not None:
                    took[name] = time.monotonic() - started
            time.sleep(0.05)
        assert len(took) == len(runs), f"still running after 240 s: {sorted(set(runs) - set(took))}"
    finally:
        for run in runs.values():
            if run.poll() is None:
                run.kill()
                run.wait()
        for runner in runners.values():
            runner.stop()

    unexpected: dict[str, list[str]] = {}
    for name, (_, expected) in SETS.items():
        outcome = _outcome(tmp_path / name)
        ran = (tmp_path / f"{name}.log").read_text()
        assert len(outcome) == expected, f"{name}: {len(outcome)} of {expected} scenarios ran:\n{ran[-3000:]}"
        failed = sorted(scenario for scenario, why in outcome.items() if why)
        waiting = [s for s in failed if s in WAITING]
        print(
            f"conformance {name}: {expected - len(failed)} of {expected} passed in {took[name]:.1f} s; "
            f"waiting: {', '.join(f'{s} ({WAITING[s]})' for s in waiting) or 'none'}"
        )
        unexpected.update({f"{name} {s}": outcome[s] for s in failed if s not in WAITING})
    logs = "".join(f"\n{name} server:\n{runners[name].logged()[-2000:]}" for name in {k.split()[0] for k in unexpected})
    assert not unexpected, f"scenarios failed: {json.dumps(unexpected, indent=2)}{logs}"
