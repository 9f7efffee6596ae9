"""The client commands (`token`, `list`, `call`, ...) against a manifest with upstreams and APIs.

One real local-issuer server for the module, with a stdio upstream (tests/apps/plain_upstream.py) and an
OpenAPI entry, whose credentials and locations come from `${VAR}`s without a default, set for the server
only: a client's shell has none of them (docs/clients.md). The CLI runs in this process (`run_main`),
over real HTTP with real tokens.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from runner.manifest.model import load
from tests.helpers import ROOT, RunnerProcess, run_main, wait_for_health

PLAIN = ROOT / "tests" / "apps" / "plain_upstream.py"
SECRETS = {  # the server's own credentials: set for `serve` only
    "GW_STATE_KEY": "k" * 40,
    "GW_PLAIN_MARK": "plain-secret-5d1e",
    "GW_PETS_KEY": "pets-secret-9c2b",
    "GW_SPEC": str(ROOT / "tests" / "apps" / "openapi" / "pets.yaml"),
    "GW_API_URL": "http://127.0.0.1:9/v1",
}
MANIFEST = f"""\
name: gateway
signin: {{app_id: local}}
server:
  request_state_keys: ["${{GW_STATE_KEY}}"]
tools:
  - function: local_tools:hello
upstreams:
  - name: plain
    command: [{sys.executable}, {PLAIN}]
    env: {{PLAIN_MARK: "${{GW_PLAIN_MARK}}"}}
    include: [add, whoami]
    scopes: [plain.use]
openapi:
  - name: pets
    spec: ${{GW_SPEC}}
    base_url: ${{GW_API_URL}}
    headers: {{X-Api-Key: "${{GW_PETS_KEY}}"}}
    include: [lookup]
    scopes: [pets.read]
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    folder = tmp_path_factory.mktemp("gateway")
    (folder / "local_tools.py").write_text("def hello() -> str:\n    return 'hi'\n")
    (folder / "gateway.yaml").write_text(MANIFEST)
    runner = RunnerProcess(folder / "gateway.yaml", env=SECRETS).start()
    yield runner
    runner.stop()


def test_client_commands_need_none_of_the_servers_secrets(gateway: RunnerProcess) -> None:
    assert not set(SECRETS) & set(os.environ)  # the client's shell: none of them
    up = lambda h: h["upstreams"]["plain"]["state"] == "connected"  # noqa: E731
    anyio.run(wait_for_health, gateway.health_url, up, "the upstream connected")
    manifest = str(gateway.manifest)
    token = run_main("token", manifest)
    assert token.returncode == 0, token.stderr
    listed = run_main("list", manifest)
    assert listed.returncode == 0, listed.stderr
    assert all(name in listed.stdout for name in ("hello", "plain_add", "plain_whoami", "pets_lookup")), listed.stdout
    added = run_main("call", manifest, "plain_add", "--arg", "a=6", "--arg", "b=7")
    assert added.returncode == 0 and '"total": 13' in added.stdout, added.stderr
    installed = run_main("install", "claude-code", manifest, cwd=gateway.manifest.parent)  # writes .mcp.json there
    assert installed.returncode == 0, installed.stderr
    said = token.stderr + listed.stderr + added.stderr + listed.stdout + added.stdout
    assert not any(value in said for value in SECRETS.values())
    # `check` reads the whole manifest: each missing variable is a located error, as before.
    checked = run_main("check", "--offline", manifest)
    assert checked.returncode == 2
    for name in SECRETS:
        assert f"environment variable {name!r} is not set" in checked.stderr, checked.stderr
    assert f"{manifest}:4:25: " in checked.stderr and f"{manifest}:17:" in checked.stderr  # located


def test_a_client_load_never_reads_the_servers_variables(tmp_path: Path) -> None:
    """Not even when they are set: what a client command never reads, it can never print or send."""
    asked: list[str] = []

    class Shell(dict[str, str]):
        def get(self, key: str, default: Any = None) -> Any:
            asked.append(key)
            return super().get(key, default)

    (tmp_path / "gateway.yaml").write_text(MANIFEST)
    manifest, _ = load(tmp_path / "gateway.yaml", Shell(SECRETS), client=True)
    assert asked == [] and [up.name for up in manifest.upstreams] == ["plain"]
    assert manifest.upstreams[0].scopes == ["plain.use"] and manifest.openapi[0].headers == {}
    served, _ = load(tmp_path / "gateway.yaml", Shell(SECRETS))  # serve and check read them all
    assert sorted(asked) == sorted(SECRETS) and served.openapi[0].headers == {"X-Api-Key": SECRETS["GW_PETS_KEY"]}


def test_an_upstreams_or_apis_missing_scope_is_named_with_arg_and_args(gateway: RunnerProcess) -> None:
    manifest = str(gateway.manifest)
    token = run_main("token", manifest).stdout.strip()  # signin.scopes only: neither plain.use nor pets.read
    for how in (["--arg", "a=1", "--arg", "b=2"], ["--args", '{"a": 1, "b": 2}']):
        refused = run_main("call", manifest, "plain_add", *how, "--token", token)
        assert refused.returncode == 3, refused.stderr
        assert "tool 'plain_add' (from upstream 'plain') needs scope plain.use, which the token lacks" in refused.stderr
        assert f"`mcp-runner token {manifest} --scope plain.use`" in refused.stderr
        assert "has no tool" not in refused.stderr and token not in refused.stderr
    api = run_main("call", manifest, "pets_lookup", "--arg", "name=x", "--token", token)
    assert api.returncode == 3, api.stderr
    assert "tool 'pets_lookup' (from openapi 'pets') needs scope pets.read" in api.stderr
    assert "--scope pets.read`" in api.stderr
    excluded = run_main("call", manifest, "plain_refuse", "--args", "{}", "--token", token)  # not in include
    assert excluded.returncode == 1 and "the server has no tool 'plain_refuse' (its tools: " in excluded.stderr


def test_a_connection_reset_names_its_reason() -> None:
    """A peer that resets the connection (as a server killed mid-request does) gives httpx2 an error with no
    message: the CLI said `cannot connect to URL:  (is ...)`."""
    listener = socket.create_server(("127.0.0.1", 0))

    def reset_each() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)  # the request arrived
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST

    thread = threading.Thread(target=reset_each, daemon=True)
    thread.start()
    try:
        done = run_main("list", f"http://127.0.0.1:{listener.getsockname()[1]}/mcp")
    finally:
        thread.join(timeout=10)
        listener.close()
    assert done.returncode == 3
    assert ": ReadError (the connection was closed or reset, with no reason given)" in done.stderr, done.stderr
