"""The seed-style Python API: decorators on FastMCPSignInWrapper, then .run(transport="streamable-http")."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT, Issuer, JWKSServer, free_port, mcp_client, post_initialize, wait_for_port

pytestmark = pytest.mark.anyio
SCRIPT = ROOT / "tests" / "apps" / "seed_main.py"


def test_public_imports() -> None:
    from mcp.server.mcpserver import MCPServer

    from runner import FastMCPSignInWrapper, JWKSTokenVerifier

    assert issubclass(FastMCPSignInWrapper, MCPServer)
    assert JWKSTokenVerifier.__module__ == "runner.auth.verifier"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_seed_style_server(jwks: JWKSServer, mode: str) -> None:
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    env = {
        **os.environ,
        "MCP_APP_ID": jwks.app_id,
        "MCP_APP_RESOURCE": resource,
        "MCP_BASE_URL": jwks.base_url,
        "PORT": str(port),
    }
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_port(port, proc=proc)
        issuer = Issuer(jwks.base_url, resource, jwks.keys[0])
        assert post_initialize(resource, None).status_code == 401
        assert post_initialize(resource, issuer.token(aud="http://elsewhere/mcp")).status_code == 401
        async with mcp_client(resource, issuer.token(), mode) as client:
            assert (await client.call_tool("add", {"a": 2, "b": 2})).structured_content == {"result": 4}
            greeting = await client.read_resource("greeting://Bo")
            assert greeting.contents[0].text == "Hello, Bo!"  # type: ignore[union-attr]
            prompt = await client.get_prompt("greet_user", {"name": "Bo"})
            assert prompt.messages[0].content.text == "Please write a friendly greeting for someone named Bo."  # type: ignore[union-attr]
    finally:
        proc.terminate()
        proc.communicate(timeout=15)


def test_missing_app_id_fails_closed() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_APP")}
    result = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "app_id is required" in result.stderr


def test_constructor_rejects_half_configured_auth() -> None:
    from runner import FastMCPSignInWrapper

    with pytest.raises(ValueError, match="resource is required"):
        FastMCPSignInWrapper("x", app_id="app")
    open_server = FastMCPSignInWrapper("x", allow_no_auth=True)
    assert open_server.guard is None
    with pytest.raises(ValueError, match="app_id is required"):
        FastMCPSignInWrapper("x", resource="http://127.0.0.1/mcp", allow_no_auth=True)
