"""The built-in local issuer (`app_id: local`): MCP SignIn's shape, on this machine, for development.

It keeps an RSA key pair in `.mcp-runner/` next to the manifest (private key
mode 0600), serves its JWKS at MCP SignIn's path on the runner's own origin,
and mints tokens that go through the very same JWKSTokenVerifier as real ones.

Its identity (`iss`) is its key, not a URL: `urn:mcp-runner:local:<kid>`. A
URL would name a port, and then a token minted before `serve --port 9000`
(or any `--port 0`) could never match. It is not an OAuth authorization
server (no authorize or token endpoint: tokens come from `mcp-runner token`),
so nothing advertises it as one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from runner.auth.defaults import STATE_DIR
from runner.manifest.state import state_folder

__all__ = ["STATE_DIR", "LocalIssuer"]

KEY_FILE = "local-issuer-key.pem"
LOCAL_CLIENT_ID = "mcp-runner-local"
ISSUER_PREFIX = "urn:mcp-runner:local:"


@dataclass(frozen=True)
class LocalIssuer:
    private_key: rsa.RSAPrivateKey
    kid: str

    @classmethod
    def open(cls, manifest_dir: Path) -> LocalIssuer:
        """Load the key pair from the state folder, creating it (0700 folder, 0600 key) on first use."""
        folder = state_folder(manifest_dir)
        path = folder / KEY_FILE
        if not path.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            try:
                # O_EXCL: two runners starting at once must not overwrite each other's key.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(pem)
            except FileExistsError:
                pass
        os.chmod(path, 0o600)
        # The key is the runner's own (written above, 0600 in a 0700 folder): the RSA consistency check
        # the load runs by default is for keys from elsewhere, and cost ~75 ms of every start-up and
        # every `mcp-runner token`. Whoever can rewrite this file can mint tokens anyway; a damaged key
        # signs tokens the verifier rejects (401), so it still fails closed.
        loaded = serialization.load_pem_private_key(
            path.read_bytes(), password=None, unsafe_skip_rsa_key_validation=True
        )
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ValueError(f"{path} does not hold an RSA private key")
        return cls(private_key=loaded, kid=_thumbprint(loaded.public_key()))

    @property
    def issuer(self) -> str:
        """The `iss` of its tokens: the same for every port, and new exactly when the key is."""
        return ISSUER_PREFIX + self.kid

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private_key.public_key()))
        jwk.update(kid=self.kid, use="sig", alg="RS256")
        return jwk

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk()]}

    def mint(
        self,
        *,
        issuer: str,
        audience: str,
        subject: str = "local-user",
        scopes: list[str] | None = None,
        ttl: int = 3600,
        client_id: str = LOCAL_CLIENT_ID,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": issuer,
            "aud": audience,
            "sub": subject,
            "client_id": client_id,
            "token_type": "access",
            "scope": " ".join(scopes or []),
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.kid})


def _thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638 JWK thumbprint: a kid that changes exactly when the key does."""
    jwk = json.loads(RSAAlgorithm.to_jwk(public_key))
    canonical = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
