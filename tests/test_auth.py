"""MCP SignIn auth end to end: the runner as a process, a real JWKS server, real RS256 tokens."""

from __future__ import annotations

import time

import httpx2
import jwt
import pytest

from tests.helpers import Issuer, Key, RunnerProcess, loopback_get, mcp_client, post_initialize, unsigned_token

pytestmark = pytest.mark.anyio


def metadata_url(runner: RunnerProcess) -> str:
    return f"http://127.0.0.1:{runner.port}/.well-known/oauth-protected-resource/mcp"


def test_valid_token_is_accepted(signin_runner: tuple[RunnerProcess, Issuer]) -> None:
    runner, issuer = signin_runner
    response = post_initialize(runner.url, issuer.token())
    assert response.status_code == 200, response.text
    assert "Redmine MCP server" in response.text


def test_missing_token_is_401_without_error_code(signin_runner: tuple[RunnerProcess, Issuer]) -> None:
    runner, _ = signin_runner
    response = post_initialize(runner.url, None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == f'Bearer resource_metadata="{metadata_url(runner)}"'


def _bad_tokens(issuer: Issuer) -> dict[str, str]:
    now = int(time.time())
    attacker = Key.new(issuer.key.kid)  # an attacker's key that claims the real kid
    return {
        "expired": issuer.token(exp=now - 3600, iat=now - 7200),
        "wrong audience": issuer.token(aud="http://127.0.0.1:1/other"),
        "wrong issuer": issuer.token(iss="https://evil.example"),
        "unknown kid": issuer.token(key=Key.new("not-in-jwks")),
        "attacker key with known kid": issuer.token(key=attacker),
        "alg none": unsigned_token({"alg": "none", "kid": issuer.key.kid, "typ": "JWT"}, issuer.claims()),
        "HS256 keyed with the public key": unsigned_token(
            {"alg": "HS256", "kid": issuer.key.kid, "typ": "JWT"}, issuer.claims(), secret=issuer.key.public_pem()
        ),
        "id token instead of access token": issuer.token(token_type="id"),
        "no token_type": issuer.token(token_type=None),
        "no exp": issuer.token(exp=None),
        "no client_id": issuer.token(client_id=None),
        "garbage": "not-a-jwt",
        "no kid": jwt.encode(issuer.claims(), issuer.key.private, algorithm="RS256"),
    }


CASES = list(_bad_tokens(Issuer("http://x", "http://y", Key.new("k"))))


@pytest.mark.parametrize("case", CASES)
def test_bad_token_is_401_invalid_token(signin_runner: tuple[RunnerProcess, Issuer], case: str) -> None:
    runner, issuer = signin_runner
    response = post_initialize(runner.url, _bad_tokens(issuer)[case])
    assert response.status_code == 401, (case, response.text)
    header = response.headers["www-authenticate"]
    assert header.startswith('Bearer error="invalid_token"'), header
    assert f'resource_metadata="{metadata_url(runner)}"' in header


def test_non_bearer_scheme_is_401(signin_runner: tuple[RunnerProcess, Issuer]) -> None:
    runner, issuer = signin_runner
    response = post_initialize(runner.url, None, raw_header=f"Basic {issuer.token()}")
    assert response.status_code == 401


def test_protected_resource_metadata(signin_runner: tuple[RunnerProcess, Issuer]) -> None:
    runner, issuer = signin_runner
    document = loopback_get(metadata_url(runner)).json()
    assert document["resource"] == runner.url
    assert document["authorization_servers"] == [f"{issuer.base_url}/test-app"]
    assert document["bearer_methods_supported"] == ["header"]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_full_session_with_token(signin_runner: tuple[RunnerProcess, Issuer], mode: str) -> None:
    runner, issuer = signin_runner
    async with mcp_client(runner.url, issuer.token(), mode) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["add"]
        result = await client.call_tool("add", {"a": 20, "b": 22})
        assert result.structured_content == {"result": 42}


async def test_session_cannot_be_used_by_another_user(signin_runner: tuple[RunnerProcess, Issuer]) -> None:
    runner, issuer = signin_runner
    session = post_initialize(runner.url, issuer.token(sub="alice")).headers["mcp-session-id"]

    def ping_as(subject: str) -> httpx2.Response:
        headers = {
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
            "Authorization": f"Bearer {issuer.token(sub=subject)}",
            "mcp-session-id": session,
            "mcp-protocol-version": "2025-06-18",
        }
        return httpx2.post(runner.url, json={"jsonrpc": "2.0", "id": 2, "method": "ping"}, headers=headers)

    assert ping_as("mallory").status_code == 404
    own = ping_as("alice")
    assert own.status_code in (200, 202), own.text
