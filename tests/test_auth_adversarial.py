"""The verifier and the gate under attack and outage: the runner as a process, a switchable JWKS server on loopback.

Every case asserts the exact HTTP status and the exact WWW-Authenticate header.
"""

from __future__ import annotations

import base64
import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.helpers import (
    INITIALIZE,
    Issuer,
    JWKSServer,
    Key,
    RunnerProcess,
    b64url,
    loopback_get,
    mcp_client,
    unsigned_token,
)

pytestmark = pytest.mark.anyio

MODULE = """
def echo(text: str) -> str:
    return text


def delete_all() -> str:
    return "deleted"


def whoami(user: str, client: str, note: str = "") -> str:
    return f"{user}|{client}|{note}"


def my_scopes(scopes: list[str]) -> str:
    return " ".join(scopes)


def secret(name: str) -> str:
    return f"secret {name}"


def public() -> str:
    return "public"


def admin_prompt(topic: str) -> str:
    return f"admin about {topic}"
"""


def manifest(jwks: JWKSServer, resource: str) -> str:
    return textwrap.dedent(f"""
        name: guarded
        signin:
          app_id: {jwks.app_id}
          base_url: {jwks.base_url}
          resource: {resource}
          scopes: [mcp]
        tools:
          - function: guarded:echo
          - function: guarded:delete_all
            scopes: [admin, write]
          - function: guarded:whoami
            bind: {{user: sub, client: client_id}}
          - function: guarded:my_scopes
            bind: {{scopes: scope}}
        resources:
          - uri: secret://{{name}}
            function: guarded:secret
            scopes: [secrets]
          - uri: info://public
            function: guarded:public
        prompts:
          - function: guarded:admin_prompt
            scopes: [admin]
    """)


class Guarded:
    def __init__(self, folder: Path, jwks: JWKSServer) -> None:
        self.jwks = jwks
        self.runner = RunnerProcess(folder / "guarded.yaml")
        (folder / "guarded.py").write_text(MODULE)
        (folder / "guarded.yaml").write_text(manifest(jwks, self.runner.url))
        self.issuer = Issuer(jwks.base_url, self.runner.url, jwks.keys[0])

    @property
    def metadata(self) -> str:
        return f"http://127.0.0.1:{self.runner.port}/.well-known/oauth-protected-resource/mcp"

    def token(self, **claims: Any) -> str:
        claims.setdefault("scope", "mcp")
        return self.issuer.token(**claims)

    def post(self, token: str | None, body: Any = None, raw: str | None = None) -> httpx2.Response:
        headers: dict[str, str | bytes] = {
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
        }
        if raw is not None:
            headers["Authorization"] = raw
        elif token is not None:
            headers["Authorization"] = f"Bearer {token}".encode()  # raw UTF-8 bytes for the unicode cases
        return httpx2.post(self.runner.url, json=body or INITIALIZE, headers=headers, timeout=60)

    def invalid(self) -> str:
        return (
            f'Bearer error="invalid_token", error_description="The access token is not valid", '
            f'resource_metadata="{self.metadata}"'
        )

    def forbidden(self, lacking: str, needed: str) -> str:
        return (
            f'Bearer error="insufficient_scope", error_description="Missing scope: {lacking}", '
            f'scope="{needed}", resource_metadata="{self.metadata}"'
        )


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    jwks = JWKSServer(app_id="adv-app", keys=[Key.new("good-kid")]).start()
    g = Guarded(tmp_path_factory.mktemp("guarded"), jwks)
    g.runner.start()
    yield g
    g.runner.stop()
    jwks.stop()


def sign_with(key: Any, alg: str, claims: dict[str, Any], header: dict[str, Any]) -> str:
    return jwt.encode(claims, key, algorithm=alg, headers=header)


