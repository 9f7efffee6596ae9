"""JWKSTokenVerifier: RS256 access tokens from MCP SignIn (or the local issuer), checked strictly.

Fixes against the reference integration: the key is chosen by the token's
`kid` (not the app id); any failure is a rejection (401), never an exception (500),
but a token that could not be checked because the key set could not be fetched is
the server's fault: `verify` raises KeysUnavailable and the gate answers 503; the JWKS
fetch is async and cached; `scope` is split on U+0020 only (RFC 6749 §3.3); `exp` is
required, and a lifetime over `max_lifetime` is refused.
Every rejection is logged with its precise reason (runner/auth/rules.py), never the token.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections import OrderedDict
from typing import Any

import jwt
from jwt.types import Options
from mcp.server.auth.provider import AccessToken, TokenVerifier

from runner.auth.defaults import DEFAULT_BASE_URL, DEFAULT_MAX_LIFETIME, jwks_url
from runner.auth.jwks import JWKSCache, JWKSError, KeysUnavailable, UnknownKey
from runner.auth.rules import Rules, TokenRejected
from runner.observe import metrics
from runner.observe.tracing import request_span, tracer

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_MAX_LIFETIME", "JWKSTokenVerifier", "TokenRejected", "jwks_url"]

logger = logging.getLogger("runner.auth")

MAX_TOKEN_BYTES = 8192
CACHE_SIZE = 10_000  # verified tokens remembered, least recently used dropped first
CACHE_SECONDS = 300  # a verified token is re-checked at least this often, and never trusted past its exp


class JWKSTokenVerifier(TokenVerifier):
    """Verifies RS256 JWT access tokens against a JWKS.

    Accepts a token only when: it is at most 8 KiB; its header says RS256 and
    names a `kid` present in the JWKS; the signature verifies; `iss` is the
    issuer; `aud` is the resource (a trailing slash aside); `exp`, `iat`,
    `sub` are present, `exp` is in the future and `exp - iat` at most
    `max_lifetime`; `token_type` is "access"; `client_id` is a string.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str,
        leeway: float = 30.0,
        max_lifetime: float = DEFAULT_MAX_LIFETIME,
        jwks_cache: JWKSCache | None = None,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.max_lifetime = max_lifetime
        self.jwks = jwks_cache or JWKSCache(jwks_url)
        self._rules = Rules(issuer, audience.rstrip("/"), leeway, max_lifetime)
        # token -> (verified AccessToken, trusted until, kid, key): a client's repeated calls skip the RSA
        # check for as long as the key that verified the token is still the one the key set has for its kid.
        self._verified: OrderedDict[str, tuple[AccessToken, float, str, Any]] = OrderedDict()

    def same_settings(self, other: JWKSTokenVerifier) -> bool:
        """Verifies exactly as `other` does (a reload can keep this one and its caches)."""
        return (self.issuer, self.audience, self.leeway, self.max_lifetime, self.jwks.url) == (
            other.issuer,
            other.audience,
            other.leeway,
            other.max_lifetime,
            other.jwks.url,
        )

    @classmethod
    def for_signin(cls, app_id: str, resource: str, base_url: str = DEFAULT_BASE_URL) -> JWKSTokenVerifier:
        return cls(issuer=base_url, audience=resource, jwks_url=jwks_url(base_url, app_id))

    async def verify_token(self, token: str) -> AccessToken | None:
        """The SDK's interface: the token's access, or None for any failure (keys unavailable included)."""
        try:
            return await self.verify(token)
        except KeysUnavailable:
            return None

    async def verify(self, token: str) -> AccessToken | None:
        """The token's access, None when the token is not valid, KeysUnavailable when it could not be checked.

        The gate (runner/auth/gate.py) answers the last with 503, not 401: the token may be fine, the
        issuer's keys could not be fetched. Never an acceptance.
        """
        access = self._cached(token, time.time())
        if access is not None:  # the hot path: 0.6 us, which a span would multiply by 30
            return access
        # A span and a metric per verification: the outcome and the reason, never the token.
        request_span()  # in the HTTP request's span, with the SDK's (runner/observe/httpspan.py)
        with tracer.start_as_current_span("mcp-runner verify token") as span:
            reason = "invalid"
            try:
                access = await self.check(token)
                span.set_attribute("mcp_runner.auth.outcome", "ok")
                return access
            except KeysUnavailable as exc:
                # Not logged per request: the key set's own log says, rarely, that fetching fails (runner/auth/jwks.py).
                logger.debug("bearer token not checked, signing keys unavailable: %s", exc)
                span.set_attributes({"mcp_runner.auth.outcome": "unavailable", "mcp_runner.auth.reason": reason})
                metrics.auth_rejected("keys_unavailable")
                raise
            except TokenRejected as exc:
                reason = exc.reason
                logger.info("rejected bearer token: %s", exc)
            except UnknownKey as exc:
                logger.info("rejected bearer token: %s", exc)
            except JWKSError as exc:
                reason = "keys_unavailable"
                logger.warning("rejected bearer token, signing keys unavailable: %s", exc)
            except Exception as exc:  # fail closed: an unforeseen error is a rejection, not a 500
                logger.error("rejected bearer token, unexpected %s: %s", type(exc).__name__, exc)
            span.set_attributes({"mcp_runner.auth.outcome": "rejected", "mcp_runner.auth.reason": reason})
            metrics.auth_rejected(reason)
            return None

    async def check(self, token: str) -> AccessToken:
        """Verify or raise TokenRejected / JWKSError (UnknownKey: no usable key for the kid) with the reason."""
        now = time.time()
        cached = self._cached(token, now)
        if cached is not None:
            return cached
        access, kid, key = await self._verify(token)
        self._verified[token] = (access, min(float(access.expires_at or now), now + CACHE_SECONDS), kid, key)
        if len(self._verified) > CACHE_SIZE:
            self._verified.popitem(last=False)
        return access

    def _cached(self, token: str, now: float) -> AccessToken | None:
        """The remembered verification of `token`, while it holds; a stale one is forgotten."""
        hit = self._verified.get(token)
        if hit is None:
            return None
        access, until, kid, key = hit
        # O(1): a kid withdrawn or re-keyed by the last JWKS fetch ends every verification it made at once.
        if now < until and self.jwks.current(kid) is key:
            self._verified.move_to_end(token)
            return access
        del self._verified[token]
        return None

    async def _verify(self, token: str) -> tuple[AccessToken, str, Any]:
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenRejected(f"token longer than {MAX_TOKEN_BYTES} bytes")
        header = _header(token)
        if header.get("alg") != "RS256":
            raise TokenRejected(f"algorithm {str(header.get('alg'))[:20]!r} is not RS256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("token header has no kid")
        key = await self.jwks.key(kid)
        try:
            # The signature only: every claim is checked by self._rules, which can say precisely why.
            claims: dict[str, Any] = jwt.decode(token, key, algorithms=["RS256"], options=_SIGNATURE_ONLY)
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"{type(exc).__name__}: {exc}") from None
        self._rules.check(claims, time.time())  # after the key fetch, which may have taken seconds
        access = AccessToken(
            token=token,
            client_id=claims["client_id"],
            scopes=_scopes(claims),
            expires_at=int(claims["exp"]),
            resource=self.audience,
            subject=claims["sub"],
            claims=claims,
        )
        return access, kid, key


