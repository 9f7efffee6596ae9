"""The local issuer end to end through the CLI: serve, `token`, then a real call."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import jwt
import pytest

from tests.conftest import copy_example
from tests.helpers import RunnerProcess, free_port, loopback_get, mcp_client, post_initialize, run_cli, run_main

pytestmark = pytest.mark.anyio


async def test_token_then_call(tmp_path: Path) -> None:
    manifest = copy_example(tmp_path)
    port = free_port()
    # The manifest's default resource names port 8000; serve elsewhere with the resource to match.
    env = {"MCP_APP_RESOURCE": f"http://127.0.0.1:{port}/mcp"}
    runner = RunnerProcess(manifest, port=port, env=env, log=tmp_path / "server.log").start()
    try:
        minted = run_cli(
            "token",
            str(manifest),
            "--port",
            str(port),
            "--scope",
            "read",
            "--scope",
            "write",
            "--ttl",
            "120",
            "--subject",
            "ann",
            cwd=tmp_path,
            env=env,
        )
        assert minted.returncode == 0, minted.stderr
        token = minted.stdout.strip()
        assert minted.stdout == token + "\n"  # only the token on stdout
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["sub"] == "ann" and claims["scope"] == "read write" and claims["exp"] - claims["iat"] == 120
        assert claims["iss"].startswith("urn:mcp-runner:local:") and claims["aud"] == env["MCP_APP_RESOURCE"]

        async with mcp_client(runner.url, token) as client:
            assert (await client.call_tool("add", {"a": 1, "b": 2})).structured_content == {"result": 3}
            greeting = await client.read_resource("greeting://Ann")
            assert greeting.contents[0].text == "Hello, Ann!"  # type: ignore[union-attr]
            prompt = await client.get_prompt("greet_user", {"name": "Ann", "style": "casual"})
            assert "casual" in prompt.messages[0].content.text  # type: ignore[union-attr]

        # The server verified those calls with the key set it serves, never fetching it from itself (issue 12:
        # that fetch was most of what auth added to start-up). Checked before this test's own fetch below.
        assert "GET /apps/local/discovery/v2.0/keys" not in runner.logged()

        assert post_initialize(runner.url, None).status_code == 401
        # A token minted for another audience (port) is refused by the same key's server.
        other = run_main("token", str(manifest), "--port", "9", cwd=tmp_path).stdout.strip()
        assert post_initialize(runner.url, other).status_code == 401

        jwks = loopback_get(f"http://127.0.0.1:{port}/apps/local/discovery/v2.0/keys").json()
        assert [k["kid"] for k in jwks["keys"]] == [jwt.get_unverified_header(token)["kid"]]
        assert "d" not in jwks["keys"][0]  # public part only
    finally:
        err = runner.stop()
    # The banner's ready token (once: the connect line names none) and connect command; no private key material.
    assert "token:     ey" in err and "connect:   mcp-runner install claude-code" in err
    assert err.count(".ey") == 1  # the token's payload, on the token line only
    assert "PRIVATE KEY" not in err
    assert "note:" not in err  # the resource matches the served URL here
    key = tmp_path / ".mcp-runner" / "local-issuer-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    # `git add -A` in the manifest's folder leaves the key (and the server records) out.
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    staged = subprocess.run([*git, "ls-files"], check=True, capture_output=True, text=True).stdout.split()
    assert "example.yaml" in staged and not [name for name in staged if ".mcp-runner" in name], staged


def test_banner_warns_when_the_resource_is_not_the_served_url(tmp_path: Path) -> None:
    manifest = copy_example(tmp_path)
    port = free_port()
    runner = RunnerProcess(manifest, port=port, env={"MCP_APP_RESOURCE": ""}).start()  # default :8000
    err = runner.stop()
    expected = f"signin.resource is http://127.0.0.1:8000/mcp but this server is at http://127.0.0.1:{port}/mcp"
    assert f"note:      {expected}" in err


def test_banner_token_works_with_defaults(tmp_path: Path) -> None:
    """No environment at all: example.yaml runs with the local issuer and its printed token."""
    manifest = copy_example(tmp_path)
    port = free_port()
    runner = RunnerProcess(manifest, port=port, env={"MCP_APP_RESOURCE": f"http://127.0.0.1:{port}/mcp"}).start()
    err = runner.stop()
    assert f"URL:       http://127.0.0.1:{port}/mcp" in err
    assert "tools:     add" in err and "resources: greeting://{name}" in err and "prompts:   greet_user" in err


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1"])
def test_local_issuer_refuses_non_loopback(tmp_path: Path, host: str) -> None:
    manifest = copy_example(tmp_path)
    result = run_cli("serve", str(manifest), "--host", host, "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 2
    assert "the local issuer only serves on loopback" in result.stderr


def test_no_auth_refuses_non_loopback(tmp_path: Path) -> None:
    manifest = tmp_path / "open.yaml"
    manifest.write_text("name: open\nserver:\n  host: 0.0.0.0\n")
    result = run_cli("serve", str(manifest), "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 2
    assert f"{manifest}:3:9: refusing to serve without auth on '0.0.0.0'" in result.stderr


def test_token_refuses_for_real_signin_app(tmp_path: Path) -> None:
    manifest = copy_example(tmp_path)
    result = run_main("token", str(manifest), cwd=tmp_path, env={"MCP_APP_ID": "real-app"})
    assert result.returncode == 2 and result.stdout == ""
    assert "mints only for the local issuer" in result.stderr