def forged(g: Guarded) -> dict[str, str]:
    """Tokens that must be refused with 401 invalid_token."""
    now = int(time.time())
    good = g.jwks.keys[0]
    claims = g.issuer.claims(scope="mcp")
    attacker = Key.new(good.kid)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    pem = good.public_pem()
    cases: dict[str, str] = {
        "alg none": unsigned_token({"alg": "none", "kid": good.kid}, claims),
        "alg None": unsigned_token({"alg": "None", "kid": good.kid}, claims),
        "HS256 keyed with the public key": unsigned_token({"alg": "HS256", "kid": good.kid}, claims, secret=pem),
        "attacker RSA key claiming the real kid": g.issuer.token(key=attacker, scope="mcp"),
        "RS384 with the real key": sign_with(good.private, "RS384", claims, {"kid": good.kid}),
        "RS512 with the real key": sign_with(good.private, "RS512", claims, {"kid": good.kid}),
        "PS256 with the real key": sign_with(good.private, "PS256", claims, {"kid": good.kid}),
        "ES256 attacker key with the real kid": sign_with(ec_key, "ES256", claims, {"kid": good.kid}),
        "expired": g.token(exp=now - 3600, iat=now - 7200),
        "not yet valid (nbf)": g.token(nbf=now + 3600),
        "issued in the future (iat)": g.token(iat=now + 3600),
        "wrong audience": g.token(aud="http://127.0.0.1:1/mcp"),
        "audience list without ours": g.token(aud=["http://a.example/mcp", "http://b.example/mcp"]),
        "wrong issuer": g.token(iss="https://evil.example"),
        "issuer with an extra slash": g.token(iss=g.jwks.base_url + "/"),
        "id token": g.token(token_type="id"),
        "refresh token": g.token(token_type="refresh"),
        "oversized": g.token(padding="x" * 9000),
        "unicode garbage": "tøkén-✓.ü.ñ",
        "three random segments": "aGVsbG8.d29ybGQ.c2lnbmF0dXJl",
        "signature stripped": g.token().rsplit(".", 1)[0] + ".",
        "signature from another token": ".".join(
            g.token(sub="someone-else").split(".")[:2] + [g.token().split(".")[2]]
        ),
        "kid unknown": g.issuer.token(key=Key.new("never-published"), scope="mcp"),
        "kid not a string": unsigned_token({"alg": "RS256", "kid": 7}, claims),
        "no kid": jwt.encode(claims, good.private, algorithm="RS256"),
        "jku to an attacker key set": g.issuer.token(
            key=attacker, headers={"jku": "http://127.0.0.1:9/keys"}, scope="mcp"
        ),
        "embedded jwk of an attacker key": g.issuer.token(
            key=Key.new("embedded"), headers={"jwk": Key.new("embedded").jwk()}, scope="mcp"
        ),
        "x5u header": g.issuer.token(key=attacker, headers={"x5u": "http://127.0.0.1:9/cert"}, scope="mcp"),
    }
    for claim in ("exp", "iat", "sub", "client_id", "token_type", "iss", "aud"):
        cases[f"missing {claim}"] = g.token(**{claim: None})
    ill_typed: dict[str, Any] = {
        "exp": str(now + 600),
        "iat": str(now),
        "sub": 12345,
        "client_id": ["a"],
        "scope": ["mcp"],
        "nbf": True,
    }
    for claim, value in ill_typed.items():
        cases[f"{claim} ill-typed"] = g.token(**{claim: value})
    return cases


FORGED = [
    "alg none",
    "alg None",
    "HS256 keyed with the public key",
    "attacker RSA key claiming the real kid",
    "RS384 with the real key",
    "RS512 with the real key",
    "PS256 with the real key",
    "ES256 attacker key with the real kid",
    "expired",
    "not yet valid (nbf)",
    "issued in the future (iat)",
    "wrong audience",
    "audience list without ours",
    "wrong issuer",
    "issuer with an extra slash",
    "id token",
    "refresh token",
    "oversized",
    "unicode garbage",
    "three random segments",
    "signature stripped",
    "signature from another token",
    "kid unknown",
    "kid not a string",
    "no kid",
    "jku to an attacker key set",
    "embedded jwk of an attacker key",
    "x5u header",
    "missing exp",
    "missing iat",
    "missing sub",
    "missing client_id",
    "missing token_type",
    "missing iss",
    "missing aud",
    "exp ill-typed",
    "iat ill-typed",
    "sub ill-typed",
    "client_id ill-typed",
    "scope ill-typed",
    "nbf ill-typed",
]