_SIGNATURE_ONLY: Options = {
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
}


def _header(token: str) -> dict[str, Any]:
    """The token's header, to choose the key: jwt.decode below re-parses and checks it strictly.

    Not `jwt.get_unverified_header`: PyJWT's strict base64 check is the costliest step of a
    verification, and it would run twice (measured 155 us vs 95 us per token, bench/verifier.py).
    """
    head, dot, _ = token.partition(".")
    if not dot:
        raise TokenRejected("malformed token: not a JWT")
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error):
        raise TokenRejected("malformed token header") from None
    if not isinstance(header, dict):
        raise TokenRejected("malformed token header")
    return header


def _scopes(claims: dict[str, Any]) -> list[str]:
    """The granted scopes. RFC 6749 §3.3: `scope` is scope-tokens separated by U+0020 and nothing else.

    Not `str.split()`, which also splits on TAB, LF, NBSP, U+3000, NEL, U+2028...: it made
    `"x\\u00a0admin"` grant `admin`, a scope the issuer never granted (it issued one odd token).
    """
    scope = claims.get("scope")
    if isinstance(scope, str):
        return [token for token in scope.split(" ") if token]
    scp = claims.get("scp")
    if isinstance(scp, list) and all(isinstance(s, str) for s in scp):
        return list(scp)
    return []
