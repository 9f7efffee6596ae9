"""`init`, `list`, `call`, `read`, `prompt` against real server processes, through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.helpers import Issuer, RunnerProcess, run_cli, run_main, runner_cmd, wait_for_port

STARTER = ["mcp-runner.yaml", "mcp-runner.schema.json", "tools.py", "test_server.py"]


@pytest.fixture(scope="module")
def starter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, RunnerProcess]]:
    """`init` in a new folder, then `serve` there with no manifest argument (as the starter says)."""
    folder = tmp_path_factory.mktemp("starter") / "my server"
    made = run_cli("init", str(folder))
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in folder.iterdir()) == sorted(STARTER)
    served = RunnerProcess(folder / "mcp-runner.yaml")
    # `serve` with no MANIFEST, in the folder: the default name is the one `init` wrote.
    served.launch(runner_cmd("serve", "--port", str(served.port)), cwd=folder)
    try:
        wait_for_port(served.port, proc=served.proc)
        yield folder, served
    finally:
        served.stop()


def cli(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`run_main` with the starter's manifest named by its full path (the end-to-end tests use `run_cli`)."""
    return run_main(args[0], *(str(folder / a) if a == "mcp-runner.yaml" else a for a in args[1:]), env=env)


def test_init_then_serve_then_call(starter: tuple[Path, RunnerProcess]) -> None:
    folder, _ = starter
    manifest = (folder / "mcp-runner.yaml").read_text()
    assert manifest.startswith("# yaml-language-server: $schema=./mcp-runner.schema.json\n")
    assert json.loads((folder / "mcp-runner.schema.json").read_text())["title"] == "mcp-runner manifest"
    # The server took another port than the manifest's 8000: `call` finds it through its record.
    done = run_cli("call", "mcp-runner.yaml", "add", "--arg", "a=2", "--arg", "b=3", cwd=folder)
    assert (done.returncode, done.stdout, done.stderr) == (0, "5\n", "")


def test_generated_test_passes(starter: tuple[Path, RunnerProcess]) -> None:
    folder, _ = starter
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_server.py"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "tools.py").write_text("mine = 1\n")
    done = cli(tmp_path, "init", str(tmp_path))
    assert done.returncode == 1
    assert f"{tmp_path / 'tools.py'} already exists" in done.stderr
    assert "wrote nothing" in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["tools.py"]  # nothing else written
    assert (tmp_path / "tools.py").read_text() == "mine = 1\n"


def test_list_human_and_json(starter: tuple[Path, RunnerProcess]) -> None:
    folder, _ = starter
    human = cli(folder, "list", "mcp-runner.yaml")
    assert human.returncode == 0, human.stderr
    assert human.stdout.splitlines() == [
        "tools (1):",
        "  add(a: integer, b: integer)  Add numbers - Add two numbers.",
        "resources (1):",
        "  greeting://{name}  [text/plain]  A personalized greeting.",
        "prompts (1):",
        "  review(code, focus?)  Ask for a review of a piece of code.",
    ]
    data = json.loads(cli(folder, "list", "mcp-runner.yaml", "--json").stdout)
    assert [t["name"] for t in data["tools"]] == ["add"]
    assert data["tools"][0]["inputSchema"]["required"] == ["a", "b"]
    assert [t["uriTemplate"] for t in data["resourceTemplates"]] == ["greeting://{name}"]
    assert data["prompts"][0]["arguments"][0] == {"name": "code", "required": True}