@pytest.mark.parametrize("case", FORGED)
def test_forged_or_malformed_token_is_401(guarded: Guarded, case: str) -> None:
    response = guarded.post(forged(guarded)[case])
    assert response.status_code == 401, (case, response.text)
    assert response.headers["www-authenticate"] == guarded.invalid()


def test_every_forged_case_is_listed(guarded: Guarded) -> None:
    assert sorted(forged(guarded)) == sorted(FORGED)


ACCEPTED = {
    "plain": {},
    "audience with a trailing slash": {"aud": "{resource}/"},
    "audience list containing ours": {"aud": ["http://other.example/mcp", "{resource}"]},
    "scp list instead of scope": {"scope": None, "scp": ["mcp"]},
    "exp 10 s ago, within the 30 s clock skew": {"exp_offset": -10},
    "nbf 10 s ahead, within the 30 s clock skew": {"nbf_offset": 10},
    "extra unknown claims": {"tenant": "acme", "roles": ["x"]},
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_valid_variants_are_accepted(guarded: Guarded, case: str) -> None:
    now = int(time.time())
    claims = {
        k: (v.format(resource=guarded.runner.url) if isinstance(v, str) else v) for k, v in ACCEPTED[case].items()
    }
    if isinstance(claims.get("aud"), list):
        claims["aud"] = [a.format(resource=guarded.runner.url) for a in claims["aud"]]
    if "exp_offset" in claims:
        claims["exp"] = now + claims.pop("exp_offset")
    if "nbf_offset" in claims:
        claims["nbf"] = now + claims.pop("nbf_offset")
    response = guarded.post(guarded.token(**claims))
    assert response.status_code == 200, (case, response.text)


def test_no_token_is_401_without_error(guarded: Guarded) -> None:
    for raw in (None, "Basic dXNlcjpwYXNz", "Bearer", "bearer", "Token abc"):
        response = guarded.post(None, raw=raw)
        assert response.status_code == 401, raw
        assert response.headers["www-authenticate"] == f'Bearer resource_metadata="{guarded.metadata}"'


def test_server_wide_scope_is_403_with_scope(guarded: Guarded) -> None:
    response = guarded.post(guarded.token(scope="read"))
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == guarded.forbidden("mcp", "mcp")


def call(name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": name, "arguments": arguments or {}}}


def test_tool_scopes_are_403_naming_every_needed_scope(guarded: Guarded) -> None:
    response = guarded.post(guarded.token(scope="mcp"), call("delete_all"))
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == guarded.forbidden("admin write", "mcp admin write")
    partial = guarded.post(guarded.token(scope="mcp admin"), call("delete_all"))
    assert partial.status_code == 403
    assert partial.headers["www-authenticate"] == guarded.forbidden("write", "mcp admin write")


def test_resource_and_prompt_scopes_are_403(guarded: Guarded) -> None:
    read = {"jsonrpc": "2.0", "id": 3, "method": "resources/read", "params": {"uri": "secret://plans"}}
    response = guarded.post(guarded.token(), read)
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == guarded.forbidden("secrets", "mcp secrets")
    get = {"jsonrpc": "2.0", "id": 4, "method": "prompts/get", "params": {"name": "admin_prompt"}}
    response = guarded.post(guarded.token(), get)
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == guarded.forbidden("admin", "mcp admin")


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_listings_show_only_what_scopes_allow(guarded: Guarded, mode: str) -> None:
    async with mcp_client(guarded.runner.url, guarded.token(scope="mcp"), mode) as client:
        assert sorted(t.name for t in (await client.list_tools()).tools) == ["echo", "my_scopes", "whoami"]
        assert [t.uri_template for t in (await client.list_resource_templates()).resource_templates] == []
        assert [str(r.uri) for r in (await client.list_resources()).resources] == ["info://public"]
        assert [p.name for p in (await client.list_prompts()).prompts] == []
    async with mcp_client(guarded.runner.url, guarded.token(scope="mcp admin write secrets"), mode) as client:
        assert sorted(t.name for t in (await client.list_tools()).tools) == [
            "delete_all",
            "echo",
            "my_scopes",
            "whoami",
        ]
        assert (await client.call_tool("delete_all", {})).content[0].text == "deleted"  # type: ignore[union-attr]
        assert [t.uri_template for t in (await client.list_resource_templates()).resource_templates] == [
            "secret://{name}"
        ]
        secret = await client.read_resource("secret://plans")
        assert secret.contents[0].text == "secret plans"  # type: ignore[union-attr]
        assert [p.name for p in (await client.list_prompts()).prompts] == ["admin_prompt"]


async def test_claims_are_bound_and_cannot_be_supplied(guarded: Guarded) -> None:
    token = guarded.token(sub="ann", client_id="cli-7", scope="mcp extra")
    async with mcp_client(guarded.runner.url, token) as client:
        whoami = next(t for t in (await client.list_tools()).tools if t.name == "whoami")
        assert set(whoami.input_schema["properties"]) == {"note"}  # user/client hidden from the model
        result = await client.call_tool("whoami", {"note": "hi"})
        assert result.content[0].text == "ann|cli-7|hi"  # type: ignore[union-attr]
        spoofed = await client.call_tool("whoami", {"note": "x", "user": "root", "client": "admin"})
        assert spoofed.is_error or spoofed.content[0].text == "ann|cli-7|x"  # type: ignore[union-attr]
        scopes = await client.call_tool("my_scopes", {})
        assert scopes.content[0].text == "mcp extra"  # type: ignore[union-attr]


def test_deeply_nested_body_is_not_a_500(guarded: Guarded) -> None:
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "Authorization": f"Bearer {guarded.token()}",
    }
    body = b"[" * 100_000 + b"]" * 100_000
    response = httpx2.post(guarded.runner.url, content=body, headers=headers, timeout=60)
    assert response.status_code < 500, response.text
    assert guarded.post(guarded.token()).status_code == 200  # and the server is still up


def test_metadata_lists_every_scope_and_the_name(guarded: Guarded) -> None:
    document = loopback_get(guarded.metadata).json()
    assert document["scopes_supported"] == ["mcp", "admin", "write", "secrets"]
    assert document["resource_name"] == "guarded"
    assert document["resource"] == guarded.runner.url


def test_rotation_new_kid_accepted_and_removed_kid_refused(guarded: Guarded) -> None:
    old = guarded.jwks.keys[0]
    new = Key.new("rotated-kid")
    guarded.jwks.keys = [old, new]
    try:
        deadline = time.monotonic() + 30
        # The new kid is fetched on first sight (rate-limited, so it may take one interval).
        while guarded.post(guarded.issuer.token(key=new, scope="mcp")).status_code != 200:
            assert time.monotonic() < deadline, "a newly published kid was never accepted"
            time.sleep(0.2)
        guarded.jwks.keys = [new]  # the old key is withdrawn ...
        newest = Key.new("newest-kid")
        guarded.jwks.keys = [new, newest]
        while guarded.post(guarded.issuer.token(key=newest, scope="mcp")).status_code != 200:
            assert time.monotonic() < deadline, "the second rotation was never picked up"
            time.sleep(0.2)
        # ... and after the refetch a fresh token signed with it is refused.
        response = guarded.post(guarded.issuer.token(key=old, scope="mcp"))
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == guarded.invalid()
    finally:
        guarded.jwks.keys = [old]
        deadline = time.monotonic() + 30
        while guarded.post(guarded.token()).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)


