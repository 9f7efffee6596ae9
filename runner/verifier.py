"""JWKSTokenVerifier: RS256 access tokens from MCP SignIn (or the local issuer), checked strictly.

Fixes against the reference integration: the key is chosen by the token's
`kid` (not the app id); any failure, a JWKS outage included, is a rejection
(401), never an exception (500); the JWKS fetch is async and cached; `scope`
is split on spaces; `exp` is required.
"""

from __future__ import annotations

import logging
from typing import Any

import jwt
from mcp.server.auth.provider import AccessToken, TokenVerifier

from runner.jwks import JWKSCache, JWKSError

logger = logging.getLogger("runner.auth")

MAX_TOKEN_BYTES = 8192
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]


def jwks_url(base_url: str, app_id: str) -> str:
    """MCP SignIn's key set layout."""
    return f"{base_url.rstrip('/')}/apps/{app_id}/discovery/v2.0/keys"


class TokenRejected(Exception):
    """Why a token was refused; logged, never shown with the token itself."""


class JWKSTokenVerifier(TokenVerifier):
    """Verifies RS256 JWT access tokens against a JWKS.

    Accepts a token only when: it is at most 8 KiB; its header says RS256 and
    names a `kid` present in the JWKS; the signature verifies; `iss` is the
    issuer; `aud` is the resource (a trailing slash aside); `exp`, `iat`,
    `sub` are present and `exp` is in the future; `token_type` is "access";
    `client_id` is a string.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str,
        leeway: float = 30.0,
        jwks_cache: JWKSCache | None = None,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.jwks = jwks_cache or JWKSCache(jwks_url)
        base = audience.rstrip("/")
        self._audiences = [base, base + "/"]

    @classmethod
    def for_signin(cls, app_id: str, resource: str, base_url: str = "https://mcpsignin.com") -> JWKSTokenVerifier:
        return cls(issuer=base_url, audience=resource, jwks_url=jwks_url(base_url, app_id))

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            return await self.check(token)
        except TokenRejected as exc:
            logger.info("rejected bearer token: %s", exc)
        except JWKSError as exc:
            logger.warning("rejected bearer token, signing keys unavailable: %s", exc)
        except Exception as exc:  # fail closed: an unforeseen error is a rejection, not a 500
            logger.error("rejected bearer token, unexpected %s: %s", type(exc).__name__, exc)
        return None

    async def check(self, token: str) -> AccessToken:
        """Verify or raise TokenRejected / JWKSError with the reason."""
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenRejected(f"token longer than {MAX_TOKEN_BYTES} bytes")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"malformed token: {exc}") from None
        if header.get("alg") != "RS256":
            raise TokenRejected(f"algorithm {str(header.get('alg'))[:20]!r} is not RS256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("token header has no kid")
        key = await self.jwks.key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                issuer=self.issuer,
                audience=self._audiences,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS, "strict_aud": False},
            )
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"{type(exc).__name__}: {exc}") from None
        if claims.get("token_type") != "access":
            raise TokenRejected(f"token_type is {str(claims.get('token_type'))[:20]!r}, not 'access'")
        client_id = claims.get("client_id")
        if not isinstance(client_id, str) or not client_id:
            raise TokenRejected("token has no client_id")
        if not isinstance(claims["sub"], str):
            raise TokenRejected("sub is not a string")
        return AccessToken(
            token=token,
            client_id=client_id,
            scopes=_scopes(claims),
            expires_at=int(claims["exp"]),
            resource=self.audience,
            subject=claims["sub"],
            claims=claims,
        )


def _scopes(claims: dict[str, Any]) -> list[str]:
    scope = claims.get("scope")
    if isinstance(scope, str):
        return scope.split()
    scp = claims.get("scp")
    if isinstance(scp, list) and all(isinstance(s, str) for s in scp):
        return list(scp)
    return []