def test_call_json_errors_and_exit_codes(starter: tuple[Path, RunnerProcess]) -> None:
    folder, _ = starter
    done = cli(folder, "call", "mcp-runner.yaml", "add", "--args", '{"a": 40}', "--arg", "b=2", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["structuredContent"] == {"result": 42}

    tool_error = cli(folder, "call", "mcp-runner.yaml", "add", "--args", '{"a": 1}')  # b missing: isError
    assert tool_error.returncode == 1
    assert tool_error.stdout == "" and tool_error.stderr.startswith("error: ")

    unknown = cli(folder, "call", "mcp-runner.yaml", "nope")
    assert unknown.returncode == 1 and "the server has no tool 'nope' (its tools: " in unknown.stderr

    not_a_number = cli(folder, "call", "mcp-runner.yaml", "add", "--arg", "a=two", "--arg", "b=1")
    assert not_a_number.returncode == 2
    assert "--arg a=two: 'a' is an integer" in not_a_number.stderr
    typo = cli(folder, "call", "mcp-runner.yaml", "add", "--arg", "c=1")
    assert typo.returncode == 2 and "has no parameter 'c' (it takes: a, b)" in typo.stderr


def test_read_and_prompt(starter: tuple[Path, RunnerProcess]) -> None:
    folder, _ = starter
    read = cli(folder, "read", "mcp-runner.yaml", "greeting://Ada")
    assert (read.returncode, read.stdout) == (0, "Hello, Ada!\n")
    read_json = json.loads(cli(folder, "read", "mcp-runner.yaml", "greeting://Ada", "--json").stdout)
    assert read_json["contents"] == [{"uri": "greeting://Ada", "mimeType": "text/plain", "text": "Hello, Ada!"}]
    missing = cli(folder, "read", "mcp-runner.yaml", "nope://x")
    assert missing.returncode == 1 and "Unknown resource" in missing.stderr

    prompt = cli(folder, "prompt", "mcp-runner.yaml", "review", "--arg", "code=x = 1", "--arg", "focus=speed")
    assert prompt.returncode == 0, prompt.stderr
    assert prompt.stdout.splitlines() == [
        "# Ask for a review of a piece of code.",
        "[user] Please review this code for speed:",
        "",
        "x = 1",
    ]
    got = json.loads(cli(folder, "prompt", "mcp-runner.yaml", "review", "--arg", "code=y", "--json").stdout)
    assert got["messages"][0]["content"]["text"].endswith("y")


def test_url_and_token_flags(signin_runner: tuple[RunnerProcess, Issuer], tmp_path: Path) -> None:
    """An MCP SignIn server (real RS256 tokens from the loopback JWKS server): the token is the caller's."""
    runner, issuer = signin_runner
    token = issuer.token()
    done = cli(tmp_path, "call", runner.url, "add", "--arg", "a=1", "--arg", "b=2", "--token", token)
    assert (done.returncode, done.stdout) == (0, "3\n"), done.stderr
    env = {"MCP_APP_ID": "test-app", "MCP_TOKEN": token}  # the manifest names the app; the token is the caller's
    from_env = cli(tmp_path, "list", str(runner.manifest), "--url", runner.url, "--json", env=env)
    assert [t["name"] for t in json.loads(from_env.stdout)["tools"]] == ["add"]

    bad = issuer.token(aud="https://elsewhere.example/mcp")
    refused = cli(tmp_path, "list", runner.url, "--token", bad)
    assert refused.returncode == 3
    assert "refused the token: HTTP 401" in refused.stderr
    assert bad not in refused.stderr + refused.stdout  # never echoed

    needs = cli(tmp_path, "list", str(runner.manifest), env={"MCP_APP_ID": "test-app", "MCP_TOKEN": ""})
    assert needs.returncode == 3 and "pass a token with --token or MCP_TOKEN" in needs.stderr

    down = cli(tmp_path, "list", "http://127.0.0.1:9/mcp")
    assert down.returncode == 3 and "cannot connect to http://127.0.0.1:9/mcp" in down.stderr


class Recorder(ThreadingHTTPServer):
    """A loopback reverse proxy in front of a real server that records the Authorization header of each request."""

    def __init__(self, upstream: str, handshake_only: bool = False) -> None:
        self.upstream = upstream.rstrip("/")
        self.handshake_only = handshake_only
        self.seen: list[str | None] = []
        self.methods: list[str] = []
        super().__init__(("127.0.0.1", 0), _Forward)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/mcp"


class _Forward(BaseHTTPRequestHandler):
    server: Recorder

    def _forward(self) -> None:
        self.server.seen.append(self.headers.get("Authorization"))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if body:
            self.server.methods.append(json.loads(body).get("method", "(answer)"))
        if self.server.handshake_only and (refusal := _as_before_2026(self.command, self.headers, body)):
            self.send_response(refusal[0])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(refusal[1])))
            self.end_headers()
            self.wfile.write(refusal[1])
            return
        skip = {"host", "content-length", "connection"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
        answer = httpx2.request(self.command, self.server.upstream, headers=headers, content=body, timeout=30)
        self.send_response(answer.status_code)
        for name, value in answer.headers.multi_items():
            if name.lower() not in {"content-length", "transfer-encoding", "connection"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    do_GET = do_POST = do_DELETE = _forward  # noqa: N815 (http.server's naming)

    def log_message(self, *args: Any) -> None:
        pass


def _as_before_2026(method: str, headers: Any, body: bytes) -> tuple[int, bytes] | None:
    """What a server from before 2026-07-28 (SDK 1.x, stateful) answers to what it does not speak:
    a POST without a session that is not `initialize` is a 400, and it offers no GET stream (405)."""
    if method == "GET":
        return 405, b""
    if method == "POST" and not headers.get("mcp-session-id") and json.loads(body).get("method") != "initialize":
        error = {"code": -32600, "message": "Bad Request: Missing session ID"}
        return 400, json.dumps({"jsonrpc": "2.0", "id": "server-error", "error": error}).encode()
    return None


@pytest.fixture
def recorder() -> Iterator[Callable[..., Recorder]]:
    started: list[Recorder] = []

    def start(upstream: str, handshake_only: bool = False) -> Recorder:
        started.append(Recorder(upstream, handshake_only))
        threading.Thread(target=started[-1].serve_forever, daemon=True).start()
        return started[-1]

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def test_a_token_goes_only_to_a_server_that_asks(
    signin_runner: tuple[RunnerProcess, Issuer], tmp_path: Path, recorder: Callable[..., Recorder]
) -> None:
    """MCP_TOKEN (or --token) never reaches a server without auth; a URL's server gets it after its 401 challenge."""
    (tmp_path / "tools.py").write_text("def add(a: int, b: int) -> int:\n    return a + b\n")
    (tmp_path / "open.yaml").write_text("name: open\ntools:\n  - function: tools:add\n")
    open_server = RunnerProcess(tmp_path / "open.yaml").start()
    try:
        proxy = recorder(open_server.url)
        secret = "not-for-this-server"
        for args in (("open.yaml", "--url", proxy.url), (proxy.url, "--token", secret)):
            done = cli(tmp_path, "call", *(str(tmp_path / a) if a == "open.yaml" else a for a in args), "add",
                       "--arg", "a=1", "--arg", "b=2", env={"MCP_TOKEN": secret})  # fmt: skip
            assert (done.returncode, done.stdout) == (0, "3\n"), done.stderr
        assert proxy.seen and set(proxy.seen) == {None}
    finally:
        open_server.stop()

    runner, issuer = signin_runner
    token = issuer.token()
    proxy = recorder(runner.url)
    done = cli(tmp_path, "list", proxy.url, "--json", env={"MCP_TOKEN": token})
    assert done.returncode == 0, done.stderr
    assert [t["name"] for t in json.loads(done.stdout)["tools"]] == ["add"]
    # asked once (401 with a Bearer challenge), then sent with the retry and every later request
    assert proxy.seen[0] is None and set(proxy.seen[1:]) == {f"Bearer {token}"}


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_commands_with_a_handshake_era_server(
    starter: tuple[Path, RunnerProcess], recorder: Callable[..., Recorder], mode: str
) -> None:
    """Behind a proxy that answers as a server from before 2026-07-28: `auto` falls back to the handshake;
    `--mode legacy` goes straight to it. list, call, read and prompt all work, in one session each."""
    folder, served = starter
    proxy = recorder(served.url, handshake_only=True)
    token = cli(folder, "token", "mcp-runner.yaml").stdout.strip()  # for the server behind the proxy
    flags = ("--url", proxy.url, "--mode", mode, "--token", token)
    listed = cli(folder, "list", "mcp-runner.yaml", *flags, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [t["name"] for t in json.loads(listed.stdout)["tools"]] == ["add"]
    called = cli(folder, "call", "mcp-runner.yaml", "add", "--arg", "a=2", "--arg", "b=3", *flags)
    assert (called.returncode, called.stdout) == (0, "5\n"), called.stderr
    read = cli(folder, "read", "mcp-runner.yaml", "greeting://Ada", *flags)
    assert (read.returncode, read.stdout) == (0, "Hello, Ada!\n"), read.stderr
    prompted = cli(folder, "prompt", "mcp-runner.yaml", "review", "--arg", "code=x", *flags)
    assert prompted.returncode == 0 and "x" in prompted.stdout, prompted.stderr
    assert {"initialize", "tools/call", "resources/read", "prompts/get"} <= set(proxy.methods)
    assert ("server/discover" in proxy.methods) == (mode == "auto")  # auto probed, was refused, fell back


def test_arg_null_is_null_where_the_schema_allows_null() -> None:
    """`--arg status=null` on a nullable enum sent the string "null", which the enum refused (a newcomer's pass)."""
    from runner.cli.commands.arguments import coerce

    schema = {
        "type": "object",
        "properties": {
            "status": {"anyOf": [{"enum": ["available", "sold"], "type": "string"}, {"type": "null"}]},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "code": {"type": "string"},
        },
    }
    assert coerce("t", schema, {"status": "null", "note": "null", "code": "null"}) == {
        "status": None,
        "note": None,
        "code": "null",  # a string-only parameter takes the text as written
    }
    assert coerce("t", schema, {"status": "sold", "code": "007"}) == {"status": "sold", "code": "007"}
