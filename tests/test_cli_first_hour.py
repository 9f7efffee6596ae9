"""Dead ends a new user hit in their first hour (issue 19 part F), each reproduced against real processes.

Each test names the message or behaviour the user met before, and checks the next step is said now.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.auth.jwks import JWKSCache, KeysUnavailable
from tests.helpers import (
    ROOT,
    Issuer,
    JWKSServer,
    Key,
    RunnerProcess,
    post_initialize,
    run_cli,
    run_main,
)

NOTES = """\
def remove_note(id: int) -> str:
    return f"removed {id}"


def list_notes() -> list[str]:
    return ["a"]
"""

MANIFEST = """\
name: notes
signin:
  app_id: local
tools:
  - function: notes:list_notes
  - function: notes:remove_note
    scopes: [notes:write]
"""


@pytest.fixture(scope="module")
def notes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    """A local-issuer server whose `remove_note` needs the scope notes:write, under the default manifest name."""
    folder = tmp_path_factory.mktemp("notes")
    (folder / "notes.py").write_text(NOTES)
    (folder / "mcp-runner.yaml").write_text(MANIFEST)
    runner = RunnerProcess(folder / "mcp-runner.yaml").start()
    yield runner
    runner.stop()


# 1. A token without the tool's scope: "the server has no tool 'remove_note'" / "HTTP 403: Missing scope".


def test_a_tool_hidden_for_a_missing_scope_names_the_scope(notes: RunnerProcess) -> None:
    folder = notes.manifest.parent
    token = run_main("token", str(notes.manifest), cwd=folder).stdout.strip()  # signin.scopes only
    how = f"`mcp-runner token {notes.manifest} --scope notes:write`"

    coerced = run_main("call", str(notes.manifest), "remove_note", "--arg", "id=1", "--token", token)
    assert coerced.returncode == 3, coerced.stderr
    assert "tool 'remove_note' needs scope notes:write, which the token lacks" in coerced.stderr
    assert how in coerced.stderr and "has no tool" not in coerced.stderr

    raw = run_main("call", str(notes.manifest), "remove_note", "--args", '{"id": 1}', "--token", token)
    assert raw.returncode == 3
    assert "HTTP 403: Missing scope: notes:write" in raw.stderr and how in raw.stderr
    assert token not in coerced.stderr + raw.stderr  # a token is never printed

    # With the scopes it needs (the CLI mints one for app_id: local when given none), the same call works.
    done = run_main("call", str(notes.manifest), "remove_note", "--arg", "id=1")
    assert (done.returncode, done.stdout) == (0, "removed 1\n"), done.stderr


# 4. `list`/`call`/`read`/`prompt` required the manifest while serve/check/token default to mcp-runner.yaml.


def test_client_commands_default_to_the_manifest_init_writes(notes: RunnerProcess) -> None:
    folder = notes.manifest.parent
    listed = run_main("list", cwd=folder)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("tools (2):")
    called = run_main("call", "remove_note", "--arg", "id=7", cwd=folder)
    assert (called.returncode, called.stdout) == (0, "removed 7\n"), called.stderr
    explicit = run_main("call", "mcp-runner.yaml", "remove_note", "--arg", "id=8", cwd=folder)  # as before
    assert (explicit.returncode, explicit.stdout) == (0, "removed 8\n"), explicit.stderr
    between = run_main("call", "mcp-runner.yaml", "--url", notes.url, "remove_note", "--arg", "id=9", cwd=folder)
    assert (between.returncode, between.stdout) == (0, "removed 9\n"), between.stderr  # options between, as before
    no_tool = run_main("call", "mcp-runner.yaml", cwd=folder)  # the manifest, but which tool?
    assert no_tool.returncode == 2
    assert "which tool? `mcp-runner call mcp-runner.yaml TOOL`" in no_tool.stderr


def test_no_manifest_here_suggests_init(tmp_path: Path) -> None:
    for argv in (["check"], ["serve"], ["token"], ["list"], ["call", "add"], ["check", "nope.yaml"]):
        done = run_main(*argv, cwd=tmp_path)
        assert done.returncode == 2, argv
        assert "no such manifest" in done.stderr and "`mcp-runner init`" in done.stderr, (argv, done.stderr)
        assert "Errno" not in done.stderr


# 2. "cannot listen on 127.0.0.1:8100: Address already in use", with no next step.


def test_a_busy_port_names_the_server_that_holds_it(notes: RunnerProcess) -> None:
    folder = notes.manifest.parent
    again = run_cli("serve", "--port", str(notes.port), cwd=folder)
    assert again.returncode == 1
    assert f"cannot listen on 127.0.0.1:{notes.port}: Address already in use" in again.stderr
    assert f"is already served there, by PID {notes.proc.pid if notes.proc else 0}" in again.stderr
    assert "--port 0 (any free port)" in again.stderr

    (folder / "other.yaml").write_text("name: other\n")
    other = run_cli("serve", "other.yaml", "--port", str(notes.port), cwd=folder)
    assert other.returncode == 1
    assert f"the server of {notes.manifest.resolve()} holds it (PID {notes.proc.pid if notes.proc else 0}" in (
        other.stderr
    )

    with socket.socket() as holder:  # a program that is no server of ours
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        stranger = run_cli("serve", "other.yaml", "--port", str(port), cwd=folder)
    assert stranger.returncode == 1
    assert f"another program holds port {port}" in stranger.stderr and "--port 0" in stranger.stderr


# 3. and 8. `check` stopped at the first kind of problem; messages that did not say what to do.


def test_check_reports_every_wrong_reference_in_one_run(tmp_path: Path) -> None:
    (tmp_path / "tools.py").write_text("def add(a: int, b: int) -> int:\n    return a + b\n")
    manifest = tmp_path / "m.yaml"
    # Three wrong paths to `add`: all three tools are named 'add', which validation refused first, alone.
    manifest.write_text("name: m\ntools:\n  - function: tool:add\n  - function: tools.py:add\n  - function: tols:add\n")
    done = run_main("check", str(manifest), cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert any("duplicate tool name 'add'" in line for line in lines)
    assert f"{manifest}:3:15: cannot import module 'tool': no module named 'tool' (looked in {tmp_path})" in lines
    assert any(line.startswith(f"{manifest}:4:15: cannot import module 'tools.py'") for line in lines)
    assert any(line.startswith(f"{manifest}:5:15: cannot import module 'tols'") for line in lines)
    assert "a module is named without .py: write tools:add" in done.stderr


def test_an_entry_written_as_a_string_shows_what_an_entry_looks_like(tmp_path: Path) -> None:
    (tmp_path / "tools.py").write_text("def add(a: int, b: int) -> int:\n    return a + b\n")
    manifest = tmp_path / "m.yaml"
    manifest.write_text("name: m\ntools:\n  - tools:add\n")
    done = run_main("check", str(manifest), cwd=tmp_path)
    assert done.returncode == 2
    assert "ToolEntry" not in done.stderr
    assert f"{manifest}:3:5: tools.0: an entry is a mapping with a 'function:' key, not a string" in done.stderr
    assert "\n    - function: tools:add\n" in done.stderr


# 5. `init` said "test it: pytest", which the README's venv (`pip install -e .`) does not have.


def test_init_next_steps_work_as_pasted_in_the_readmes_venv(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "mcp-runner"  # the README's `.venv/bin/mcp-runner`, not activated
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", str(tmp_path)), "LANG": "C.UTF-8"}
    made = subprocess.run(
        [str(script), "init", "my server"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    printed = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in made.stdout.splitlines()[1:]}
    test_it = printed["test it"].split("   (", 1)[0]
    ran = subprocess.run(["bash", "-c", test_it], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, (test_it, ran.stdout, ran.stderr)
    assert "ok: the tool, the resource and the prompt answered" in ran.stdout


# 6. Issuer unreachable: a log line every second, and 401 "invalid token" for the server's own fault.


async def _fail_fetches(cache: JWKSCache, times: int) -> None:
    for _ in range(times):
        with pytest.raises(KeysUnavailable):
            await cache.key("any-kid")


@pytest.mark.anyio
async def test_an_unreachable_issuer_is_logged_rarely(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as closed:  # a loopback port that refuses connections: bound, never listening
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/apps/a/discovery/v2.0/keys"
        cache = JWKSCache(url, min_refetch_interval=0.0)  # every lookup fetches again
        with caplog.at_level(logging.WARNING, logger="runner.auth.jwks"):
            await _fail_fetches(cache, 64)
    reports = [r.getMessage() for r in caplog.records if "JWKS refresh failed" in r.getMessage()]
    assert len(reports) == 7  # failures 1, 2, 4, 8, 16, 32, 64: not 64 lines
    assert "failed 64 times in a row" in reports[-1] and "(next report at 128)" in reports[-1]


@pytest.fixture(scope="module")
def erring_jwks() -> Iterator[JWKSServer]:
    jwks = JWKSServer(app_id="first-hour", keys=[Key.new("k1")], mode="error").start()  # answers 500
    yield jwks
    jwks.stop()


def _guarded(folder: Path, base_url: str, app_id: str) -> RunnerProcess:
    (folder / "keysmod.py").write_text("def echo(text: str) -> str:\n    return text\n")
    runner = RunnerProcess(folder / "keys.yaml", env={"MCP_APP_ID": app_id})
    (folder / "keys.yaml").write_text(
        textwrap.dedent(f"""
            name: keys
            signin:
              app_id: {app_id}
              base_url: {base_url}
              resource: {runner.url}
            tools:
              - function: keysmod:echo
        """)
    )
    return runner


def test_a_token_that_cannot_be_checked_is_503_not_401(tmp_path: Path, erring_jwks: JWKSServer) -> None:
    runner = _guarded(tmp_path, erring_jwks.base_url, erring_jwks.app_id).start()
    issuer = Issuer(erring_jwks.base_url, runner.url, erring_jwks.keys[0])
    try:
        token = issuer.token()
        refused = post_initialize(runner.url, token)
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"] == "temporarily_unavailable"
        assert "www-authenticate" not in refused.headers  # nothing is wrong with the token itself
        assert post_initialize(runner.url, None).status_code == 401  # no token at all is still the client's fault
        erring_jwks.mode = "good"  # the issuer is back: the same token is accepted (bounded wait)
        deadline = time.monotonic() + 30
        while (status := post_initialize(runner.url, token).status_code) == 503 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status == 200
    finally:
        erring_jwks.mode = "error"
        log = runner.stop()
    assert "JWKS refresh failed" in log or "JWKS not reachable at start-up" in log
    assert "answered HTTP 500" in log


def test_a_closed_issuer_port_is_503_not_401(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        base_url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        runner = _guarded(tmp_path, base_url, "closed-app").start()
        try:
            token = Issuer(base_url, runner.url, Key.new("k")).token()
            answer = post_initialize(runner.url, token)
            called = run_main("call", str(runner.manifest), "echo", "--arg", "text=hi", "--token", token)
        finally:
            runner.stop()
    assert answer.status_code == 503 and "Retry-After" in answer.headers
    assert called.returncode == 3 and "answered 503 Service Unavailable (retry after" in called.stderr


# 9. Help that said what is refused, flags without help, and `pytest -p no:xdist` refused by the forced `-n 4`.


def test_help_says_what_the_flags_do() -> None:
    token = " ".join(run_cli("token", "--help").stdout.split())
    assert "0 = any" not in token and "the running server of the manifest" in token
    serve = run_cli("serve", "--help")
    assert "stdio: talk MCP on stdin/stdout" in " ".join(serve.stdout.split())
    call = run_cli("call", "--help")
    assert "[MANIFEST] TOOL" in " ".join(call.stdout.split())


@pytest.mark.parametrize("flags", [[], ["-p", "no:xdist"]])
def test_pytest_runs_with_and_without_xdist(flags: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *flags, "--collect-only", "-q", "-p", "no:cacheprovider", __file__],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "unrecognized arguments" not in done.stderr
