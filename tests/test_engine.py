"""The event loop and HTTP parser `serve` really runs on: uvloop + httptools by default, asyncio + h11 on request.

Proof from outside the process too: the compiled uvloop and httptools extensions are mapped into the
default server's memory (/proc/PID/maps) and into the fallback's not at all.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import RunnerProcess, free_port, mcp_client, run_cli, runner_cmd, stop_process, wait_for_port

pytestmark = pytest.mark.anyio

TOOLS = """
import gc


def add(a: int, b: int) -> int:
    return a + b


def collector() -> str:
    return f"{gc.isenabled()} {gc.get_stats()[0]['collections']}"
"""
MANIFEST = """name: engine
server:
  header_timeout: 1
  body_timeout: 2
tools:
  - function: engine_tools:add
  - function: engine_tools:collector
"""
FLAGS = {"default": (), "fallback": ("--loop", "asyncio", "--http", "h11")}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RunnerProcess]]:
    folder = tmp_path_factory.mktemp("engine")
    (folder / "engine_tools.py").write_text(TOOLS)
    (folder / "engine.yaml").write_text(MANIFEST)
    started: dict[str, RunnerProcess] = {}
    try:
        for name, flags in FLAGS.items():
            runner = RunnerProcess(
                folder / "engine.yaml",
                extra=("--no-reload", *flags),
                log=folder / f"{name}.log",
                env={"PYTHONPROFILEIMPORTTIME": "1"},  # every import, on stderr: what a server without auth loads
            )
            started[name] = runner.start()
        yield started
    finally:
        for runner in started.values():
            runner.stop()


def mapped_extensions(runner: RunnerProcess) -> str:
    """The shared objects the server process has loaded, uvloop's and httptools' among them if imported."""
    assert runner.proc is not None
    return Path(f"/proc/{runner.proc.pid}/maps").read_text()


@pytest.mark.parametrize(
    ("name", "engine", "loaded", "absent"),
    [
        ("default", "uvloop + httptools", ["/uvloop/loop.", "/httptools/parser/parser."], []),
        ("fallback", "asyncio + h11", [], ["/uvloop/", "/httptools/"]),
    ],
)
async def test_the_server_runs_on_the_chosen_loop_and_parser(
    servers: dict[str, RunnerProcess], name: str, engine: str, loaded: list[str], absent: list[str]
) -> None:
    runner = servers[name]
    assert f"  engine:    {engine}\n" in runner.logged()  # read from the running loop and uvicorn's protocol class
    maps = mapped_extensions(runner)
    assert all(so in maps for so in loaded), f"{loaded} not all mapped into the server"
    assert not any(so in maps for so in absent), f"{absent} mapped into the fallback server"
    for mode in ("legacy", "auto"):  # both protocol generations are served on it
        async with mcp_client(runner.url, mode=mode) as client:
            assert (await client.call_tool("add", {"a": 2, "b": 40})).structured_content == {"result": 42}


async def test_the_collector_paused_for_the_start_is_on_while_serving(
    servers: dict[str, RunnerProcess], tmp_path: Path
) -> None:
    """runner/cli/launch.py pauses the cyclic collector while the runner imports and builds, and `serve` resumes it:
    started as `python -m runner.cli` (both engines) or as the `mcp-runner` script. A start with the collector
    on makes about two hundred young collections (one per 700 new objects); a paused one almost none."""
    urls = [runner.url for runner in servers.values()]
    script = Path(sys.executable).with_name("mcp-runner")
    port = free_port()
    proc = subprocess.Popen(
        [str(script), "serve", str(servers["default"].manifest), "--port", str(port), "--no-reload"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=60)
        for url in [*urls, f"http://127.0.0.1:{port}/mcp"]:
            async with mcp_client(url) as client:
                answer = (await client.call_tool("collector", {})).structured_content
            assert answer is not None, url
            enabled, young = answer["result"].split()
            assert enabled == "True" and int(young) < 50, (url, answer)
    finally:
        stop_process(proc)


def read_response(sock: socket.socket) -> bytes:
    """One complete response with a Content-Length (what /healthz sends), and nothing more."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))[15:])
    while len(body) < length:
        body += sock.recv(4096)
    return data


def imported(log: str) -> set[str]:
    """Top-level packages in `python -X importtime`'s report."""
    return {
        line.rsplit("|", 1)[1].strip().split(".")[0] for line in log.splitlines() if line.startswith("import time:")
    }


# Loaded only when the manifest (or the command) needs them: a token to check or mint, declared JSON Schemas,
# Prometheus metrics.
LAZY = {"jwt", "jsonschema", "referencing", "prometheus_client"}