def test_warm_cache_survives_an_outage(guarded: Guarded) -> None:
    assert guarded.post(guarded.token()).status_code == 200
    guarded.jwks.mode = "down"
    try:
        hits = guarded.jwks.hits
        response = guarded.post(guarded.token())  # a fresh token, a known kid: no fetch needed
        assert response.status_code == 200
        assert guarded.jwks.hits == hits
        unknown = guarded.post(guarded.issuer.token(key=Key.new("during-outage"), scope="mcp"))
        assert unknown.status_code == 401 and unknown.headers["www-authenticate"] == guarded.invalid()
    finally:
        guarded.jwks.mode = "good"


async def test_stalled_jwks_does_not_delay_unrelated_requests(guarded: Guarded) -> None:
    """An unknown kid makes the server refetch from a JWKS that stalls; a known-kid request is not held up by it."""
    time.sleep(2.1)  # past the refetch rate limit, so the unknown kid really triggers a fetch
    guarded.jwks.delay = 3.0
    finished: list[str] = []
    try:

        async def request(label: str, token: str) -> None:
            response = await anyio.to_thread.run_sync(guarded.post, token)
            finished.append(f"{label}:{response.status_code}")

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(request, "stalled", guarded.issuer.token(key=Key.new("stall-kid"), scope="mcp"))
            await anyio.sleep(0.3)  # the stalled fetch is under way
            await request("unrelated", guarded.token())
            # Ordering, not a clock: the unrelated request completed while the stalled one still waits.
            assert finished == ["unrelated:200"]
        assert finished == ["unrelated:200", "stalled:401"]
    finally:
        guarded.jwks.delay = 0.0


