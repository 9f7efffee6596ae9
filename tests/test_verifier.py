"""JWKSTokenVerifier in-process against a real JWKS server on loopback: the reference's bugs, fixed."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from runner.auth.jwks import JWKSCache
from runner.auth.verifier import JWKSTokenVerifier
from runner.manifest.envsubst import MissingVariable, substitute
from tests.helpers import Issuer, JWKSServer, Key

pytestmark = pytest.mark.anyio


@pytest.fixture
def server() -> Iterator[JWKSServer]:
    jwks = JWKSServer(keys=[Key.new("k1")]).start()
    yield jwks
    jwks.stop()


def make(server: JWKSServer, **cache: float) -> tuple[JWKSTokenVerifier, Issuer]:
    resource = "http://127.0.0.1:9/mcp"
    verifier = JWKSTokenVerifier.for_signin(server.app_id, resource, server.base_url)
    if cache:
        verifier.jwks = JWKSCache(verifier.jwks.url, **cache)
    return verifier, Issuer(server.base_url, resource, server.keys[0])


async def test_scopes_are_split_and_subject_kept(server: JWKSServer) -> None:
    verifier, issuer = make(server)
    access = await verifier.verify_token(issuer.token(scope="read write admin", sub="ann"))
    assert access is not None
    assert access.scopes == ["read", "write", "admin"]
    assert access.subject == "ann" and access.client_id == "client-1"
    assert access.claims is not None and access.claims["iss"] == server.base_url


async def test_audience_trailing_slash_is_canonical(server: JWKSServer) -> None:
    verifier, issuer = make(server)
    assert await verifier.verify_token(issuer.token(aud=issuer.resource + "/")) is not None


async def test_key_chosen_by_kid_and_rotation(server: JWKSServer) -> None:
    verifier, issuer = make(server, min_refetch_interval=0.0)
    assert await verifier.verify_token(issuer.token()) is not None
    rotated = Key.new("k2")
    server.keys = [rotated]  # the issuer rotates: k2 appears, k1 is gone
    assert await verifier.verify_token(issuer.token(key=rotated)) is not None


async def test_jwks_down_is_a_rejection_not_an_exception(server: JWKSServer) -> None:
    verifier, issuer = make(server)
    server.mode = "down"
    assert await verifier.verify_token(issuer.token()) is None
    server.mode = "garbage"
    assert await verifier.verify_token(issuer.token()) is None


async def test_stalled_jwks_is_bounded_by_the_deadline(server: JWKSServer) -> None:
    verifier, issuer = make(server, fetch_timeout=0.3)
    server.delay = 2.0
    started = time.monotonic()
    assert await verifier.verify_token(issuer.token()) is None
    # Not a timing assertion on the machine's speed: the 5 s stall must have been cut off by the deadline.
    assert time.monotonic() - started < server.delay


async def test_unknown_kids_do_not_hammer_the_jwks(server: JWKSServer) -> None:
    verifier, issuer = make(server)
    assert await verifier.verify_token(issuer.token()) is not None
    made_up = [issuer.token(key=Key.new(f"made-up-{i}")) for i in range(20)]  # minted first: RSA keygen is slow
    hits = server.hits
    for token in made_up:
        assert await verifier.verify_token(token) is None
    assert server.hits - hits <= 1


def test_substitution_semantics() -> None:
    env = {"SET": "value", "EMPTY": ""}
    assert substitute("a ${SET} b", env) == "a value b"
    assert substitute("${UNSET:-dflt}", env) == "dflt"
    assert substitute("${EMPTY:-dflt}", env) == "dflt"
    assert substitute("${EMPTY}", env) == ""
    assert substitute("$${SET} literal", env) == "${SET} literal"
    assert substitute("${SET:-}", env) == "value"
    with pytest.raises(MissingVariable) as missing:
        substitute("x ${UNSET}", env)
    assert missing.value.name == "UNSET" and missing.value.offset == 2


@pytest.mark.parametrize("mode", ["trickle", "huge", "redirect", "non-utf8", "html", "nested"])
async def test_hostile_jwks_answers_are_rejections(server: JWKSServer, mode: str) -> None:
    verifier, issuer = make(server, fetch_timeout=0.5)
    server.mode = mode
    assert await verifier.verify_token(issuer.token()) is None
    server.mode = "good"
    verifier.jwks.min_refetch_interval = 0.0
    assert await verifier.verify_token(issuer.token()) is not None  # and it recovers
