"""The claims an access token must carry, each checked so that a refusal says exactly what to fix.

PyJWT checks the signature; the claims are checked here instead of by its options
because its refusals ("Invalid issuer", "Audience doesn't match") omit the values an
operator needs, and it accepts `"exp": "123"`, `1e20` and ten-year lifetimes. Every
message names the claim and, where useful, the expected and the presented value: none
is a secret, and each presented value goes through `shown`, so a hostile claim can
neither flood the log nor forge a line in it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

REQUIRED_CLAIMS = ("exp", "iat", "iss", "aud", "sub")
SHOWN_CHARS = 200
LATEST_TIME = 1e11  # seconds since 1970: the year 5138. Beyond, a time claim is nonsense (and 1e400 breaks floats)


class TokenRejected(Exception):
    """Why a token was refused; logged, never shown with the token itself.

    `reason` is one word for metrics and spans: invalid, expired, audience or issuer.
    """

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """A presented value fit for one log line: truncated, then repr'd (control and other unprintable characters
    become escapes such as \\n or \\u2028, so a claim cannot start a fake line)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > limit:
        return repr(text[:limit]) + f"... ({len(text)} chars)"
    return repr(text)


@dataclass(frozen=True)
class Rules:
    """What this server accepts: the issuer, its audiences, the clock skew and the longest token lifetime."""

    issuer: str
    audience: str  # canonical, without a trailing slash
    leeway: float
    max_lifetime: float

    def check(self, claims: dict[str, Any], now: float) -> None:
        """Raise TokenRejected naming the first claim that fails, in the order an operator would fix them."""
        for name in REQUIRED_CLAIMS:
            if claims.get(name) is None:
                raise TokenRejected(f"claim {name!r} is missing")
        _check_types(claims)
        if claims["iss"] != self.issuer:
            raise TokenRejected(f"iss {shown(claims['iss'])} is not the expected issuer {self.issuer!r}", "issuer")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        accepted = (self.audience, self.audience + "/")
        if not any(a in accepted for a in audiences):
            raise TokenRejected(
                f"aud {shown(claims['aud'])} does not name this server's resource {self.audience!r} "
                "(a trailing slash aside)",
                "audience",
            )
        self._check_times(claims, now)
        if claims.get("token_type") != "access":
            raise TokenRejected(f"token_type is {shown(claims.get('token_type'))}, not 'access'")
        if not claims.get("client_id"):
            raise TokenRejected("claim 'client_id' is missing or empty")

    def _check_times(self, claims: dict[str, Any], now: float) -> None:
        exp, iat, skew = claims["exp"], claims["iat"], self.leeway
        tolerance = f"(now {now:.0f}, clock_skew {skew:g} s)"
        if exp <= now - skew:
            raise TokenRejected(f"expired: exp {exp:.0f} is {now - exp:.0f} s in the past {tolerance}", "expired")
        if "nbf" in claims and claims["nbf"] > now + skew:
            nbf = claims["nbf"]
            raise TokenRejected(f"not yet valid: nbf {nbf:.0f} is {nbf - now:.0f} s in the future {tolerance}")
        if iat > now + skew:
            raise TokenRejected(f"issued in the future: iat {iat:.0f} is {iat - now:.0f} s ahead {tolerance}")
        if exp - iat > self.max_lifetime:
            raise TokenRejected(
                f"lifetime exp - iat = {exp - iat:.0f} s exceeds the maximum token lifetime "
                f"{self.max_lifetime:g} s (signin.max_token_lifetime)"
            )


def _check_types(claims: dict[str, Any]) -> None:
    """PyJWT accepts `"exp": "123"` and similar; a token with ill-typed claims is not one we issued."""
    for name in ("exp", "iat", "nbf"):
        if name not in claims:
            continue
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TokenRejected(f"claim {name!r} is not a number: {shown(value)}")
        if not abs(value) < LATEST_TIME:  # also NaN and infinities (json.loads takes them)
            raise TokenRejected(f"claim {name!r} = {shown(value)} is not a plausible time")
    for name in ("iss", "sub", "client_id", "token_type", "scope", "jti"):
        if name in claims and not isinstance(claims[name], str):
            raise TokenRejected(f"claim {name!r} is not a string: {shown(claims[name])}")
    aud = claims["aud"]
    if not isinstance(aud, str) and not (isinstance(aud, list) and all(isinstance(a, str) for a in aud)):
        raise TokenRejected(f"claim 'aud' is neither a string nor a list of strings: {shown(aud)}")
    if not claims["sub"]:
        raise TokenRejected("claim 'sub' is empty")
    if "scp" in claims and not (isinstance(claims["scp"], list) and all(isinstance(s, str) for s in claims["scp"])):
        raise TokenRejected("claim 'scp' is not a list of strings")