@pytest.mark.parametrize("mode", ["down", "garbage", "non-utf8", "huge", "redirect", "html", "nested"])
def test_cold_start_against_a_broken_jwks_fails_closed(tmp_path: Path, mode: str) -> None:
    jwks = JWKSServer(app_id="cold-app", keys=[Key.new("cold-kid")], mode=mode).start()
    g = Guarded(tmp_path, jwks)
    g.runner.start()
    try:
        response = g.post(g.token())
        # The token could not be checked (no key set): the server's fault, 503 with Retry-After, never a pass,
        # and not 401 (which tells the client its token is bad).
        assert response.status_code == 503, response.text
        assert int(response.headers["retry-after"]) >= 1 and "www-authenticate" not in response.headers
        jwks.mode = "good"  # the issuer recovers: requests succeed again within seconds, no restart
        deadline = time.monotonic() + 30
        while g.post(g.token()).status_code != 200:
            assert time.monotonic() < deadline, "never recovered after the JWKS came back"
            time.sleep(0.2)
    finally:
        err = g.runner.stop()
        jwks.stop()
    assert "Traceback" not in err
    assert "JWKS not reachable at start-up" in err


def test_tokens_never_reach_the_logs(tmp_path: Path) -> None:
    jwks = JWKSServer(app_id="log-app", keys=[Key.new("log-kid")]).start()
    g = Guarded(tmp_path, jwks)
    g.runner.extra = ("--log-level", "debug")
    g.runner.start()
    tokens = [g.token(), g.token(aud="http://wrong/mcp"), g.issuer.token(key=Key.new("x"), scope="mcp")]
    try:
        for token in tokens:
            g.post(token)
    finally:
        err = g.runner.stop()
        jwks.stop()
    for token in tokens:
        assert token not in err
        assert token.split(".")[2] not in err
    assert "PRIVATE KEY" not in err


def test_b64_helpers_are_consistent() -> None:
    assert base64.urlsafe_b64decode(b64url(json.dumps({"a": 1}).encode()) + "==") == b'{"a": 1}'
