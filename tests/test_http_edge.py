"""The HTTP edge against the real server: nothing secret on the unauthenticated probes, the
DNS-rebinding rule on every route, no token in any log line, and bounded connections."""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from bench.attacks import closed_by_server
from tests.helpers import Issuer, JWKSServer, RunnerProcess, edit_and_wait, loopback_get, mcp_client, runner_cmd

pytestmark = pytest.mark.anyio

SECRET = "postgres://admin:S3cr3t@db"

TOOLS = """
def add(a: int, b: int) -> int:
    return a + b
"""


@dataclass
class Logs:
    """Everything the server process prints, read from its log file as it is written."""

    runner: RunnerProcess

    @property
    def text(self) -> str:
        return self.runner.logged()

    def wait_for(self, needle: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} never appeared in the server's output:\n{self.text}")
            time.sleep(0.02)


@dataclass
class Edge:
    folder: Path
    runner: RunnerProcess
    issuer: Issuer
    logs: Logs

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.runner.port}"

    def health(self) -> dict[str, object]:
        return loopback_get(f"{self.origin}/healthz").json()  # type: ignore[no-any-return]

    def edit(self, name: str, text: str) -> dict[str, Any]:
        """For the sync tests: `edit_and_wait` in an event loop of its own."""
        return anyio.run(partial(edit_and_wait, self.folder, self.runner.health_url, name, text))


def manifest(jwks: JWKSServer, resource_url: str, server: dict[str, object] | None = None) -> str:
    settings = "".join(f"  {key}: {value}\n" for key, value in (server or {}).items())
    return (
        f"name: edge\nsignin:\n  app_id: {jwks.app_id}\n  resource: {resource_url}\n  base_url: {jwks.base_url}\n"
        f"server:\n  path: /mcp\n{settings}tools:\n  - function: edge_tools:add\n"
    )


def location_of(text: str, needle: str) -> str:
    """`line:col` (1-based) of `needle` in `text`."""
    before = text[: text.index(needle)]
    return f"{before.count(chr(10)) + 1}:{len(before) - before.rfind(chr(10))}"


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, jwks: JWKSServer) -> Iterator[Edge]:
    folder = tmp_path_factory.mktemp("edge")
    runner = RunnerProcess(folder / "edge.yaml")
    (folder / "edge_tools.py").write_text(TOOLS)
    (folder / "edge.yaml").write_text(manifest(jwks, runner.url, {"header_timeout": 2, "max_connections": 50}))
    # Started with a low open-file soft limit, as on many hosts (1,024), to see the server raise it.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
    try:
        runner.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert runner.proc is not None
    logs = Logs(runner)
    yield Edge(folder, runner, Issuer(base_url=jwks.base_url, resource=runner.url, key=jwks.keys[0]), logs)
    runner.stop()


# -- nothing secret on /healthz --------------------------------------------------------------


def test_healthz_shows_where_and_what_kind_never_the_message(edge: Edge) -> None:
    raising = TOOLS + f"\nraise RuntimeError({SECRET!r})\n"
    health = edge.edit("edge_tools.py", raising)
    assert health["status"] == "degraded"
    error = health["last_reload"]["error"]  # type: ignore[index]
    line = raising.count("\n")
    where = location_of((edge.folder / "edge.yaml").read_text(), "edge_tools:add")
    kind = f"exception at import (RuntimeError), raised at edge_tools.py:{line}"
    assert error == f"{edge.runner.manifest}:{where}: {kind}"
    assert "S3cr3t" not in loopback_get(f"{edge.origin}/healthz").text
    edge.logs.wait_for(f"importing 'edge_tools' raised RuntimeError: {SECRET}")  # the full report: in the log

    # A value the manifest check echoes back (here a bad function reference) stays in the log too.
    good = (edge.folder / "edge.yaml").read_text()
    health = edge.edit("edge.yaml", good.replace("edge_tools:add", "S3cr3t-not-a-ref"))
    assert health["last_reload"]["error"] == f"{edge.runner.manifest}:{where}: invalid function reference"  # type: ignore[index]
    assert "S3cr3t" not in loopback_get(f"{edge.origin}/healthz").text
    edge.logs.wait_for("got 'S3cr3t-not-a-ref'")

    (edge.folder / "edge_tools.py").write_text(TOOLS)
    assert edge.edit("edge.yaml", good)["status"] == "ok"


# -- the DNS-rebinding rule on every route ------------------------------------------------------

ROUTES = ["/healthz", "/readyz", "/.well-known/oauth-protected-resource/mcp", "/mcp"]


@pytest.mark.parametrize("path", ROUTES)
def test_foreign_host_or_origin_is_refused_on_every_route(edge: Edge, path: str) -> None:
    url = edge.origin + path
    assert loopback_get(url, headers={"Host": f"evil.example:{edge.runner.port}"}).status_code == 421
    assert loopback_get(url, headers={"Host": "evil.example"}).status_code == 421
    assert loopback_get(url, headers={"Origin": "http://evil.example"}).status_code == 403
    assert loopback_get(url, headers={"Origin": f"http://localhost:{edge.runner.port}"}).status_code != 403
    for host in (f"localhost:{edge.runner.port}", f"127.0.0.1:{edge.runner.port}"):
        expected = 401 if path == "/mcp" else 200  # the MCP endpoint still wants its token
        assert loopback_get(url, headers={"Host": host}).status_code == expected