def test_a_server_without_auth_and_check_never_load_what_the_manifest_does_not_use(
    servers: dict[str, RunnerProcess], tmp_path: Path
) -> None:
    """Fixed start-up cost (issue 12): no PyJWT without auth, no jsonschema without input_schema/output_schema,
    no prometheus_client without metrics."""
    for runner in servers.values():
        modules = imported(runner.logged())
        assert "runner" in modules and "mcp" in modules  # the report is there, and read
        assert not LAZY & modules
    (tmp_path / "engine_tools.py").write_text(TOOLS)
    (tmp_path / "engine.yaml").write_text(MANIFEST)
    checked = run_cli("check", str(tmp_path / "engine.yaml"), env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert checked.returncode == 0 and "runner" in imported(checked.stderr) and not LAZY & imported(checked.stderr)


@pytest.mark.parametrize("name", list(FLAGS))
def test_each_parser_closes_a_request_head_that_never_completes(servers: dict[str, RunnerProcess], name: str) -> None:
    """The connection limits work on both parsers: server.header_timeout (1 s here) closes a half-sent head,
    on a fresh connection and on a keep-alive one after a complete request."""
    port = servers[name].port
    with socket.create_connection(("127.0.0.1", port)) as fresh, socket.create_connection(("127.0.0.1", port)) as kept:
        fresh.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(kept).startswith(b"HTTP/1.1 200")
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        deadline = time.monotonic() + 30
        for sock in (fresh, kept):
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            assert sock.recv(4096) == b"", "the server answered or kept a half-sent request head"


@pytest.mark.parametrize("name", list(FLAGS))
def test_each_parser_closes_a_request_body_that_never_completes(servers: dict[str, RunnerProcess], name: str) -> None:
    """server.body_timeout (2 s here, longer than the head's 1 s) closes a body that stops half-way, on a fresh
    connection and on a keep-alive one after a complete request; a slow but complete body is still answered."""
    port = servers[name].port
    head = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port)) as fresh, socket.create_connection(("127.0.0.1", port)) as kept:
        fresh.sendall(head + b'{"jsonrpc":')
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(kept).startswith(b"HTTP/1.1 200")
        kept.sendall(head + b'{"jsonrpc":')
        deadline = time.monotonic() + 30
        for sock in (fresh, kept):
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            assert sock.recv(4096) == b"", "the server answered or kept a half-sent request body"
    with socket.create_connection(("127.0.0.1", port)) as slow:  # past the head's 1 s, within the body's 2 s
        body = b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}'
        slow.sendall(head.replace(b"100", str(len(body)).encode()) + body[:10])
        time.sleep(1.5)
        slow.sendall(body[10:])
        slow.settimeout(30)
        assert slow.recv(4096).startswith(b"HTTP/1.1 "), "a complete body within body_timeout was not answered"


@pytest.fixture(scope="module")
def without_extensions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment where uvloop and httptools fail to import, as on a platform without their builds."""
    shadow = tmp_path_factory.mktemp("shadow")
    for name in ("uvloop", "httptools"):
        (shadow / name).mkdir()
        (shadow / name / "__init__.py").write_text(f"raise ImportError('no {name} build for this platform')\n")
    return {"PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.parametrize(("flag", "name"), [("--loop", "uvloop"), ("--http", "httptools")])
def test_a_named_engine_that_cannot_be_imported_is_a_clear_error(
    tmp_path: Path, without_extensions: dict[str, str], flag: str, name: str
) -> None:
    (tmp_path / "engine_tools.py").write_text(TOOLS)
    (tmp_path / "engine.yaml").write_text(MANIFEST)
    result = run_cli("serve", str(tmp_path / "engine.yaml"), "--port", "0", flag, name, env=without_extensions)
    assert result.returncode == 2
    fallback = {"uvloop": "asyncio", "httptools": "h11"}[name]
    assert (
        f"mcp-runner: {flag} {name}: {name} cannot be imported (ImportError: no {name} build for this platform); "
        f"install it (pip install {name}) or pass {flag} {fallback}"
    ) in result.stderr
    assert "Traceback" not in result.stderr


def test_by_default_a_missing_engine_falls_back_with_a_warning(
    tmp_path: Path, without_extensions: dict[str, str]
) -> None:
    """Over stdio, so the server ends by itself at the end of its (empty) input."""
    (tmp_path / "engine_tools.py").write_text(TOOLS)
    (tmp_path / "engine.yaml").write_text(MANIFEST)
    result = subprocess.run(
        runner_cmd("serve", "engine.yaml", "--transport", "stdio", "--no-reload"),
        cwd=tmp_path,
        env={**os.environ, **without_extensions},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (
        "uvloop cannot be imported (ImportError: no uvloop build for this platform): serving on asyncio instead "
        "(pass --loop asyncio to choose it without this warning)"
    ) in result.stderr
    assert "INFO runner: event loop: asyncio\n" in result.stderr
