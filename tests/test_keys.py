"""Signing keys and token lifetimes (issue 9), and why a rejection is logged (issue 7).

The runner runs as a process against a switchable JWKS server on loopback; the
refresh-interval cases drive a JWKSCache in-process, with a floor low enough
that a `max-age=1` is honoured within a test's time.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import jwt
import pytest

from runner.auth.jwks import JWKSCache, refresh_interval
from runner.auth.verifier import JWKSTokenVerifier
from tests.helpers import Issuer, JWKSServer, Key, RunnerProcess, post_initialize, run_main

pytestmark = pytest.mark.anyio

YEAR = 365 * 86_400


class Served:
    """A guarded runner whose stderr can be read while it runs."""

    def __init__(self, folder: Path, jwks: JWKSServer) -> None:
        self.jwks = jwks
        self.main = jwks.keys[0]
        (folder / "keysmod.py").write_text("def echo(text: str) -> str:\n    return text\n")
        self.runner = RunnerProcess(folder / "keys.yaml", log=folder / "stderr.log")
        (folder / "keys.yaml").write_text(
            textwrap.dedent(f"""
                name: keys
                signin:
                  app_id: {jwks.app_id}
                  base_url: {jwks.base_url}
                  resource: {self.runner.url}
                tools:
                  - function: keysmod:echo
            """)
        )
        self.issuer = Issuer(jwks.base_url, self.runner.url, self.main)

    def status(self, token: str) -> int:
        return post_initialize(self.runner.url, token).status_code

    def poll(self, condition: Any, what: str) -> None:
        deadline = time.monotonic() + 30
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.2)

    def refetch(self) -> None:
        """Make the server fetch the key set now: a token with a never-seen kid does, at most once per 2 s."""
        hits = self.jwks.hits
        self.poll(
            lambda: self.status(self.issuer.token(key=Key.new())) == 401 and self.jwks.hits > hits,
            "an unknown kid never made the server refetch the key set",
        )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    jwks = JWKSServer(app_id="keys-app", keys=[Key.new("main-kid")]).start()
    s = Served(tmp_path_factory.mktemp("keys"), jwks)
    s.runner.start()
    yield s
    s.runner.stop()
    jwks.stop()


def test_withdrawn_key_ends_cached_and_new_tokens_at_the_next_refetch(served: Served) -> None:
    old = Key.new("old-kid")
    served.jwks.keys = [served.main, old]
    try:
        verified = served.issuer.token(key=old)
        served.poll(lambda: served.status(verified) == 200, "a newly published kid was never accepted")
        assert served.status(verified) == 200  # now in the verified-token cache
        served.jwks.keys = [served.main]  # the issuer withdraws the key
        served.refetch()
        assert served.status(verified) == 401  # the cached verification ended with the key
        assert served.status(served.issuer.token(key=old)) == 401
        assert served.status(served.issuer.token()) == 200  # the other key is untouched
        log = served.runner.logged()
        assert "key(s) ['old-kid'] withdrawn" in log
        assert "rejected bearer token: kid 'old-kid' is not in the key set at" in log
    finally:
        served.jwks.keys = [served.main]


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the test's own tokens: meant
def test_weak_and_ambiguous_keys_are_refused_and_logged(served: Served) -> None:
    weak = [Key.new("weak-512", bits=512), Key.new("weak-1024", bits=1024)]
    twins = [Key.new("twin"), Key.new("twin")]  # two different keys under one kid
    served.jwks.keys = [served.main, *weak, *twins]
    try:
        served.refetch()
        for key in [*weak, *twins]:
            assert served.status(served.issuer.token(key=key)) == 401, key.kid
        log = served.runner.logged()
        for reason in [
            "kid 'weak-512' is refused: RSA key of 512 bits; at least 2048 are required",
            "kid 'weak-1024' is refused: RSA key of 1024 bits; at least 2048 are required",
            "kid 'twin' is refused: the key set lists 2 different keys under this kid",
        ]:
            assert f"refusing {reason.replace(' is refused', '')}" in log  # once, when the set was fetched
            assert f"rejected bearer token: {reason}" in log  # and for each token
        assert served.status(served.issuer.token()) == 200
    finally:
        served.jwks.keys = [served.main]


def lifetime_cases() -> dict[str, tuple[dict[str, Any], str]]:
    now = int(time.time())
    too_long = "exceeds the maximum token lifetime 86400 s (signin.max_token_lifetime)"
    return {
        "exp 10 years ahead": ({"exp": now + 10 * YEAR}, too_long),
        "exp 1e20": ({"exp": 1e20}, "claim 'exp' = '1e+20' is not a plausible time"),
        "exp Infinity": ({"exp": float("inf")}, "claim 'exp' = 'Infinity' is not a plausible time"),
        "exp NaN": ({"exp": float("nan")}, "claim 'exp' = 'NaN' is not a plausible time"),
        "iat a week back, exp in an hour": ({"iat": now - 7 * 86_400, "exp": now + 3600}, too_long),
    }


@pytest.mark.parametrize("case", list(lifetime_cases()))
def test_overlong_lifetimes_are_refused_with_the_reason(served: Served, case: str) -> None:
    claims, reason = lifetime_cases()[case]
    assert served.status(served.issuer.token(**claims)) == 401
    assert reason in served.runner.logged()


def test_the_longest_lifetime_is_accepted(served: Served) -> None:
    now = int(time.time())
    assert served.status(served.issuer.token(iat=now, exp=now + 86_400)) == 200


def test_rejections_log_the_claim_with_expected_and_presented_values(served: Served) -> None:
    url = served.runner.url
    forged_line = "2030-01-01 00:00:00,000 INFO runner.auth: accepted bearer token for admin"
    tokens = {
        f"iss 'https://evil.example' is not the expected issuer '{served.jwks.base_url}'": served.issuer.token(
            iss="https://evil.example"
        ),
        f"aud 'http://127.0.0.1:1/mcp' does not name this server's resource '{url}'": served.issuer.token(
            aud="http://127.0.0.1:1/mcp"
        ),
        f"""aud '["http://a.example/mcp", "http://b.example/mcp"]' does not name this server's resource '{url}'""": (
            served.issuer.token(aud=["http://a.example/mcp", "http://b.example/mcp"])
        ),
        "expired: exp ": served.issuer.token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200),
        "claim 'sub' is missing": served.issuer.token(sub=None),
        # A hostile claim: escaped onto the one line, never a line of its own.
        f"iss 'x\\n{forged_line}' is not the expected issuer": served.issuer.token(iss=f"x\n{forged_line}"),
        f"iss '{'A' * 200}'... (5000 chars) is not the expected issuer": served.issuer.token(iss="A" * 5000),
    }
    for token in tokens.values():
        assert served.status(token) == 401
    log = served.runner.logged()
    for reason in tokens:
        assert f"rejected bearer token: {reason}" in log, reason
    assert not any(line.startswith(forged_line) for line in log.splitlines())
    for token in tokens.values():
        assert token not in log and token.split(".")[2] not in log