@dataclass
class IPv6Runner(RunnerProcess):
    """A runner bound to an IPv6 spelling of loopback; the base class waits on 127.0.0.1."""

    host: str = "0:0:0:0:0:0:0:1"

    @property
    def url(self) -> str:
        return f"http://[::1]:{self.port}/mcp"

    def start(self) -> IPv6Runner:
        proc = self.launch(
            runner_cmd("serve", str(self.manifest), "--host", self.host, "--port", str(self.port), "--no-reload")
        )
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, self.logged()
            try:
                socket.create_connection(("::1", self.port), timeout=0.5).close()
                return self
            except OSError:
                assert time.monotonic() < deadline, "the server never listened on ::1"
                time.sleep(0.05)


async def test_loopback_is_decided_by_address_not_spelling(tmp_path: Path) -> None:
    (tmp_path / "edge_tools.py").write_text(TOOLS)
    (tmp_path / "open.yaml").write_text("name: open\ntools:\n  - function: edge_tools:add\n")
    runner = IPv6Runner(tmp_path / "open.yaml").start()
    try:
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        headers = {"Host": "evil.example", "Accept": "application/json, text/event-stream"}
        assert httpx2.post(runner.url, json=initialize, headers=headers).status_code == 421
        assert loopback_get(f"http://[::1]:{runner.port}/healthz", headers={"Host": "evil.example"}).status_code == 421
        async with mcp_client(runner.url) as client:  # the real name of the place still works
            assert [t.name for t in (await client.list_tools()).tools] == ["add"]
    finally:
        runner.stop()


# -- no token in any log line ---------------------------------------------------------------------


def test_a_token_in_the_query_string_never_reaches_the_log(edge: Edge) -> None:
    token = edge.issuer.token()
    refused = httpx2.post(f"{edge.runner.url}?access_token={token}&x=1", json={})
    assert refused.status_code == 401
    assert loopback_get(f"{edge.origin}/nowhere/{token}").status_code == 404
    assert loopback_get(f"{edge.origin}/healthz?token={token}").status_code == 200
    edge.logs.wait_for('"GET /healthz HTTP/1.1" 200')  # the access log is on, and read
    edge.logs.wait_for('"POST /mcp HTTP/1.1" 401')
    edge.logs.wait_for('"GET /nowhere/[redacted] HTTP/1.1" 404')
    assert edge.logs.text.count("/nowhere/") == 1  # one access line per response (the runner's, not uvicorn's too)
    assert token not in edge.logs.text
    assert token.split(".")[2] not in edge.logs.text  # not even the signature on its own


# -- bounded connections ----------------------------------------------------------------------------


async def test_half_sent_requests_neither_lock_clients_out_nor_stay_open(edge: Edge) -> None:
    """Slowloris: more half-sent request heads than the open-file limit the server was started with (256)."""
    attackers = []
    try:
        for _ in range(300):
            sock = socket.create_connection(("127.0.0.1", edge.runner.port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            attackers.append(sock)
        async with mcp_client(edge.runner.url, edge.issuer.token()) as client:  # a legitimate client gets through
            assert (await client.call_tool("add", {"a": 2, "b": 3})).structured_content == {"result": 5}
        # ... and the server closes every half-sent request: at the connection bound, or at the header deadline.
        deadline = time.monotonic() + 60
        assert all(closed_by_server(sock, deadline) for sock in attackers)
    finally:
        for sock in attackers:
            sock.close()
    assert loopback_get(f"{edge.origin}/readyz").status_code == 200


def test_open_file_soft_limit_is_raised_to_the_hard_limit(edge: Edge) -> None:
    assert edge.runner.proc is not None
    limits = Path(f"/proc/{edge.runner.proc.pid}/limits").read_text()
    soft, hard = next(line.split()[3:5] for line in limits.splitlines() if line.startswith("Max open files"))
    assert soft == hard != "256"


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_the_uvicorn_internals_the_limits_rely_on_are_still_there(parser: str) -> None:
    """runner/http/limits_*.py subclass uvicorn's protocols: fail here, by name, if uvicorn moves things."""
    import asyncio

    import h11
    import uvicorn
    from uvicorn.server import ServerState

    from runner.http.limits import Limits, protocol_class

    loop = asyncio.new_event_loop()
    try:
        config = uvicorn.Config(lambda *_: None, http=protocol_class(Limits(), parser))  # type: ignore[arg-type]
        config.load()
        protocol = config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=ServerState(), app_state={}, _loop=loop
        )
    finally:
        loop.close()
    if parser == "h11":
        assert isinstance(protocol.conn, h11.Connection) and protocol.conn.their_state is h11.IDLE  # type: ignore[attr-defined]
    else:  # the parser's callbacks the deadlines follow
        for name in ("on_message_begin", "on_headers_complete", "on_message_complete", "parser", "pipeline"):
            assert hasattr(protocol, name), f"uvicorn's HttpToolsProtocol no longer has {name!r}"
    for name in ("cycle", "transport", "loop", "client", "connections"):
        assert hasattr(protocol, name), f"uvicorn's {parser} protocol no longer has {name!r}"


def test_a_limit_changed_by_a_reload_is_logged_as_needing_a_restart(edge: Edge) -> None:
    good = (edge.folder / "edge.yaml").read_text()
    assert edge.edit("edge.yaml", good.replace("header_timeout: 2", "header_timeout: 3"))["status"] == "ok"
    edge.logs.wait_for("server.header_timeout changed from 2.0 to 3.0: needs a restart")
    assert edge.edit("edge.yaml", good)["status"] == "ok"
