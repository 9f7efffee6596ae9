"""A token the CLI mints for a manifest's server goes to that server only, never to a `--url` naming another.

The other server here is a recording proxy in front of the real one (tests/test_commands.py `Recorder`): the
worst case, since whatever token it receives it can replay at the real server.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import RunnerProcess, run_main
from tests.test_commands import Recorder

MANIFEST = """name: urltoken
signin:
  app_id: local
  resource: {url}
tools:
  - {{function: 'tools:secret_report', scopes: [admin]}}
  - {{function: 'tools:hello'}}
  - {{function: 'tools:granted', scopes: [reports]}}
  - {{function: 'tools:operate', scopes: [ops]}}
"""

TOOLS = """from mcp.server.auth.middleware.auth_context import get_access_token


def secret_report() -> str:
    return 'the admin-only report'


def hello() -> str:
    return 'hi'


def granted() -> str:
    token = get_access_token()
    return ' '.join(sorted(token.scopes)) if token else 'no token'


def operate() -> str:
    return 'done'
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    folder = tmp_path_factory.mktemp("urltoken")
    (folder / "tools.py").write_text(TOOLS)
    runner = RunnerProcess(folder / "m.yaml")
    runner.manifest.write_text(MANIFEST.format(url=runner.url))
    runner.start()
    yield runner
    runner.stop()


@pytest.fixture(scope="module")
def recording(served: RunnerProcess) -> Iterator[Recorder]:
    """Another server: it asks for a token (401 Bearer, as the real one behind it does) and records what it gets."""
    proxy = Recorder(served.url)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


@pytest.fixture
def other(recording: Recorder) -> Recorder:
    """The other server, with nothing recorded yet."""
    recording.seen.clear()
    recording.methods.clear()
    return recording


@pytest.mark.parametrize("command", [["list"], ["call", "secret_report"], ["read", "file:///x"], ["prompt", "p"]])
def test_no_minted_token_for_another_url(served: RunnerProcess, other: Recorder, command: list[str]) -> None:
    done = run_main(command[0], str(served.manifest), *command[1:], "--url", other.url, env={"MCP_TOKEN": ""})
    assert sum(1 for header in other.seen if header) == 0  # before the fix: 2 requests with the minted token
    assert other.seen == []  # not even a request without one: the command stops before connecting
    assert done.returncode == 2, done.stderr
    assert f"--url {other.url} is not the server of" in done.stderr
    assert "pass a token for this URL with --token or MCP_TOKEN" in done.stderr


def test_a_given_token_still_goes_to_another_url(served: RunnerProcess, other: Recorder) -> None:
    """With --token the user chose what to send: held back until the other server asks, then sent (bearer.py)."""
    given = run_main("token", str(served.manifest))
    assert given.returncode == 0, given.stderr
    token = given.stdout.strip()
    done = run_main("call", str(served.manifest), "hello", "--url", other.url, env={"MCP_TOKEN": token})
    assert (done.returncode, done.stdout) == (0, "hi\n"), done.stderr
    assert other.seen[0] is None and set(other.seen[1:]) == {f"Bearer {token}"}


def test_own_server_named_by_url_gets_a_minted_token(served: RunnerProcess) -> None:
    done = run_main("call", str(served.manifest), "secret_report", "--url", served.url, env={"MCP_TOKEN": ""})
    assert (done.returncode, done.stdout) == (0, "the admin-only report\n"), done.stderr


def test_a_minted_token_for_call_carries_the_tools_scopes_only(served: RunnerProcess) -> None:
    """`call` mints with what the manifest names for the tool (before: every scope, `admin ops reports`)."""
    done = run_main("call", str(served.manifest), "granted", env={"MCP_TOKEN": ""})
    assert (done.returncode, done.stdout) == (0, "reports\n"), done.stderr
    listed = run_main("list", str(served.manifest), "--json", env={"MCP_TOKEN": ""})  # list: every scope, all shown
    assert listed.returncode == 0, listed.stderr
    assert "operate" in listed.stdout and "secret_report" in listed.stdout


def test_install_never_advises_a_minted_token_for_another_url(served: RunnerProcess, tmp_path: Path) -> None:
    """An HTTP entry for a --url that is not the manifest's server: its token is that server's, not `mcp-runner token`'s
    (which mints for the manifest's server: the client would hand it to the other one)."""
    config = tmp_path / "claude.json"
    other = "https://staging.example/mcp"
    args = ["install", "claude-code", str(served.manifest), "--transport", "http", "--config", str(config)]
    done = run_main(*args, "--url", other)
    assert done.returncode == 0, done.stderr
    assert "mcp-runner token " + str(served.manifest) + ")" not in done.stderr  # before: export MCP_TOKEN=$(...)
    assert f"$MCP_TOKEN must hold a token that {other} accepts, from its issuer" in done.stderr
    own = run_main(*args, "--url", served.url, "--force")  # its own server: the local issuer's token is the one
    assert own.returncode == 0, own.stderr
    assert f"export MCP_TOKEN=$(mcp-runner token {served.manifest})" in own.stderr
