"""A JWKS document -> the RS256 public keys it offers, and the kids it offers that must be refused.

Why refused kids are kept apart rather than dropped: a token naming one is then
rejected with the reason ("RSA key of 1024 bits"), not as an unknown kid, and the
cache can log each reason once instead of on every refresh.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import jwt

MIN_RSA_BITS = 2048  # NIST SP 800-131A: RSA under 2048 bits is disallowed for signatures


class KeySetError(Exception):
    """The document is not a key set at all; the message is safe to log."""


@dataclass
class KeySet:
    keys: dict[str, Any] = field(default_factory=dict)  # kid -> public key object
    prints: dict[str, tuple[str, str]] = field(default_factory=dict)  # kid -> (n, e): the same key across fetches
    refused: dict[str, str] = field(default_factory=dict)  # kid -> why its tokens are refused


def parse(body: bytes) -> KeySet:
    """Keep only RSA signing keys meant for RS256, of at least 2048 bits, under a kid no other such key uses.

    A kid that names two different candidate keys is ambiguous: neither is used (the
    old behaviour, last one wins, let whoever could append to the set choose).
    """
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise KeySetError(f"the JWKS is not JSON: {type(exc).__name__}") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeySetError('the JWKS has no "keys" list')
    candidates: dict[str, list[dict[str, Any]]] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            continue
        # Only RSA signing keys meant for RS256: never let a JWK pick the algorithm.
        if jwk.get("kty") != "RSA" or jwk.get("use", "sig") != "sig" or jwk.get("alg", "RS256") != "RS256":
            continue
        candidates.setdefault(jwk["kid"], []).append(jwk)
    result = KeySet()
    for kid, jwks in candidates.items():
        prints = {(str(j.get("n")), str(j.get("e"))) for j in jwks}
        if len(prints) > 1:  # the very same key listed twice is not ambiguous
            result.refused[kid] = f"the key set lists {len(jwks)} different keys under this kid"
            continue
        try:
            key = jwt.PyJWK(jwks[0], algorithm="RS256").key
            bits = int(key.key_size)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, AttributeError):
            result.refused[kid] = "the JWK is not a usable RSA public key"
            continue
        if bits < MIN_RSA_BITS:
            result.refused[kid] = f"RSA key of {bits} bits; at least {MIN_RSA_BITS} are required"
            continue
        result.keys[kid] = key
        result.prints[kid] = prints.pop()
    return result