def test_token_ttl_is_capped_by_the_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "local.yaml"
    (tmp_path / "mod.py").write_text("def echo(text: str) -> str:\n    return text\n")
    manifest.write_text("name: local\nsignin:\n  app_id: local\ntools:\n  - function: mod:echo\n")
    over = run_main("token", str(manifest), "--ttl", str(10 * YEAR))
    assert over.returncode == 2 and over.stdout == ""
    assert f"--ttl {10 * YEAR} is longer than signin.max_token_lifetime (86400 s)" in over.stderr

    manifest.write_text(manifest.read_text().replace("app_id: local", "app_id: local\n  max_token_lifetime: 600"))
    minted = run_main("token", str(manifest))
    assert minted.returncode == 0, minted.stderr
    claims = jwt.decode(minted.stdout.strip(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 600  # the default hour, shortened to the maximum
    assert run_main("token", str(manifest), "--ttl", "601").returncode == 2

    manifest.write_text(manifest.read_text().replace("max_token_lifetime: 600", "max_token_lifetime: 10"))
    checked = run_main("check", str(manifest))
    assert checked.returncode == 2
    assert f"{manifest}:4:23: signin.max_token_lifetime: Input should be greater than or equal to 300" in checked.stderr


@pytest.mark.parametrize(
    ("cache_control", "age", "seconds"),
    [
        (None, None, 300),  # no header: the default
        ("max-age=600", None, 600),
        ("public, max-age=600", "100", 500),  # less the time a shared cache already held it
        ('max-age="120"', None, 120),
        ("max-age=5", None, 60),  # the floor
        ("max-age=0", None, 60),
        ("no-cache", None, 60),
        ("no-store, max-age=600", None, 60),
        ("max-age=86400", None, 3600),  # the ceiling: a withdrawn key works at most this long
        ("max-age=soon", None, 300),
        ("max-age=\u0661\u0662\u0660", None, 300),  # non-ASCII digits are not a max-age
    ],
)
def test_refresh_interval_from_cache_control(cache_control: str | None, age: str | None, seconds: float) -> None:
    assert refresh_interval(cache_control, age, 300, 60, 3600) == seconds


@pytest.fixture
def jwks() -> Iterator[JWKSServer]:
    server = JWKSServer(keys=[Key.new("k1")]).start()
    yield server
    server.stop()


def verifier_for(jwks: JWKSServer, **cache: float) -> tuple[JWKSTokenVerifier, Issuer]:
    resource = "http://127.0.0.1:9/mcp"
    verifier = JWKSTokenVerifier.for_signin(jwks.app_id, resource, jwks.base_url)
    verifier.jwks = JWKSCache(verifier.jwks.url, **cache)
    return verifier, Issuer(jwks.base_url, resource, jwks.keys[0])


async def poll(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 30
    while not await condition():
        assert time.monotonic() < deadline, what
        await anyio.sleep(0.1)


async def test_max_age_sets_how_often_keys_are_fetched(jwks: JWKSServer) -> None:
    jwks.cache_control = "max-age=1"
    verifier, issuer = verifier_for(jwks, min_ttl=0.5)
    token = issuer.token()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(verifier.jwks.run)

        async def fetched(count: int) -> bool:
            return jwks.hits >= count

        await poll(lambda: fetched(3), "max-age=1 never made the key set be fetched again")
        assert verifier.jwks.refresh_interval == 1

        # A withdrawal reaches even a cached verification at the next refresh, with no unknown kid involved.
        assert await verifier.verify_token(token) is not None
        jwks.keys = [Key.new("k2")]

        async def refused() -> bool:
            return await verifier.verify_token(token) is None

        await poll(refused, "a withdrawn key kept verifying its cached token")

        jwks.cache_control = "max-age=86400"

        async def clamped() -> bool:  # a withdrawn key works at most an hour
            return verifier.jwks.refresh_interval == 3600

        await poll(clamped, "the next refresh did not take max-age=86400, clamped to 3600 s")
        hits = jwks.hits
        await anyio.sleep(2)  # two of the former intervals
        assert jwks.hits == hits
        tasks.cancel_scope.cancel()


async def test_a_rekeyed_kid_ends_cached_verifications(jwks: JWKSServer) -> None:
    verifier, issuer = verifier_for(jwks, min_refetch_interval=0.0)
    token = issuer.token()
    assert await verifier.verify_token(token) is not None
    jwks.keys = [Key.new("k1")]  # the same kid, another key
    assert await verifier.verify_token(issuer.token(key=Key.new("unknown"))) is None  # forces a refetch
    assert await verifier.verify_token(token) is None


async def test_an_unchanged_key_keeps_its_cached_verifications(jwks: JWKSServer) -> None:
    verifier, issuer = verifier_for(jwks, min_refetch_interval=0.0)
    assert await verifier.verify_token(issuer.token()) is not None
    key, hits = verifier.jwks.current("k1"), jwks.hits
    assert await verifier.verify_token(issuer.token(key=Key.new("unknown"))) is None  # a refetch, same keys
    assert jwks.hits == hits + 1
    assert verifier.jwks.current("k1") is key  # the same object: tokens it verified stay cached
